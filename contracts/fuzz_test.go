package contracts

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The fuzzers pick a registered type by index, so one corpus covers every
// decoder; the seeds are the examples, valid by construction.

func FuzzCheckEvent(f *testing.F) {
	for i, s := range Events {
		f.Add(uint8(i), mustJSON(f, eventExamples[eventKey{s.Type, s.Version}]))
	}
	f.Add(uint8(0), []byte(`{"price":{"amount_minor":1e400}}`))
	f.Fuzz(func(t *testing.T, idx uint8, data []byte) {
		s := Events[int(idx)%len(Events)]
		v, err := DecodeChecked(s.Type, s.Version, data)
		if err != nil {
			return
		}
		// Whatever the contract accepts re-encodes to a body it accepts
		// again, and decodes to the same value.
		typ, version, body, err := Encode(v)
		if err != nil {
			t.Fatalf("%s v%d accepted %q but its decoded value does not encode: %v", s.Type, s.Version, data, err)
		}
		again, err := Decode(typ, version, body)
		if err != nil {
			t.Fatalf("Decode of re-encoded %s: %v", typ, err)
		}
		if diff := cmp.Diff(v, again); diff != "" {
			t.Fatalf("%s round trip (-first +second):\n%s", typ, diff)
		}
	})
}

func FuzzDecode(f *testing.F) {
	for i, s := range Events {
		f.Add(uint8(i), mustJSON(f, eventExamples[eventKey{s.Type, s.Version}]))
	}
	f.Add(uint8(3), []byte(`{"order_id":"o-1"} trailing`))
	f.Fuzz(func(t *testing.T, idx uint8, data []byte) {
		s := Events[int(idx)%len(Events)]
		fast, fastErr := Decode(s.Type, s.Version, data)
		checked, err := DecodeChecked(s.Type, s.Version, data)
		if err != nil {
			return
		}
		// The fast path never refuses what the full check accepts, and
		// both give the same current value.
		if fastErr != nil {
			t.Fatalf("%s v%d: DecodeChecked accepted %q, Decode refused: %v", s.Type, s.Version, data, fastErr)
		}
		if diff := cmp.Diff(checked, fast); diff != "" {
			t.Fatalf("%s v%d (-checked +fast):\n%s", s.Type, s.Version, diff)
		}
	})
}

func FuzzValidateCommand(f *testing.F) {
	for i, c := range Commands {
		f.Add(uint8(i), mustJSON(f, commandExamples[c.Name]))
	}
	f.Add(uint8(0), []byte(`{"listing_id":"l-1","price":{"amount_minor":-1,"currency":"usd"}}`))
	f.Fuzz(func(t *testing.T, idx uint8, body []byte) {
		c := Commands[int(idx)%len(Commands)]
		v, err := DecodeCommand(c.Name, body)
		if err != nil {
			return
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateCommand(c.Name, again); err != nil {
			t.Fatalf("%s accepted %q but not its re-encoding %q: %v", c.Name, body, again, err)
		}
	})
}

func FuzzParseMoney(f *testing.F) {
	for _, s := range []string{"USD 100", "USD 100.00", "IDR 150000.5", "JPY 1", "BHD 0.001", "USD 1.234", "usd 1", "USD -1", "USD 92233720368547758.07", "XYZ 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMoney(s)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("ParseMoney(%q) = %v, which is invalid: %v", s, m, err)
		}
		back, err := ParseMoney(m.String())
		if err != nil || back != m {
			t.Fatalf("ParseMoney(%q) = %v; its String %q parses to %v, %v", s, m, m.String(), back, err)
		}
	})
}

func FuzzCheckPostings(f *testing.F) {
	f.Add("buyer:b-1", int64(-100), "escrow:o-1", int64(100), "USD")
	f.Add("refunds", int64(9007199254740991), "escrow:o-1", int64(-9007199254740991), "IDR")
	f.Add("buyer:b-1", int64(-9223372036854775808), "escrow:o-1", int64(-9223372036854775808), "USD")
	f.Fuzz(func(t *testing.T, a1 string, m1 int64, a2 string, m2 int64, cur string) {
		ps := []Posting{{a1, m1, cur}, {a2, m2, cur}}
		if err := CheckPostings(ps); err != nil {
			return
		}
		// Accepted means the exact integer sum is zero and both legs are
		// within bounds.
		if m1 == 0 || m2 == 0 || m1 != -m2 || m1 > MaxAmountMinor || m1 < -MaxAmountMinor {
			t.Fatalf("CheckPostings accepted %v", ps)
		}
	})
}

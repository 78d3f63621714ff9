package events

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func sealedEvent(t testing.TB) Event {
	t.Helper()
	wib := time.FixedZone("WIB", 7*3600)
	e := Event{
		ID: NewID(), Type: "order.placed", SchemaVersion: 2, Source: "/ledger/order",
		AggregateID: "ord-1", OccurredAt: time.Date(2023, 10, 4, 16, 59, 59, 500, wib),
		CorrelationID: "corr-1", CausationID: "cmd-1", PolicyPosition: 7,
		Data: []byte(`{"order_id":"ord-1","amount_minor":1500000}`),
	}
	evs := []Event{e}
	Seal(evs, 0, GenesisHash)
	return evs[0]
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	e := sealedEvent(t)
	m, err := Encode(&e)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Subject, "ledger.order.ord-1.placed"; got != want {
		t.Errorf("subject = %q, want %q", got, want)
	}
	if got := m.Header.Get(HeaderTime); got != "2023-10-04T16:59:59.0000005+07:00" {
		t.Errorf("ce-time = %q, want the WIB offset kept", got)
	}
	got, err := Decode(m.Subject, m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash != e.Hash || got.ID != e.ID || !got.OccurredAt.Equal(e.OccurredAt) || got.PolicyPosition != 7 ||
		got.SchemaVersion != 2 || got.CorrelationID != "corr-1" || got.AggregateVersion != 1 {
		t.Errorf("round trip changed the event:\n got %+v\nwant %+v", got, e)
	}
}

func TestDecodeRefusesBadInput(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(m *nats.Msg)
		field   string
		wantErr string
	}{
		{"missing id", func(m *nats.Msg) { m.Header.Del(HeaderID) }, HeaderID, "required"},
		{"not uuidv7", func(m *nats.Msg) { m.Header.Set(HeaderID, "6ba7b810-9dad-11d1-80b4-00c04fd430c8") }, "id", "UUIDv7"},
		{"bad spec", func(m *nats.Msg) { m.Header.Set(HeaderSpecVersion, "0.3") }, HeaderSpecVersion, "1.0"},
		{"unknown attribute", func(m *nats.Msg) { m.Header.Set("ce-colour", "red") }, "ce-colour", "unknown"},
		{"duplicate attribute", func(m *nats.Msg) { m.Header.Add(HeaderType, "order.placed") }, "ce-type", "exactly once"},
		{"bad time", func(m *nats.Msg) { m.Header.Set(HeaderTime, "yesterday") }, HeaderTime, "RFC 3339"},
		{"bad type", func(m *nats.Msg) { m.Header.Set(HeaderType, "Order Placed") }, HeaderDataSchema, "different type"},
		{"bad schema", func(m *nats.Msg) { m.Header.Set(HeaderDataSchema, "urn:x") }, HeaderDataSchema, "must start"},
		{"leading zero", func(m *nats.Msg) { m.Header.Set(HeaderPolicyPosition, "07") }, HeaderPolicyPosition, "leading zeros"},
		{"version zero", func(m *nats.Msg) { m.Header.Set(HeaderAggregateVersion, "0") }, HeaderAggregateVersion, "at least 1"},
		{"content type", func(m *nats.Msg) { m.Header.Set(HeaderContentType, "text/plain") }, HeaderContentType, "application/json"},
		{"body not object", func(m *nats.Msg) { m.Data = []byte(`[1]`) }, "data", "object"},
		{"body not closed", func(m *nats.Msg) { m.Data = []byte(`{`) }, "data", "object"},
		{"body not json", func(m *nats.Msg) { rehash(m, []byte(`{"a":}`)) }, "data", "valid JSON"},
		{"body too big", func(m *nats.Msg) { m.Data = []byte(`{"x":"` + strings.Repeat("a", MaxDataBytes) + `"}`) }, "data", "limit"},
		{"subject mismatch", func(m *nats.Msg) { m.Subject = "ledger.order.ord-2.placed" }, "subject", "does not match"},
		{"tampered body", func(m *nats.Msg) { m.Data = []byte(`{"order_id":"ord-1","amount_minor":1}`) }, HeaderHash, "mismatch"},
		{"bad hash", func(m *nats.Msg) { m.Header.Set(HeaderHash, "XYZ") }, HeaderHash, "hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := sealedEvent(t)
			m, err := Encode(&e)
			if err != nil {
				t.Fatal(err)
			}
			tt.mutate(m)
			_, err = Decode(m.Subject, m.Header, m.Data)
			if err == nil {
				t.Fatal("Decode accepted bad input")
			}
			le, ok := err.(*Error)
			if !ok {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			if le.Field != tt.field || !strings.Contains(le.Error(), tt.wantErr) {
				t.Errorf("error = %v (field %q), want field %q and text containing %q", err, le.Field, tt.field, tt.wantErr)
			}
		})
	}
}

// rehash replaces the body and recomputes the hash, as a writer that
// bypassed validation would.
func rehash(m *nats.Msg, data []byte) {
	e, err := decode(m.Subject, m.Header, m.Data)
	if err != nil {
		panic(err)
	}
	e.Data = data
	m.Data = data
	m.Header.Set(HeaderHash, e.ComputeHash())
}

func TestVerifyChainNamesTheBrokenEvent(t *testing.T) {
	evs := []Event{sealedEvent(t), sealedEvent(t), sealedEvent(t)}
	Seal(evs, 0, GenesisHash)
	if err := VerifyChain(evs, 0, GenesisHash); err != nil {
		t.Fatalf("intact chain: %v", err)
	}
	evs[1].Data = []byte(`{"order_id":"ord-1","amount_minor":2}`)
	err := VerifyChain(evs, 0, GenesisHash)
	if KindOf(err) != KindIntegrity || !strings.Contains(err.Error(), evs[1].ID) {
		t.Fatalf("err = %v, want an integrity error naming %s", err, evs[1].ID)
	}
	evs = []Event{sealedEvent(t), sealedEvent(t)}
	Seal(evs, 0, GenesisHash)
	evs[1].PrevHash = GenesisHash
	evs[1].Hash = evs[1].ComputeHash()
	if err := VerifyChain(evs, 0, GenesisHash); KindOf(err) != KindIntegrity || !strings.Contains(err.Error(), "chain broken") {
		t.Fatalf("relinked chain: err = %v", err)
	}
}

func TestSchemaURN(t *testing.T) {
	typ, v, err := ParseSchemaURN(SchemaURN("payment.refunded", 12))
	if err != nil || typ != "payment.refunded" || v != 12 {
		t.Fatalf("got %q %d %v", typ, v, err)
	}
	for _, bad := range []string{"", "urn:marketledger:schema:x", "urn:marketledger:schema:x:v0", "urn:marketledger:schema:x:v01", "urn:marketledger:schema:x:v1000"} {
		if _, _, err := ParseSchemaURN(bad); err == nil {
			t.Errorf("ParseSchemaURN(%q) accepted", bad)
		}
	}
}

// FuzzDecode feeds arbitrary headers and bodies to the decoder: it must
// never panic, and whatever it accepts must re-encode to the same message.
func FuzzDecode(f *testing.F) {
	e := sealedEvent(f)
	m, _ := Encode(&e)
	f.Add(m.Subject, m.Header.Get(HeaderID), m.Header.Get(HeaderType), m.Header.Get(HeaderTime), m.Header.Get(HeaderDataSchema), m.Header.Get(HeaderAggregateVersion), m.Header.Get(HeaderHash), m.Data)
	f.Add("ledger.x.y.z", "", "x.z", "2023-10-04T17:00:00+07:00", "urn:marketledger:schema:x.z:v1", "1", GenesisHash, []byte(`{}`))
	f.Fuzz(func(t *testing.T, subject, id, typ, tm, schema, ver, hash string, data []byte) {
		h := nats.Header{}
		for k, v := range m.Header {
			h[k] = append([]string(nil), v...)
		}
		h.Set(HeaderID, id)
		h.Set(HeaderType, typ)
		h.Set(HeaderTime, tm)
		h.Set(HeaderDataSchema, schema)
		h.Set(HeaderAggregateVersion, ver)
		h.Set(HeaderHash, hash)
		got, err := Decode(subject, h, data)
		if err != nil {
			return
		}
		re, err := Encode(&got)
		if err != nil {
			t.Fatalf("accepted event does not re-encode: %v", err)
		}
		if re.Subject != subject || re.Header.Get(HeaderHash) != hash || string(re.Data) != string(data) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	e := sealedEvent(b)
	e.Data = []byte(`{"pad":"` + strings.Repeat("x", 500) + `"}`)
	evs := []Event{e}
	Seal(evs, 0, GenesisHash)
	m, _ := Encode(&evs[0])
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(m.Subject, m.Header, m.Data); err != nil {
			b.Fatal(err)
		}
	}
}

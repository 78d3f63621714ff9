package judge

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Msg is one stored message as the judge reads it: the stream sequence
// (the log position), the subject, the headers, the body and the server's
// recorded time (the JetStream timestamp).
type Msg struct {
	Seq      uint64
	Subject  string
	Header   nats.Header
	Data     []byte
	Recorded time.Time
}

// genesisHash is the previous hash of every aggregate's first event.
const genesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// hashDomain is the domain tag that starts every event's hash preimage.
const hashDomain = "marketledger/event/v1"

// contentTypeJSON is the only body encoding of the ledger.
const contentTypeJSON = "application/json"

// event is one event's envelope, parsed from its headers.
type event struct {
	Msg
	ID, Type, Source, AggregateID string
	Context, Name                 string
	SchemaVersion                 int
	// TimeRaw is ce-time exactly as stored: the hash covers these bytes.
	TimeRaw                string
	Decided                time.Time
	Correlation, Causation string
	PolicyPosition         uint64
	AggregateVersion       uint64
	PrevPosition           uint64
	PrevHash, Hash         string
}

// aggregate names the event's aggregate: context and id.
func (e *event) aggregate() string { return e.Context + "." + e.AggregateID }

// isRecord reports whether subject holds one of the store's own records
// (idempotency records, policy fences) rather than an event: their third
// token starts with '_', which no aggregate id may.
func isRecord(subject string) bool {
	parts := strings.SplitN(subject, ".", 4)
	return len(parts) >= 3 && strings.HasPrefix(parts[2], "_")
}

// header returns the single value of header name, matched without regard
// to case, and whether it appeared more than once.
func header(h nats.Header, name string) (string, bool) {
	var vals []string
	for k, vs := range h {
		if strings.EqualFold(k, name) {
			vals = append(vals, vs...)
		}
	}
	if len(vals) == 0 {
		return "", false
	}
	return vals[0], len(vals) > 1
}

// parseEvent reads the envelope of m. The error names the header and the
// rule it breaks.
func parseEvent(m Msg) (*event, error) {
	e := &event{Msg: m}
	get := func(name string, required bool) (string, error) {
		v, dup := header(m.Header, name)
		if dup {
			return "", fmt.Errorf("%s: must appear exactly once", name)
		}
		if v == "" && required {
			return "", fmt.Errorf("%s: required attribute is missing", name)
		}
		return v, nil
	}
	var err error
	strs := []struct {
		name string
		dst  *string
		req  bool
	}{
		{"ce-id", &e.ID, true}, {"ce-type", &e.Type, true}, {"ce-source", &e.Source, true},
		{"ce-subject", &e.AggregateID, true}, {"ce-time", &e.TimeRaw, true},
		{"ce-correlationid", &e.Correlation, false}, {"ce-causationid", &e.Causation, false},
		{"ce-prevhash", &e.PrevHash, true}, {"ce-hash", &e.Hash, true},
	}
	for _, s := range strs {
		if *s.dst, err = get(s.name, s.req); err != nil {
			return nil, err
		}
	}
	if v, err := get("ce-specversion", true); err != nil || v != "1.0" {
		return nil, fmt.Errorf("ce-specversion: must be 1.0")
	}
	if v, err := get("content-type", true); err != nil || v != contentTypeJSON {
		return nil, fmt.Errorf("content-type: must be %s", contentTypeJSON)
	}
	if e.Decided, err = time.Parse(time.RFC3339Nano, e.TimeRaw); err != nil {
		return nil, fmt.Errorf("ce-time: must be an RFC 3339 instant with offset")
	}
	var ok bool
	if e.Context, e.Name, ok = strings.Cut(e.Type, "."); !ok || e.Context == "" || e.Name == "" {
		return nil, fmt.Errorf("ce-type: must be <context>.<name>")
	}
	if want := "ledger." + e.Context + "." + e.AggregateID + "." + e.Name; m.Subject != want {
		return nil, fmt.Errorf("subject: %q does not match ce-type and ce-subject (%q)", m.Subject, want)
	}
	if err := parseNumbers(e, get); err != nil {
		return nil, err
	}
	if !isHex64(e.PrevHash) {
		return nil, fmt.Errorf("ce-prevhash: must be 64 lower-case hex digits")
	}
	if !isHex64(e.Hash) {
		return nil, fmt.Errorf("ce-hash: must be 64 lower-case hex digits")
	}
	return e, nil
}

func parseNumbers(e *event, get func(string, bool) (string, error)) error {
	ds, err := get("ce-dataschema", true)
	if err != nil {
		return err
	}
	rest, ok := strings.CutPrefix(ds, "urn:marketledger:schema:"+e.Type+":v")
	v, err := strconv.Atoi(rest)
	if !ok || err != nil || v < 1 || strconv.Itoa(v) != rest {
		return fmt.Errorf("ce-dataschema: must be urn:marketledger:schema:%s:v<version>", e.Type)
	}
	e.SchemaVersion = v
	nums := []struct {
		name string
		dst  *uint64
		req  bool
	}{
		{"ce-policyposition", &e.PolicyPosition, true}, {"ce-aggregateversion", &e.AggregateVersion, true},
		{"ce-prevposition", &e.PrevPosition, false},
	}
	for _, n := range nums {
		s, err := get(n.name, n.req)
		if err != nil {
			return err
		}
		if s == "" {
			continue
		}
		u, err := strconv.ParseUint(s, 10, 64)
		if err != nil || strconv.FormatUint(u, 10) != s {
			return fmt.Errorf("%s: must be a decimal unsigned integer without sign or leading zeros", n.name)
		}
		*n.dst = u
	}
	if e.AggregateVersion == 0 {
		return fmt.Errorf("ce-aggregateversion: must be at least 1")
	}
	return nil
}

// canonicalHash recomputes an event's hash as ADR 0002 defines it: SHA-256
// over a domain tag and then each attribute that carries meaning as a
// uvarint length-prefixed field, in a fixed order, the previous position
// only when it is set, then the content type and the body as stored.
func canonicalHash(e *event) string {
	var b []byte
	field := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	field(hashDomain)
	field(e.PrevHash)
	field(e.ID)
	field(e.Type)
	field(strconv.Itoa(e.SchemaVersion))
	field(e.Source)
	field(e.AggregateID)
	field(e.TimeRaw)
	field(e.Correlation)
	field(e.Causation)
	field(strconv.FormatUint(e.PolicyPosition, 10))
	field(strconv.FormatUint(e.AggregateVersion, 10))
	if e.PrevPosition != 0 {
		field(strconv.FormatUint(e.PrevPosition, 10))
	}
	field(contentTypeJSON)
	field(string(e.Data))
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

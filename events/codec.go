package events

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// SubjectPrefix is the first token of every subject in the ledger stream.
const SubjectPrefix = "ledger."

// CloudEvents 1.0 binary-mode headers (NATS protocol binding) and the
// ledger's extensions. Extension names follow the CloudEvents naming rule:
// lower-case letters and digits only.
const (
	HeaderSpecVersion      = "ce-specversion"
	HeaderID               = "ce-id"
	HeaderType             = "ce-type"
	HeaderSource           = "ce-source"
	HeaderSubject          = "ce-subject"
	HeaderTime             = "ce-time"
	HeaderDataSchema       = "ce-dataschema"
	HeaderContentType      = "content-type"
	HeaderCorrelationID    = "ce-correlationid"
	HeaderCausationID      = "ce-causationid"
	HeaderPolicyPosition   = "ce-policyposition"
	HeaderAggregateVersion = "ce-aggregateversion"
	HeaderPrevHash         = "ce-prevhash"
	HeaderPrevPosition     = "ce-prevposition"
	HeaderHash             = "ce-hash"
	// HeaderTraceparent is the CloudEvents distributed-tracing extension
	// (attribute "traceparent"), outside the hash (ADR 0018).
	HeaderTraceparent = "ce-traceparent"

	// SpecVersion is the CloudEvents version the envelope follows.
	SpecVersion = "1.0"
	// ContentTypeJSON is the only body encoding the ledger writes.
	ContentTypeJSON = "application/json"
	// SchemaURNPrefix starts every dataschema: urn:marketledger:schema:<type>:v<N>.
	SchemaURNPrefix = "urn:marketledger:schema:"
)

// timeLayout keeps the producer's offset (a WIB instant stays +07:00) and
// nanoseconds, so the encoded string is exactly what the hash covers.
const timeLayout = time.RFC3339Nano

// SchemaURN returns the dataschema URI of a type and version.
func SchemaURN(typ string, version int) string {
	return SchemaURNPrefix + typ + ":v" + strconv.Itoa(version)
}

// ParseSchemaURN is the inverse of SchemaURN.
func ParseSchemaURN(s string) (typ string, version int, err error) {
	rest, ok := strings.CutPrefix(s, SchemaURNPrefix)
	if !ok {
		return "", 0, fmt.Errorf("must start with %q", SchemaURNPrefix)
	}
	i := strings.LastIndex(rest, ":v")
	if i < 0 {
		return "", 0, fmt.Errorf("must end with :v<version>")
	}
	typ = rest[:i]
	v, err := strconv.Atoi(rest[i+2:])
	if err != nil || v < 1 || v > MaxSchemaVersion || strconv.Itoa(v) != rest[i+2:] {
		return "", 0, fmt.Errorf("version must be an integer 1..%d", MaxSchemaVersion)
	}
	return typ, v, nil
}

// Encode turns a sealed event (hash and aggregate version set) into a NATS
// message in CloudEvents binary mode. It validates the event first.
func Encode(e *Event) (*nats.Msg, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if e.AggregateVersion == 0 || !isHexHash(e.Hash) || !isHexHash(e.PrevHash) {
		return nil, invalid("events.Encode", "hash", "event must be sealed (aggregate version and hashes set) before encoding")
	}
	m := nats.NewMsg(e.Subject())
	h := m.Header
	h.Set(HeaderSpecVersion, SpecVersion)
	h.Set(HeaderID, e.ID)
	h.Set(HeaderType, e.Type)
	h.Set(HeaderSource, e.Source)
	h.Set(HeaderSubject, e.AggregateID)
	h.Set(HeaderTime, e.OccurredAt.Format(timeLayout))
	h.Set(HeaderDataSchema, SchemaURN(e.Type, e.SchemaVersion))
	h.Set(HeaderContentType, ContentTypeJSON)
	if e.CorrelationID != "" {
		h.Set(HeaderCorrelationID, e.CorrelationID)
	}
	if e.CausationID != "" {
		h.Set(HeaderCausationID, e.CausationID)
	}
	h.Set(HeaderPolicyPosition, strconv.FormatUint(e.PolicyPosition, 10))
	h.Set(HeaderAggregateVersion, strconv.FormatUint(e.AggregateVersion, 10))
	h.Set(HeaderPrevHash, e.PrevHash)
	h.Set(HeaderPrevPosition, strconv.FormatUint(e.PrevPosition, 10))
	h.Set(HeaderHash, e.Hash)
	if e.Traceparent != "" {
		h.Set(HeaderTraceparent, e.Traceparent)
	}
	h.Set(nats.MsgIdHdr, e.ID)
	m.Data = e.Data
	return m, nil
}

// knownHeaders are the ce- headers Decode accepts; any other ce- header is
// refused so that a typo never silently drops an attribute.
var knownHeaders = map[string]bool{
	HeaderSpecVersion: true, HeaderID: true, HeaderType: true, HeaderSource: true,
	HeaderSubject: true, HeaderTime: true, HeaderDataSchema: true,
	HeaderCorrelationID: true, HeaderCausationID: true, HeaderPolicyPosition: true,
	HeaderAggregateVersion: true, HeaderPrevHash: true, HeaderHash: true, HeaderPrevPosition: true,
	HeaderTraceparent: true,
}

// Decode parses a stored message strictly: every required attribute present
// exactly once and well formed, no unknown ce- attribute, the subject agreeing
// with the attributes, and the event's own hash matching its content.
// Position and RecordedAt are left for the caller, who has the metadata.
func Decode(subject string, header nats.Header, data []byte) (Event, error) {
	e, err := decode(subject, header, data)
	if err != nil {
		return e, err
	}
	if err := validateData("events.Decode", data); err != nil {
		return e, err
	}
	return e, nil
}

// decode is Decode without the body's JSON grammar check: the store's read
// path uses it, because the body's hash matched and every body was fully
// validated before it was appended; contracts.Decode parses it strictly
// wherever it is used.
func decode(subject string, header nats.Header, data []byte) (Event, error) {
	const op = "events.Decode"
	var e Event
	for k, vs := range header {
		// Only ce- attributes and content-type are the envelope's; NATS's
		// own headers pass. Checked without lower-casing every key: this
		// runs for every event read.
		isCE := len(k) > 3 && k[0]|0x20 == 'c' && k[1]|0x20 == 'e' && k[2] == '-'
		if !isCE && !strings.EqualFold(k, HeaderContentType) {
			continue
		}
		if isCE && !knownHeaders[k] && !knownHeaders[strings.ToLower(k)] {
			return e, invalid(op, k, "unknown CloudEvents attribute")
		}
		if len(vs) != 1 {
			return e, invalid(op, k, "attribute must appear exactly once")
		}
	}
	get := func(name string, required bool) (string, error) {
		v := header.Get(name)
		if v == "" && required {
			return "", invalid(op, name, "required attribute is missing")
		}
		return v, nil
	}
	var err error
	var s string
	if s, err = get(HeaderSpecVersion, true); err != nil {
		return e, err
	}
	if s != SpecVersion {
		return e, invalid(op, HeaderSpecVersion, fmt.Sprintf("must be %q, got %q", SpecVersion, truncate(s)))
	}
	if s, err = get(HeaderContentType, true); err != nil {
		return e, err
	}
	if s != ContentTypeJSON {
		return e, invalid(op, HeaderContentType, fmt.Sprintf("must be %q", ContentTypeJSON))
	}
	fields := []struct {
		name string
		dst  *string
		req  bool
	}{
		{HeaderID, &e.ID, true}, {HeaderType, &e.Type, true}, {HeaderSource, &e.Source, true},
		{HeaderSubject, &e.AggregateID, true}, {HeaderCorrelationID, &e.CorrelationID, false},
		{HeaderCausationID, &e.CausationID, false}, {HeaderPrevHash, &e.PrevHash, true},
		{HeaderHash, &e.Hash, true},
	}
	for _, f := range fields {
		if *f.dst, err = get(f.name, f.req); err != nil {
			return e, err
		}
	}
	if err := decodeNumbers(op, header, &e); err != nil {
		return e, err
	}
	e.Data = data
	// Outside the hash and only for observability: a malformed one is
	// dropped, never a reason to refuse a stored fact.
	if tp := header.Get(HeaderTraceparent); ValidTraceparent(tp) {
		e.Traceparent = tp
	}
	if err := e.validateEnvelope(); err != nil {
		return e, withOp(op, err)
	}
	if subject != e.Subject() {
		return e, invalid(op, "subject", fmt.Sprintf("stored subject %q does not match attributes (%q)", truncate(subject), truncate(e.Subject())))
	}
	if !isHexHash(e.PrevHash) {
		return e, invalid(op, HeaderPrevHash, "must be 64 lower-case hex digits")
	}
	if !isHexHash(e.Hash) {
		return e, invalid(op, HeaderHash, "must be 64 lower-case hex digits")
	}
	if got := e.computeHash([]byte(header.Get(HeaderTime))); got != e.Hash {
		return e, &Error{Op: op, Kind: KindIntegrity, Field: HeaderHash,
			Rule: fmt.Sprintf("event %s (%s v%d) hash mismatch: stored %s, computed %s", e.ID, e.AggregateID, e.AggregateVersion, e.Hash, got)}
	}
	return e, nil
}

func decodeNumbers(op string, header nats.Header, e *Event) error {
	ts := header.Get(HeaderTime)
	if ts == "" {
		return invalid(op, HeaderTime, "required attribute is missing")
	}
	t, err := time.Parse(timeLayout, ts)
	var buf [64]byte
	if err != nil || string(t.AppendFormat(buf[:0], timeLayout)) != ts {
		return invalid(op, HeaderTime, "must be an RFC 3339 instant with offset in canonical form")
	}
	e.OccurredAt = t
	ds := header.Get(HeaderDataSchema)
	if ds == "" {
		return invalid(op, HeaderDataSchema, "required attribute is missing")
	}
	typ, v, err := ParseSchemaURN(ds)
	if err != nil {
		return invalid(op, HeaderDataSchema, err.Error())
	}
	if typ != header.Get(HeaderType) {
		return invalid(op, HeaderDataSchema, "names a different type than ce-type")
	}
	e.SchemaVersion = v
	if e.PolicyPosition, err = parseUint(header.Get(HeaderPolicyPosition)); err != nil {
		return invalid(op, HeaderPolicyPosition, err.Error())
	}
	if e.AggregateVersion, err = parseUint(header.Get(HeaderAggregateVersion)); err != nil {
		return invalid(op, HeaderAggregateVersion, err.Error())
	}
	if e.AggregateVersion == 0 {
		return invalid(op, HeaderAggregateVersion, "must be at least 1")
	}
	// Optional: stores other than JetStream (EventStoreDB) do not write it.
	if pp := header.Get(HeaderPrevPosition); pp != "" {
		if e.PrevPosition, err = parseUint(pp); err != nil {
			return invalid(op, HeaderPrevPosition, err.Error())
		}
	}
	return nil
}

func parseUint(s string) (uint64, error) {
	if s == "" {
		return 0, fmt.Errorf("required attribute is missing")
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(v, 10) != s {
		return 0, fmt.Errorf("must be a decimal unsigned integer without sign or leading zeros")
	}
	return v, nil
}

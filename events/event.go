package events

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Limits of one event. They are part of the contract: a producer that exceeds
// one is refused before anything reaches the stream.
const (
	// MaxDataBytes is the largest JSON body of one event (64 KiB).
	MaxDataBytes = 64 << 10
	// MaxEventsPerDecision is the most events one decision may append.
	MaxEventsPerDecision = 64
	// MaxIDLen bounds aggregate, correlation and causation ids.
	MaxIDLen = 128
	// MaxSourceLen bounds the CloudEvents source attribute.
	MaxSourceLen = 256
	// MaxSchemaVersion is the highest schema version a type may have.
	MaxSchemaVersion = 999
)

// Token grammars, written as byte loops because they run for every event
// read (regexp was a third of the read path's cost).
var (
	contextRe = token{first: lowerAlpha, rest: lowerAlnum + "_", max: 32, desc: "^[a-z][a-z0-9_]{0,31}$"}
	nameRe    = token{first: lowerAlpha, rest: lowerAlnum + "_", max: 64, desc: "^[a-z][a-z0-9_]{0,63}$"}
	aggIDRe   = token{first: alnum, rest: alnum + "_-", max: 128, desc: "^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"}
	refIDRe   = token{first: alnum, rest: alnum + "_.:-", max: 128, desc: "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"}
)

const (
	lowerAlpha = "abcdefghijklmnopqrstuvwxyz"
	lowerAlnum = lowerAlpha + "0123456789"
	alnum      = lowerAlnum + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

// token is a one-character class followed by up to max-1 of another.
type token struct {
	first, rest string
	max         int
	desc        string
}

// MatchString reports whether s is a token of this grammar.
func (t token) MatchString(s string) bool {
	if len(s) == 0 || len(s) > t.max || strings.IndexByte(t.first, s[0]) < 0 {
		return false
	}
	for i := 1; i < len(s); i++ {
		if strings.IndexByte(t.rest, s[i]) < 0 {
			return false
		}
	}
	return true
}

func (t token) String() string { return t.desc }

// Event is one immutable fact in the log. Producers fill the first block;
// the store fills the second when the event is appended or read.
type Event struct {
	// ID is a UUIDv7, unique across the log (CloudEvents id).
	ID string
	// Type is "<context>.<name>", for example "order.placed" (CloudEvents type).
	Type string
	// SchemaVersion is the version of Type's schema the body follows (>= 1).
	SchemaVersion int
	// Source names the producing service, for example "/ledger/order".
	Source string
	// AggregateID is the aggregate the event belongs to (CloudEvents subject).
	AggregateID string
	// OccurredAt is the business time of the fact (CloudEvents time). A
	// simulated day carries its simulated clock here.
	OccurredAt time.Time
	// CorrelationID ties together every event of one business flow.
	CorrelationID string
	// CausationID is the id of the command or event that caused this one.
	CausationID string
	// PolicyPosition is the log position of the newest policy event the
	// decision was made under (0 when no policy event existed).
	PolicyPosition uint64
	// Data is the JSON object body.
	Data json.RawMessage
	// Traceparent is the W3C trace context of the decision that produced
	// the event (the CloudEvents distributed-tracing extension), "" when
	// none was traced. It is observability, not a fact: it is outside the
	// hashed envelope (ADR 0018), and a malformed value read back is
	// dropped rather than failing the read.
	Traceparent string

	// AggregateVersion is the 1-based index of the event in its aggregate.
	AggregateVersion uint64
	// PrevHash is the hex SHA-256 of the aggregate's previous event
	// (GenesisHash for the first one).
	PrevHash string
	// PrevPosition is the position of the aggregate's previous event when an
	// earlier decision stored it; 0 when the previous event is the one just
	// before this one in the log (same decision) or there is none. It lets
	// an aggregate be read back along its own chain, one direct read per
	// event, however long the log has grown.
	PrevPosition uint64
	// Hash is the hex SHA-256 of this event's canonical encoding.
	Hash string
	// Position is the global position: the stream sequence of the event.
	Position uint64
	// RecordedAt is the server's time of storing the event.
	RecordedAt time.Time
	// Behind is delivery information, not part of the fact: on an event a
	// subscription delivers, how many events matching it the log held
	// after this one at that moment (the follower's lag in events; 0 when
	// caught up, and on a store that does not tell). Reads leave it 0. It
	// is never encoded: it describes one delivery, not the event.
	Behind uint64 `json:"-"`
}

// Context returns the bounded context of the event's type ("order" for
// "order.placed").
func (e *Event) Context() string {
	c, _, _ := strings.Cut(e.Type, ".")
	return c
}

// Name returns the event name within its context ("placed" for "order.placed").
func (e *Event) Name() string {
	_, n, _ := strings.Cut(e.Type, ".")
	return n
}

// Subject returns the NATS subject the event is stored under:
// ledger.<context>.<aggregate_id>.<name>.
func (e *Event) Subject() string {
	return SubjectPrefix + e.Context() + "." + e.AggregateID + "." + e.Name()
}

// NewID returns a fresh UUIDv7 string.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// SplitType splits "<context>.<name>" and checks both parts.
func SplitType(t string) (context, name string, err error) {
	c, n, ok := strings.Cut(t, ".")
	if !ok || !contextRe.MatchString(c) || !nameRe.MatchString(n) {
		return "", "", invalid("", "type", fmt.Sprintf("must be <context>.<name> in lower snake case, got %q", t))
	}
	return c, n, nil
}

// ValidateContext checks a bounded-context name.
func ValidateContext(c string) error {
	if !contextRe.MatchString(c) {
		return invalid("", "context", fmt.Sprintf("must match %s, got %q", contextRe, c))
	}
	return nil
}

// ValidateAggregateID checks an aggregate id: it becomes one subject token.
func ValidateAggregateID(id string) error {
	if !aggIDRe.MatchString(id) {
		return invalid("", "subject", fmt.Sprintf("aggregate id must match %s, got %q", aggIDRe, truncate(id)))
	}
	return nil
}

// Validate checks every producer-set attribute of the event, the body
// included. It does not look at the store-set attributes.
func (e *Event) Validate() error {
	if err := e.validateEnvelope(); err != nil {
		return err
	}
	return validateData("events.Validate", e.Data)
}

// validateEnvelope checks the attributes and the body's size and shape but
// not its JSON grammar: the read path, which has verified the body's hash
// against what was validated before append, stops here.
func (e *Event) validateEnvelope() error {
	op := "events.Validate"
	if err := validateUUIDv7(e.ID); err != nil {
		return &Error{Op: op, Kind: KindInvalid, Field: "id", Rule: err.Error()}
	}
	if _, _, err := SplitType(e.Type); err != nil {
		return withOp(op, err)
	}
	if e.SchemaVersion < 1 || e.SchemaVersion > MaxSchemaVersion {
		return invalid(op, "dataschema", fmt.Sprintf("schema version must be 1..%d, got %d", MaxSchemaVersion, e.SchemaVersion))
	}
	if e.Source == "" || len(e.Source) > MaxSourceLen || strings.ContainsAny(e.Source, " \t\r\n") {
		return invalid(op, "source", fmt.Sprintf("must be a non-empty URI reference of at most %d bytes without spaces", MaxSourceLen))
	}
	if err := ValidateAggregateID(e.AggregateID); err != nil {
		return withOp(op, err)
	}
	if e.OccurredAt.IsZero() {
		return invalid(op, "time", "occurred-at is required")
	}
	if y := e.OccurredAt.Year(); y < 1970 || y > 9999 {
		return invalid(op, "time", fmt.Sprintf("year must be 1970..9999, got %d", y))
	}
	if e.CorrelationID != "" && !refIDRe.MatchString(e.CorrelationID) {
		return invalid(op, "correlationid", fmt.Sprintf("must match %s", refIDRe))
	}
	if e.CausationID != "" && !refIDRe.MatchString(e.CausationID) {
		return invalid(op, "causationid", fmt.Sprintf("must match %s", refIDRe))
	}
	if e.Traceparent != "" && !ValidTraceparent(e.Traceparent) {
		return invalid(op, "traceparent", "must be a W3C traceparent: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>, ids not all zero")
	}
	if len(e.Data) > MaxDataBytes {
		return invalid(op, "data", fmt.Sprintf("body is %d bytes, the limit is %d", len(e.Data), MaxDataBytes))
	}
	if firstNonSpace(e.Data) != '{' || lastNonSpace(e.Data) != '}' {
		return invalid(op, "data", "body must be a JSON object")
	}
	return nil
}

func validateData(op string, data []byte) error {
	if len(data) > MaxDataBytes {
		return invalid(op, "data", fmt.Sprintf("body is %d bytes, the limit is %d", len(data), MaxDataBytes))
	}
	if !json.Valid(data) {
		return invalid(op, "data", "body must be valid JSON")
	}
	if t := firstNonSpace(data); t != '{' {
		return invalid(op, "data", "body must be a JSON object")
	}
	return nil
}

func validateUUIDv7(s string) error {
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return fmt.Errorf("must be a UUID in canonical form, got %q", truncate(s))
	}
	if u.Version() != 7 || u.Variant() != uuid.RFC4122 {
		return fmt.Errorf("must be a UUIDv7, got version %d", u.Version())
	}
	return nil
}

func lastNonSpace(b []byte) byte {
	for i := len(b) - 1; i >= 0; i-- {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return b[i]
	}
	return 0
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func withOp(op string, err error) error {
	if e, ok := err.(*Error); ok && e.Op == "" {
		c := *e
		c.Op = op
		return &c
	}
	return err
}

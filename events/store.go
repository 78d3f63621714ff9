package events

import (
	"context"
	"iter"
	"time"
)

// Store is the ledger's log. It is deliberately small; optional capabilities
// grow as separate interfaces, as database/sql/driver does.
//
// Concurrency contract: every method is safe for concurrent use by many
// goroutines. Append is linearizable per aggregate: of several appends to one
// aggregate with the same expected version, exactly one succeeds and the
// others get a KindConflict error. An Append that returns nil is durable
// (acknowledged by the server after fsync under the default settings); an
// Append that returns an error other than KindUnavailable stored nothing; a
// KindUnavailable error means the outcome is unknown and the caller retries
// with the same idempotency key or reloads the aggregate.
//
// Every event returned by Load, Read or Subscribe has passed its own hash
// check; Load also verifies the aggregate's chain.
type Store interface {
	// Append stores all events of one decision atomically or none of them.
	Append(ctx context.Context, d Decision) (Appended, error)
	// Load returns the events of one aggregate with a version above
	// afterVersion, in order. An unknown aggregate gives an empty slice.
	// When the stored history does not continue from afterVersion (it is
	// shorter, or its event there is not the one this store saw), Load
	// returns the whole history instead: a caller that passed
	// afterVersion > 0 starts over when the first event is not
	// afterVersion+1.
	Load(ctx context.Context, ref AggregateRef, afterVersion uint64) ([]Event, error)
	// Read yields the global log in order, from q.From up to q.To (or up to
	// the head of the log when Read was called, if q.To is 0).
	Read(ctx context.Context, q Query) iter.Seq2[Event, error]
	// Subscribe calls fn for every event that q selects, from q.From (or
	// q.FromTime) on, and then for every new one as it is appended, in
	// order, with no gap and no duplicate among the events q selects, until
	// ctx ends or fn returns an error. q.Subjects narrows the subscription
	// as it narrows a Read; q.To must be 0 (a subscription has no end),
	// and a Query with To set is refused with a KindInvalid error.
	Subscribe(ctx context.Context, q Query, fn func(Event) error) error
	// PositionAt returns the position of the last event recorded by the
	// server at or before t, or 0 if there is none.
	PositionAt(ctx context.Context, t time.Time) (uint64, error)
	// Close releases the store's resources. Pending appends fail.
	Close() error
}

// AggregateRef names one aggregate.
type AggregateRef struct {
	Context string // "order"
	ID      string // the aggregate id, one subject token
}

// Subject returns the filter subject of every event of the aggregate.
func (r AggregateRef) Subject() string {
	return SubjectPrefix + r.Context + "." + r.ID + ".*"
}

func (r AggregateRef) String() string { return r.Context + "/" + r.ID }

// Decision is what a decider decided: the events for one aggregate, appended
// only if the aggregate is still at ExpectedVersion.
type Decision struct {
	Aggregate AggregateRef
	// ExpectedVersion is the aggregate version the decision was made on
	// (0: the aggregate must not exist yet).
	ExpectedVersion uint64
	// Events are the new events; the store sets their aggregate versions and
	// hashes. All must belong to Aggregate.
	Events []Event
	// IdempotencyKey, when set, makes the decision idempotent for good: a
	// second decision with the same key and the same CommandDigest returns
	// the first result; with a different CommandDigest it is refused with
	// KindDuplicate.
	IdempotencyKey string
	// CommandDigest identifies the command the decision answers (for example
	// a SHA-256 of its canonical JSON). Required with IdempotencyKey.
	CommandDigest string
	// Fence, when true, appends the decision only if no event was stored on
	// the store's fence subject (its fence source's context, see WithFence) after the PolicyPosition its events
	// record: the decision was made under the newest policy, or it is
	// refused with a policy conflict (KindConflict, ReasonPolicyMoved)
	// and must be decided again. All its events must record the same
	// PolicyPosition. This is what makes a freeze exact (see ADR 0004).
	Fence bool
	// Parts, when set, says that the decision answers several commands
	// decided in turn on the aggregate, each on the state its predecessor
	// left: one part per command, in order, each owning the next
	// Part.Events of Events. The events are appended together under the
	// one expected-version check, and every keyed part gets its own
	// idempotency record, so a command sent again later is answered with
	// its own part. IdempotencyKey and CommandDigest stay empty. A
	// decision with a part whose key was already used is refused whole
	// (KindConflict, nothing stored); the caller looks each key up
	// (IdempotencyLookup) and decides the others again. Only a store that
	// implements PartsAppender takes parts; others refuse them
	// (KindInvalid).
	Parts []Part
}

// Part is one command's share of a Decision with Parts.
type Part struct {
	// Events is how many of the decision's events are this command's.
	Events int
	// IdempotencyKey and CommandDigest are the command's, as in Decision.
	IdempotencyKey string
	CommandDigest  string
}

// PartsAppender is a Store whose Append takes Decision.Parts.
type PartsAppender interface {
	AppendsParts()
}

// IsPolicyConflict reports whether err refused a fenced decision because a
// policy event was appended after the position it was decided under.
func IsPolicyConflict(err error) bool {
	return ReasonOf(err) == ReasonPolicyMoved
}

// Appended is the result of a successful Append.
type Appended struct {
	// Version is the aggregate version after the decision.
	Version uint64
	// FirstPosition and LastPosition are the global positions of the
	// decision's first and last event.
	FirstPosition uint64
	LastPosition  uint64
	// Replayed is true when the idempotency key had already been used for
	// the same command and this is the first result returned again.
	Replayed bool
}

// Query selects a range of the global log. From and FromTime are exclusive
// alternatives; the zero Query reads everything.
type Query struct {
	// From is the first position to read (0 or 1 means the start).
	From uint64
	// FromTime, when set, starts at the first event recorded at or after it.
	FromTime time.Time
	// To is the last position to read; 0 means the head when Read started.
	To uint64
	// Subjects filters by NATS subject patterns (for example
	// "ledger.order.>"); empty means every event.
	Subjects []string
}

// CheckSubscription reports whether q can start a subscription: a
// subscription follows the log without end, so To must be 0, and it starts
// either at a position or at an instant, not both.
func (q Query) CheckSubscription() error {
	if q.To != 0 {
		return &Error{Op: "events.Subscribe", Kind: KindInvalid, Field: "to",
			Rule: "must be 0: a subscription follows the log without end"}
	}
	if q.From > 1 && !q.FromTime.IsZero() {
		return &Error{Op: "events.Subscribe", Kind: KindInvalid, Field: "from_time",
			Rule: "must be unset when from is set: a subscription starts at a position or at an instant"}
	}
	return nil
}

// TypeChecker validates an event's type, schema version and body against the
// contract before it is appended. The contracts module provides one; the
// store refuses unknown types when a TypeChecker is set.
type TypeChecker interface {
	CheckEvent(typ string, version int, data []byte) error
}

// IdempotencyLookup is an optional Store capability: find the result of an
// earlier decision by its idempotency key without appending.
type IdempotencyLookup interface {
	// LookupIdempotency returns the first result of the key on the
	// aggregate's context, found=false if the key is unused, or a
	// KindDuplicate error if it was used for a different command.
	LookupIdempotency(ctx context.Context, ref AggregateRef, key, digest string) (a Appended, found bool, err error)
}

package eventstoredb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/marketledger/ledger/events"
)

// Append implements events.Store. One decision is one append to its
// aggregate's stream, so it is atomic, and the stream's expected revision
// makes it linearizable per aggregate. A decision with an idempotency key
// first claims the key's record stream (see idem.go). A fenced decision is
// refused with KindInvalid.
func (s *Store) Append(ctx context.Context, d events.Decision) (events.Appended, error) {
	const op = "eventstoredb.Append"
	if s.isClosed() {
		return events.Appended{}, closedErr(op)
	}
	if err := s.validateDecision(d); err != nil {
		return events.Appended{}, withOp(op, err)
	}
	if d.Fence {
		return events.Appended{}, &events.Error{Op: op, Kind: events.KindInvalid, Field: "fence", Rule: ruleFence}
	}
	if d.IdempotencyKey != "" {
		return s.appendKeyed(ctx, d)
	}
	lastHash, err := s.head(ctx, d.Aggregate, d.ExpectedVersion)
	if err != nil {
		return events.Appended{}, err
	}
	evs, datas, err := seal(d, lastHash)
	if err != nil {
		return events.Appended{}, withOp(op, err)
	}
	a, err := s.write(ctx, d.Aggregate, d.ExpectedVersion, ids(evs), datas)
	return a, err
}

// validateDecision applies the JetStream store's rules to a decision, so
// that both stores refuse the same input.
func (s *Store) validateDecision(d events.Decision) error {
	if err := events.ValidateContext(d.Aggregate.Context); err != nil {
		return err
	}
	if err := events.ValidateAggregateID(d.Aggregate.ID); err != nil {
		return err
	}
	if d.Aggregate == mirrorReserved {
		return &events.Error{Kind: events.KindInvalid, Field: "aggregate", Rule: "ledger/mirror-checkpoint is reserved for the mirror's checkpoint stream"}
	}
	if n := len(d.Events); n == 0 || n > events.MaxEventsPerDecision {
		return &events.Error{Kind: events.KindInvalid, Field: "events", Rule: fmt.Sprintf("a decision has 1..%d events, got %d", events.MaxEventsPerDecision, n)}
	}
	if len(d.Parts) > 0 {
		// One idempotency record per decision is what this store can make
		// atomic with the events (idem.go); it is not a PartsAppender.
		return &events.Error{Kind: events.KindInvalid, Field: "parts", Rule: "this store appends one command per decision; send each part as a decision of its own"}
	}
	if d.IdempotencyKey != "" {
		if len(d.IdempotencyKey) > events.MaxIdempotencyKeyLen {
			return &events.Error{Kind: events.KindInvalid, Field: "idempotency_key", Rule: fmt.Sprintf("at most %d bytes", events.MaxIdempotencyKeyLen)}
		}
		if d.CommandDigest == "" || len(d.CommandDigest) > 128 {
			return &events.Error{Kind: events.KindInvalid, Field: "command_digest", Rule: "required with an idempotency key, at most 128 bytes"}
		}
	}
	for i := range d.Events {
		e := &d.Events[i]
		field := "events/" + strconv.Itoa(i)
		if err := e.Validate(); err != nil {
			return prefixField(field, err)
		}
		if e.Context() != d.Aggregate.Context || e.AggregateID != d.Aggregate.ID {
			return &events.Error{Kind: events.KindInvalid, Field: field,
				Rule: fmt.Sprintf("event %s/%s does not belong to aggregate %s", e.Context(), e.AggregateID, d.Aggregate)}
		}
		if s.checker != nil {
			if err := s.checker.CheckEvent(e.Type, e.SchemaVersion, e.Data); err != nil {
				return prefixField(field, err)
			}
		}
	}
	return nil
}

func prefixField(prefix string, err error) error {
	var e *events.Error
	if errors.As(err, &e) {
		c := *e
		c.Field = prefix + "/" + strings.TrimPrefix(e.Field, "/")
		return &c
	}
	return &events.Error{Kind: events.KindInvalid, Field: prefix, Rule: err.Error()}
}

func withOp(op string, err error) error {
	var e *events.Error
	if errors.As(err, &e) && e.Op == "" {
		c := *e
		c.Op = op
		return &c
	}
	return err
}

// seal copies the decision's events, seals them after lastHash and encodes
// them.
func seal(d events.Decision, lastHash string) ([]events.Event, []esdb.EventData, error) {
	evs := make([]events.Event, len(d.Events))
	copy(evs, d.Events)
	events.Seal(evs, d.ExpectedVersion, lastHash)
	datas := make([]esdb.EventData, len(evs))
	for i := range evs {
		var err error
		if datas[i], err = ToEventData(&evs[i], 0); err != nil {
			return nil, nil, prefixField("events/"+strconv.Itoa(i), err)
		}
	}
	return evs, datas, nil
}

func ids(evs []events.Event) []string {
	out := make([]string, len(evs))
	for i := range evs {
		out[i] = evs[i].ID
	}
	return out
}

func conflict(ref events.AggregateRef, expected uint64, actual string) error {
	return &events.Error{Op: "eventstoredb.Append", Kind: events.KindConflict, Field: "expected_version",
		Rule: fmt.Sprintf("aggregate %s is at version %s, the decision expected %d", ref, actual, expected)}
}

// head checks that the aggregate is at version expected and returns the
// hash its next event links to. The server checks the revision again on
// append; this read is what lets the new events be sealed onto the chain.
func (s *Store) head(ctx context.Context, ref events.AggregateRef, expected uint64) (string, error) {
	const op = "eventstoredb.Append"
	var last *events.Event
	for r, err := range s.b.readStream(ctx, StreamName(ref), true, 0, 1) {
		if err != nil {
			return "", mapCtx(ctx, op, err)
		}
		e, ok, err := FromRecorded(r)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", foreignErr(op, StreamName(ref), r)
		}
		last = &e
	}
	switch {
	case last == nil && expected == 0:
		return events.GenesisHash, nil
	case last == nil:
		return "", conflict(ref, expected, "0")
	case last.AggregateVersion != expected:
		return "", conflict(ref, expected, strconv.FormatUint(last.AggregateVersion, 10))
	}
	return last.Hash, nil
}

func foreignErr(op, stream string, r *esdb.RecordedEvent) error {
	return &events.Error{Op: op, Kind: events.KindIntegrity, Field: "stream " + stream,
		Rule: fmt.Sprintf("holds a foreign event at revision %d (type %q, metadata without the ledger's CloudEvents attributes)", r.EventNumber, r.EventType)}
}

// write appends encoded events at expected and reports where they landed.
// A WrongExpectedVersion answer is a conflict unless the stream already
// holds exactly these event ids at these versions: then an earlier attempt
// of the same decision (or a recovery of its idempotency record) stored
// them, and that is success. This is the idempotency by event id that makes
// a retry after KindUnavailable safe.
func (s *Store) write(ctx context.Context, ref events.AggregateRef, expected uint64, evIDs []string, datas []esdb.EventData) (events.Appended, error) {
	const op = "eventstoredb.Append"
	err := s.b.appendEvents(ctx, StreamName(ref), ExpectedRevision(expected), datas)
	if err != nil {
		mapped := mapCtx(ctx, op, err)
		if events.KindOf(mapped) != events.KindConflict {
			return events.Appended{}, unknownOutcome(mapped)
		}
		a, found, ferr := s.findStored(ctx, ref, expected, evIDs)
		if ferr != nil {
			return events.Appended{}, unknownOutcome(ferr)
		}
		if found {
			return a, nil
		}
		return events.Appended{}, conflict(ref, expected, "another")
	}
	a, found, err := s.findStored(ctx, ref, expected, evIDs)
	if err != nil {
		return events.Appended{}, &events.Error{Op: op, Kind: events.KindUnavailable,
			Rule: "stored, but its positions could not be read; retry with the same idempotency key or event ids", Err: err}
	}
	if !found {
		return events.Appended{}, &events.Error{Op: op, Kind: events.KindIntegrity, Field: "stream " + StreamName(ref),
			Rule: fmt.Sprintf("the server acknowledged the append at version %d but the stream does not hold its events", expected)}
	}
	return a, nil
}

// unknownOutcome turns any failure of an append that was sent into
// KindUnavailable unless it is a refusal the server stated, because the
// Store contract promises that every other error stored nothing.
func unknownOutcome(err error) error {
	switch events.KindOf(err) {
	case events.KindConflict, events.KindInvalid, events.KindNotFound, events.KindUnavailable, events.KindDuplicate:
		return err
	}
	var e *events.Error
	if errors.As(err, &e) {
		c := *e
		c.Kind = events.KindUnavailable
		c.Rule = "outcome unknown: " + c.Rule
		return &c
	}
	return &events.Error{Op: "eventstoredb.Append", Kind: events.KindUnavailable, Rule: "outcome unknown", Err: err}
}

// findStored reports whether the aggregate's stream holds exactly evIDs as
// the versions after expected, and where.
func (s *Store) findStored(ctx context.Context, ref events.AggregateRef, expected uint64, evIDs []string) (events.Appended, bool, error) {
	const op = "eventstoredb.Append"
	i := 0
	a := events.Appended{Version: expected + uint64(len(evIDs))}
	for r, err := range s.b.readStream(ctx, StreamName(ref), false, expected, uint64(len(evIDs))) {
		if err != nil {
			return a, false, mapCtx(ctx, op, err)
		}
		want, perr := uuid.Parse(evIDs[i])
		if perr != nil || r.EventID != want || r.EventNumber != expected+uint64(i) {
			return a, false, nil
		}
		p, err := PositionOf(r)
		if err != nil {
			return a, false, &events.Error{Op: op, Kind: events.KindOther, Rule: err.Error()}
		}
		if i == 0 {
			a.FirstPosition = p
		}
		a.LastPosition = p
		i++
		if i == len(evIDs) {
			break
		}
	}
	return a, i == len(evIDs), nil
}

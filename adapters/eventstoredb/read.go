package eventstoredb

import (
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/marketledger/ledger/events"
)

// Load implements events.Store: the aggregate's stream from the version
// after afterVersion, each event checked against its own hash and the chain
// checked from the event at afterVersion on.
func (s *Store) Load(ctx context.Context, ref events.AggregateRef, afterVersion uint64) ([]events.Event, error) {
	const op = "eventstoredb.Load"
	if err := ctx.Err(); err != nil {
		return nil, mapCtx(ctx, op, err)
	}
	if s.isClosed() {
		return nil, closedErr(op)
	}
	if err := events.ValidateContext(ref.Context); err != nil {
		return nil, withOp(op, err)
	}
	if err := events.ValidateAggregateID(ref.ID); err != nil {
		return nil, withOp(op, err)
	}
	from := afterVersion
	if from > 0 {
		from-- // the event at afterVersion anchors the chain
	}
	prevHash, anchored := events.GenesisHash, afterVersion == 0
	var out []events.Event
	for r, err := range s.b.readStream(ctx, StreamName(ref), false, from, unbounded) {
		if err != nil {
			return nil, mapCtx(ctx, op, err)
		}
		e, ok, err := FromRecorded(r)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, foreignErr(op, StreamName(ref), r)
		}
		if !anchored {
			anchored = true
			if e.AggregateVersion != afterVersion {
				return nil, &events.Error{Op: op, Kind: events.KindIntegrity, Field: "stream " + StreamName(ref),
					Rule: fmt.Sprintf("revision %d holds version %d", r.EventNumber, e.AggregateVersion)}
			}
			prevHash = e.Hash
			continue
		}
		out = append(out, e)
	}
	if err := ctx.Err(); err != nil {
		return nil, mapCtx(ctx, op, err)
	}
	if err := events.VerifyChain(out, afterVersion, prevHash); err != nil {
		return nil, err
	}
	return out, nil
}

// headPosition returns the $all position of the newest record of any
// stream, or 0 if the database is empty.
func (s *Store) headPosition(ctx context.Context, op string) (uint64, error) {
	for r, err := range s.b.readAll(ctx, true, esdb.End{}, 1) {
		if err != nil {
			return 0, mapCtx(ctx, op, err)
		}
		return r.Position.Prepare, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, mapCtx(ctx, op, err)
	}
	return 0, nil
}

// startAt returns where a forward read of $all must start to include every
// event at or after position p (p > 0). Ledger positions are event
// positions, which the server accepts as they are. A position between two
// records (say, a position plus one) is one the server refuses; the start
// is then found by reading $all backwards from the end, which costs a read
// of the tail after p, the same as the read that follows. found is false
// when no record lies at or after p.
func (s *Store) startAt(ctx context.Context, op string, p uint64) (start esdb.AllPosition, found bool, err error) {
	if p <= 1 {
		return esdb.Start{}, true, nil
	}
	var probeErr error
	for _, err := range s.b.readAll(ctx, false, allPosition(p), 1) {
		probeErr = err
	}
	if probeErr == nil {
		return allPosition(p), true, nil
	}
	if k := events.KindOf(mapCtx(ctx, op, probeErr)); k == events.KindUnavailable || k == events.KindInvalid {
		return nil, false, mapCtx(ctx, op, probeErr)
	}
	var first uint64
	for r, err := range s.b.readAll(ctx, true, esdb.End{}, unbounded) {
		if err != nil {
			return nil, false, mapCtx(ctx, op, err)
		}
		if r.Position.Prepare < p {
			break
		}
		first = r.Position.Prepare
	}
	if first == 0 {
		return nil, false, nil
	}
	return allPosition(first), true, nil
}

// startAtTime returns where a forward read must start to include every
// record created at or after t: after the newest record created before t,
// found by reading $all backwards from the end.
func (s *Store) startAtTime(ctx context.Context, op string, t time.Time) (start esdb.AllPosition, found bool, err error) {
	var first uint64
	for r, err := range s.b.readAll(ctx, true, esdb.End{}, unbounded) {
		if err != nil {
			return nil, false, mapCtx(ctx, op, err)
		}
		if r.CreatedDate.Before(t) {
			break
		}
		first = r.Position.Prepare
	}
	if first == 0 {
		return nil, false, nil
	}
	return allPosition(first), true, nil
}

// Read implements events.Store over $all, skipping every event that is not
// the ledger's (system events, other applications' streams, the adapter's
// idempotency records).
func (s *Store) Read(ctx context.Context, q events.Query) iter.Seq2[events.Event, error] {
	const op = "eventstoredb.Read"
	return func(yield func(events.Event, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(events.Event{}, mapCtx(ctx, op, err))
			return
		}
		if s.isClosed() {
			yield(events.Event{}, closedErr(op))
			return
		}
		to := q.To
		if to == 0 {
			head, err := s.headPosition(ctx, op)
			if err != nil {
				yield(events.Event{}, err)
				return
			}
			if head == 0 {
				return
			}
			to = head
		}
		if q.From > to {
			return
		}
		var start esdb.AllPosition
		var found bool
		var err error
		if !q.FromTime.IsZero() {
			start, found, err = s.startAtTime(ctx, op, q.FromTime)
		} else {
			start, found, err = s.startAt(ctx, op, q.From)
		}
		if err != nil {
			yield(events.Event{}, err)
			return
		}
		if !found {
			return
		}
		for r, err := range s.b.readAll(ctx, false, start, unbounded) {
			if err != nil {
				yield(events.Event{}, mapCtx(ctx, op, err))
				return
			}
			if r.Position.Prepare > to {
				return
			}
			if r.Position.Prepare < q.From {
				continue
			}
			e, ok, err := FromRecorded(r)
			if err != nil {
				yield(events.Event{}, err)
				return
			}
			if !ok || !matchAny(q.Subjects, e.Subject()) {
				continue
			}
			if !yield(e, nil) {
				return
			}
		}
		if err := ctx.Err(); err != nil {
			yield(events.Event{}, mapCtx(ctx, op, err))
		}
	}
}

// Subscribe implements events.Store: it reads $all from q.From (or
// q.FromTime) to the end, then follows a catch-up subscription to $all,
// filtered on the server to aggregate streams, that starts after the last
// record the read saw, so that nothing is delivered twice or skipped
// between the two. The server filters by stream, not by event name, so
// q.Subjects (NATS patterns with '*' and '>') is applied here to each
// event's subject.
func (s *Store) Subscribe(ctx context.Context, q events.Query, fn func(events.Event) error) error {
	const op = "eventstoredb.Subscribe"
	if err := q.CheckSubscription(); err != nil {
		return withOp(op, err)
	}
	if s.isClosed() {
		return closedErr(op)
	}
	from := max(q.From, 1)
	head, err := s.headPosition(ctx, op)
	if err != nil {
		return err
	}
	var after esdb.AllPosition = esdb.Start{}
	last := uint64(0)
	deliver := func(r *esdb.RecordedEvent) error {
		p := r.Position.Prepare
		if p <= last && last != 0 {
			return nil
		}
		last = p
		if p < from {
			return nil
		}
		e, ok, err := FromRecorded(r)
		if err != nil || !ok || !matchAny(q.Subjects, e.Subject()) {
			return err
		}
		return fn(e)
	}
	if head != 0 {
		last = head // if the read below sees nothing, go live after the head
		if from <= head {
			var start esdb.AllPosition
			var found bool
			var err error
			if !q.FromTime.IsZero() {
				start, found, err = s.startAtTime(ctx, op, q.FromTime)
			} else {
				start, found, err = s.startAt(ctx, op, from)
			}
			if err != nil {
				return err
			}
			if found {
				last = 0
				for r, err := range s.b.readAll(ctx, false, start, unbounded) {
					if err != nil {
						return mapCtx(ctx, op, err)
					}
					if err := deliver(r); err != nil {
						return err
					}
				}
				if last == 0 {
					last = head
				}
			}
		}
		after = allPosition(last)
	}
	sub, err := s.b.subscribeAll(ctx, after, ledgerStreamRegex)
	if err != nil {
		return mapCtx(ctx, op, err)
	}
	defer sub.close()
	for {
		r, err := sub.next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return MapError(op, err)
		}
		if err := deliver(r); err != nil {
			return err
		}
	}
}

// PositionAt implements events.Store by reading $all backwards from the end
// to the newest ledger event created at or before t. Its cost grows with the
// number of records after t.
func (s *Store) PositionAt(ctx context.Context, t time.Time) (uint64, error) {
	const op = "eventstoredb.PositionAt"
	if err := ctx.Err(); err != nil {
		return 0, mapCtx(ctx, op, err)
	}
	if s.isClosed() {
		return 0, closedErr(op)
	}
	for r, err := range s.b.readAll(ctx, true, esdb.End{}, unbounded) {
		if err != nil {
			return 0, mapCtx(ctx, op, err)
		}
		if r.CreatedDate.After(t) {
			continue
		}
		if _, ok := ParseStreamName(r.StreamID); !ok || !IsLedgerMetadata(r.UserMetadata) {
			continue
		}
		p, err := PositionOf(r)
		if err != nil {
			return 0, &events.Error{Op: op, Kind: events.KindOther, Rule: err.Error()}
		}
		return p, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, mapCtx(ctx, op, err)
	}
	return 0, nil
}

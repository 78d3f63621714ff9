package eventstoredb

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/marketledger/ledger/events"
)

// Store is an events.Store on EventStoreDB. It keeps no state between calls
// but the client connection, so any number of Stores (in any number of
// processes) may share one database.
//
// What it cannot do as the JetStream store does: a fenced decision is
// refused (see Append), and positions are $all log positions, increasing but
// not dense.
type Store struct {
	b       backend
	checker events.TypeChecker
	once    sync.Once
	closed  chan struct{}
}

var (
	_ events.Store             = (*Store)(nil)
	_ events.IdempotencyLookup = (*Store)(nil)
)

// Option configures a Store.
type Option func(*Store)

// WithTypeChecker makes the store refuse events whose type, schema version
// or body the checker refuses, as events.WithTypeChecker does.
func WithTypeChecker(c events.TypeChecker) Option { return func(s *Store) { s.checker = c } }

// pingTimeout bounds the reachability check of Open.
const pingTimeout = 10 * time.Second

// Open connects to the EventStoreDB at a connection string such as
// "esdb://127.0.0.1:2113?tls=false" (credentials as
// "esdb://user:pass@host:2113"), and checks that the server answers and
// that the user may read $all, so that a wrong address or wrong credentials
// fail here with one clear error instead of on the first append.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	const op = "eventstoredb.Open"
	conf, err := esdb.ParseConnectionString(url)
	if err != nil {
		return nil, &events.Error{Op: op, Kind: events.KindInvalid, Field: "url", Rule: "not an EventStoreDB connection string (esdb://host:2113?tls=false)", Err: err}
	}
	// The client logs every failed call to stdout; the store returns them.
	conf.Logger = nil
	return OpenConfig(ctx, conf, opts...)
}

// OpenConfig is Open with a client configuration built by the caller.
func OpenConfig(ctx context.Context, conf *esdb.Configuration, opts ...Option) (*Store, error) {
	const op = "eventstoredb.Open"
	c, err := esdb.NewClient(conf)
	if err != nil {
		return nil, &events.Error{Op: op, Kind: events.KindInvalid, Field: "url", Rule: "invalid client configuration", Err: err}
	}
	s := newStore(clientBackend{c}, opts...)
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	for _, err := range s.b.readAll(pctx, true, esdb.End{}, 1) {
		if err != nil {
			c.Close()
			e := mapCtx(pctx, op, err).(*events.Error)
			if e.Kind == events.KindUnavailable {
				e.Rule = fmt.Sprintf("no EventStoreDB server was reachable at %s within %s", conf.Address, pingTimeout)
			}
			return nil, e
		}
	}
	return s, nil
}

func newStore(b backend, opts ...Option) *Store {
	s := &Store{b: b, closed: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Close closes the connection. Calls in flight fail with KindUnavailable.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		err = s.b.close()
	})
	return err
}

func (s *Store) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

func closedErr(op string) error {
	return &events.Error{Op: op, Kind: events.KindUnavailable, Rule: "store closed"}
}

// ruleFence explains why a fenced decision is refused.
const ruleFence = "fencing needs atomic multi-stream append (the decision's stream and the policy streams " +
	"checked in one write), which EventStoreDB does not have before KurrentDB 25.1; " +
	"see docs/eventstoredb.md for how the freeze guarantee is kept"

// mirrorReserved is the aggregate the mirror's checkpoint stream would be
// ("ledger-mirror-checkpoint"); Append refuses it so that the two never mix.
var mirrorReserved = events.AggregateRef{Context: "ledger", ID: "mirror-checkpoint"}

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

// Subscribe implements events.Store: it reads $all from position from to
// the end, then follows a catch-up subscription to $all, filtered on the
// server to aggregate streams, that starts after the last record the read
// saw, so that nothing is delivered twice or skipped between the two.
func (s *Store) Subscribe(ctx context.Context, from uint64, fn func(events.Event) error) error {
	const op = "eventstoredb.Subscribe"
	if s.isClosed() {
		return closedErr(op)
	}
	if from == 0 {
		from = 1
	}
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
		if err != nil || !ok {
			return err
		}
		return fn(e)
	}
	if head != 0 {
		last = head // if the read below sees nothing, go live after the head
		if from <= head {
			start, found, err := s.startAt(ctx, op, from)
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

package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/models"
)

// bounds are the log's ends, which every as-of is checked against.
type bounds struct {
	head          uint64
	first         uint64
	firstRecorded time.Time
	lastRecorded  time.Time
}

func (q *Querier) bounds(ctx context.Context) (bounds, error) {
	const op = "projections.AsOf"
	var b bounds
	var err error
	if b.head, err = q.store.LastPosition(ctx); err != nil {
		return b, err
	}
	q.mu.Lock()
	b.first, b.firstRecorded = q.first, q.firstRecorded
	q.mu.Unlock()
	if b.first == 0 {
		for e, err := range q.store.Read(ctx, events.Query{From: 1, To: b.head}) {
			if err != nil {
				return b, err
			}
			b.first, b.firstRecorded = e.Position, e.RecordedAt
			break
		}
		q.mu.Lock()
		q.first, q.firstRecorded = b.first, b.firstRecorded // the log's start never changes
		q.mu.Unlock()
	}
	if b.first == 0 {
		return b, &events.Error{Op: op, Kind: events.KindNotFound, Rule: "the log holds no event yet"}
	}
	b.lastRecorded, err = q.recordedAt(ctx, b.head)
	return b, err
}

// cachedFirst returns the log's first event's position and recorded time
// once a query has learnt them (the log's start never changes).
func (q *Querier) cachedFirst() (uint64, time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.first, q.firstRecorded, q.first != 0
}

func (q *Querier) recordedAt(ctx context.Context, pos uint64) (time.Time, error) {
	st, err := q.store.JetStream().Stream(ctx, events.StreamName)
	if err != nil {
		return time.Time{}, &events.Error{Op: "projections.AsOf", Kind: events.KindUnavailable, Err: err}
	}
	m, err := st.GetMsg(ctx, pos)
	if err != nil {
		return time.Time{}, &events.Error{Op: "projections.AsOf", Kind: events.KindUnavailable, Field: "position " + strconv.FormatUint(pos, 10), Err: err}
	}
	return m.Time.UTC(), nil
}

func outOfRange(at AsOf, rule string) error {
	return &events.Error{Op: "projections.AsOf", Kind: events.KindInvalid, Field: "as_of", Rule: at.String() + " is " + rule}
}

// prefix answers on the position and recorded clocks: the fold of a prefix.
func (q *Querier) prefix(ctx context.Context, at AsOf, b bounds, ms []models.Model) (*State, error) {
	pos, err := q.prefixPosition(ctx, at, b)
	if err != nil {
		return nil, err
	}
	return q.prefixFold(ctx, pos, ms)
}

// prefixPosition checks a position or recorded instant against the log's
// bounds and returns the position it stands for.
func (q *Querier) prefixPosition(ctx context.Context, at AsOf, b bounds) (uint64, error) {
	var pos uint64
	switch at.Clock {
	case ClockPosition:
		if at.Position < b.first {
			return 0, outOfRange(at, fmt.Sprintf("before the first event (position %d)", b.first))
		}
		if at.Position > b.head {
			return 0, outOfRange(at, fmt.Sprintf("after the last position (%d)", b.head))
		}
		pos = at.Position
	case ClockRecorded:
		if at.Time.Before(b.firstRecorded) {
			return 0, outOfRange(at, "before the first event (recorded "+b.firstRecorded.Format(time.RFC3339Nano)+")")
		}
		switch {
		case at.Time.After(b.lastRecorded) && at.Time.After(time.Now()):
			return 0, outOfRange(at, "in the future (the last event was recorded "+b.lastRecorded.Format(time.RFC3339Nano)+")")
		case at.Time.After(b.lastRecorded):
			// A past instant after the last event: a quiet ledger's state
			// "now" is its head, and stays so, since the server records
			// every later event after this instant.
			pos = b.head
		default:
			var err error
			if pos, err = q.store.PositionAt(ctx, at.Time); err != nil {
				return 0, err
			}
		}
	default:
		return 0, &events.Error{Op: "projections.AsOf", Kind: events.KindInvalid, Field: "clock", Rule: fmt.Sprintf("unknown clock %q", at.Clock)}
	}
	return pos, nil
}

// prefixFold is the state after every event up to pos.
func (q *Querier) prefixFold(ctx context.Context, pos uint64, ms []models.Model) (*State, error) {
	s := &State{Models: ms, Snapshots: map[string]uint64{}, Point: Point{Position: pos}}
	from := make([]uint64, len(ms))
	picks := make([]*SnapshotEntry, len(ms))
	start := pos
	for i, m := range ms {
		es, err := q.entries(ctx, m)
		if err != nil {
			return nil, err
		}
		k := lastWhere(es, func(e SnapshotEntry) bool { return e.Position <= pos })
		if k >= 0 {
			picks[i] = &es[k]
			from[i] = es[k].Position
		}
		s.Snapshots[m.Name()] = from[i]
		start = min(start, from[i])
	}
	ready := q.restoreAsync(ctx, ms, picks)
	if start < pos {
		n, err := foldCount(ctx, q.store, events.Query{From: start + 1, To: pos}, ms, from, nil, ready)
		s.Replayed = n
		if err != nil {
			return nil, err
		}
	} else if err := <-ready; err != nil {
		return nil, err
	}
	return s, nil
}

// business answers on the business clock (see ClockBusiness). Each model
// starts from its latest snapshot whose events all occurred by T; the tail
// read skips indexed segments with no event that occurred by T, and always
// reads the unindexed end of the log, whose clocks nothing summarises.
func (q *Querier) business(ctx context.Context, at AsOf, b bounds, ms []models.Model) (*State, error) {
	T := at.Time
	s := &State{Models: ms, Snapshots: map[string]uint64{}}
	from := make([]uint64, len(ms))
	picks := make([]*SnapshotEntry, len(ms))
	start, needTo, indexedTo := b.head, uint64(0), b.head
	var lastIncluded uint64
	var maxOcc time.Time
	for i, m := range ms {
		es, err := q.entries(ctx, m)
		if err != nil {
			return nil, err
		}
		k := lastWhere(es, func(e SnapshotEntry) bool { return !e.MaxOccurredAt.After(T) })
		if k >= 0 {
			picks[i] = &es[k]
			from[i] = es[k].Position
			lastIncluded = max(lastIncluded, es[k].LastBusiness)
		}
		end := from[i]
		for _, e := range es[k+1:] {
			if !e.SegMinOccurredAt.IsZero() && !e.SegMinOccurredAt.After(T) {
				end = e.Position
			}
		}
		last := uint64(0)
		if len(es) > 0 {
			last = es[len(es)-1].Position
			if es[len(es)-1].MaxOccurredAt.After(maxOcc) {
				maxOcc = es[len(es)-1].MaxOccurredAt
			}
		}
		s.Snapshots[m.Name()] = from[i]
		start, needTo, indexedTo = min(start, from[i]), max(needTo, end), min(indexedTo, last)
	}
	ready := q.restoreAsync(ctx, ms, picks)
	ranges := [][2]uint64{{start + 1, needTo}, {indexedTo + 1, b.head}}
	if needTo >= indexedTo {
		ranges = [][2]uint64{{start + 1, b.head}}
	}
	keep := func(e *events.Event) bool {
		if models.IsBusiness(e) && e.OccurredAt.After(maxOcc) {
			maxOcc = e.OccurredAt
		}
		if !models.IsBusiness(e) || e.OccurredAt.After(T) {
			return false
		}
		lastIncluded = max(lastIncluded, e.Position)
		return true
	}
	for _, r := range ranges {
		if r[0] > r[1] {
			continue
		}
		n, err := foldCount(ctx, q.store, events.Query{From: r[0], To: r[1]}, ms, from, keep, ready)
		ready = nil // restored before the first range applied anything
		s.Replayed += n
		if err != nil {
			return nil, err
		}
	}
	if ready != nil { // no range to read: the snapshots are the answer
		if err := <-ready; err != nil {
			return nil, err
		}
	}
	// An instant after the last business event is allowed up to now (a
	// quiet ledger's state "now"); a future one is refused: the facts that
	// will have occurred by then are not known yet.
	if T.After(maxOcc) && T.After(time.Now()) {
		return nil, outOfRange(at, "in the future (the last event occurred at "+maxOcc.Format(time.RFC3339Nano)+")")
	}
	if lastIncluded == 0 {
		return nil, outOfRange(at, "before the first event on the business clock")
	}
	s.Point.Position = lastIncluded
	return s, nil
}

// foldCount is Fold that also counts the events read. With ready, the
// models apply nothing before it yields, and the tail is read ahead
// meanwhile.
func foldCount(ctx context.Context, store events.Store, q events.Query, ms []models.Model, from []uint64, keep Filter, ready <-chan error) (int, error) {
	var n atomic.Int64 // the reader may still be counting after an early return
	counting := func(e *events.Event) bool {
		n.Add(1)
		return keep == nil || keep(e)
	}
	_, _, err := fold(ctx, store, q, ms, from, counting, ready, readAhead)
	return int(n.Load()), err
}

// readAhead is how many chunks of 256 events an as-of query reads ahead
// while its models are being restored: a tail of up to about 16k events is
// read in parallel with the restore.
const readAhead = 64

// restoreAsync runs restoreAll on its own goroutine; the channel yields its
// result once.
func (q *Querier) restoreAsync(ctx context.Context, ms []models.Model, picks []*SnapshotEntry) <-chan error {
	ready := make(chan error, 1)
	go func() { ready <- q.restoreAll(ctx, ms, picks) }()
	return ready
}

func lastWhere(es []SnapshotEntry, ok func(SnapshotEntry) bool) int {
	k := -1
	for i, e := range es {
		if ok(e) {
			k = i
		}
	}
	return k
}

// restoreAll restores each model from its picked snapshot (nil: none), in
// parallel: decoding the JSON of large states is most of an as-of query.
func (q *Querier) restoreAll(ctx context.Context, ms []models.Model, picks []*SnapshotEntry) error {
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		if picks[i] == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = q.restoreFrom(ctx, m, *picks[i])
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (q *Querier) restoreFrom(ctx context.Context, m models.Model, e SnapshotEntry) error {
	body, err := q.st.getBody(ctx, e.Object, e.SHA256)
	if err != nil {
		return err
	}
	return m.Restore(body)
}

// entries returns the snapshot index of m's version if that version is the
// one serving queries (another build's snapshots are not m's state).
func (q *Querier) entries(ctx context.Context, m models.Model) ([]SnapshotEntry, error) {
	if q.st == nil {
		return nil, nil
	}
	ver, err := q.st.activeVersion(ctx, m.Name())
	if err != nil || ver != models.ModelVersion(m) {
		return nil, err
	}
	es, _, err := q.st.index(ctx, m.Name(), ver)
	return es, err
}

package testkit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
)

func (s *suite) testLoad(t *testing.T) {
	ctx, st := s.ctx(t), s.newStore(t)
	ref := s.ref("order")
	var want []events.Event
	var positions []uint64 // the expected position of each event; 0 where only "between" is known
	for _, names := range [][]string{{"placed"}, {"line_added", "line_added"}, {"confirmed"}, {"shipped", "delivered"}} {
		d := decision(ref, uint64(len(want)), names...)
		d.Events[0].CorrelationID, d.Events[0].CausationID = "corr-"+ref.ID, "cmd-"+ref.ID
		a := s.mustAppend(ctx, t, st, d)
		want = append(want, d.Events...)
		for i := range d.Events {
			switch {
			case !s.opts.SparsePositions:
				positions = append(positions, a.FirstPosition+uint64(i))
			case i == 0:
				positions = append(positions, a.FirstPosition)
			case i == len(d.Events)-1:
				positions = append(positions, a.LastPosition)
			default:
				positions = append(positions, 0)
			}
		}
	}
	// A fresh client reads what was stored, not its own cache.
	got := mustLoad(ctx, t, s.newStore(t), ref)
	if len(got) != len(want) {
		t.Fatalf("loaded %d events, want %d", len(got), len(want))
	}
	for i := range got {
		checkSameEvent(t, got[i], want[i])
		if i > 0 && got[i].Position <= got[i-1].Position {
			t.Errorf("event %d at position %d, not after event %d at %d", i, got[i].Position, i-1, got[i-1].Position)
		}
		if got[i].AggregateVersion != uint64(i+1) || (positions[i] != 0 && got[i].Position != positions[i]) {
			t.Errorf("event %d: version %d at position %d, want version %d at %d",
				i, got[i].AggregateVersion, got[i].Position, i+1, positions[i])
		}
		if got[i].RecordedAt.IsZero() {
			t.Errorf("event %d has no recorded time", i)
		}
	}
	if err := events.VerifyChain(got, 0, events.GenesisHash); err != nil {
		t.Errorf("loaded chain does not verify: %v", err)
	}
	tail, err := st.Load(ctx, ref, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := events.VerifyChain(tail, 3, got[2].Hash); err != nil || len(tail) != len(got)-3 {
		t.Errorf("Load after version 3 = %d events (%v), want the %d after version 3 chained to it", len(tail), err, len(got)-3)
	}
	if rest, err := st.Load(ctx, ref, uint64(len(got))); err != nil || len(rest) != 0 {
		t.Errorf("Load after the last version = %d events, %v; want none", len(rest), err)
	}
	if none, err := st.Load(ctx, s.ref("order"), 0); err != nil || len(none) != 0 {
		t.Errorf("Load of an unknown aggregate = %d events, %v; want none and no error", len(none), err)
	}
}

// checkSameEvent compares the producer-set attributes of a stored event with
// what was appended.
func checkSameEvent(t *testing.T, got, want events.Event) {
	t.Helper()
	if got.ID != want.ID || got.Type != want.Type || got.SchemaVersion != want.SchemaVersion ||
		got.Source != want.Source || got.AggregateID != want.AggregateID || !got.OccurredAt.Equal(want.OccurredAt) ||
		got.CorrelationID != want.CorrelationID || got.CausationID != want.CausationID ||
		got.PolicyPosition != want.PolicyPosition || string(got.Data) != string(want.Data) {
		t.Errorf("stored event differs from the appended one:\n got  %+v\n want %+v", got, want)
	}
}

func (s *suite) testRead(t *testing.T) {
	ctx, st := s.ctx(t), s.newStore(t)
	order, pay := s.ref("order"), s.ref("payment")
	var all []events.Event // what this subtest appended, in log order
	for i := range 4 {
		for _, ref := range []events.AggregateRef{order, pay} {
			d := decision(ref, uint64(i), fmt.Sprintf("step_%d", i))
			a := s.mustAppend(ctx, t, st, d)
			d.Events[0].Position = a.FirstPosition
			all = append(all, d.Events[0])
		}
	}
	mine := idSet(all)
	check := func(name string, q events.Query, want []events.Event) {
		t.Helper()
		got := readAll(ctx, t, st, q)
		checkIncreasing(t, name, got)
		for _, e := range got {
			if q.From > 0 && e.Position < q.From || q.To > 0 && e.Position > q.To {
				t.Errorf("%s: event at position %d is outside %d..%d", name, e.Position, q.From, q.To)
			}
		}
		if ok, diff := equalIDs(ids(only(got, mine)), ids(want)); !ok {
			t.Errorf("%s: %s", name, diff)
		}
	}
	first, last := all[0].Position, all[len(all)-1].Position
	check("from the first position", events.Query{From: first}, all)
	check("from a middle position", events.Query{From: all[3].Position}, all[3:])
	check("from and to", events.Query{From: all[2].Position, To: all[5].Position}, all[2:6])
	check("to only", events.Query{To: all[1].Position}, all[:2])
	check("subject filter", events.Query{From: first, Subjects: []string{pay.Subject()}}, everyOther(all, 1))
	check("two subject filters", events.Query{From: first, To: last, Subjects: []string{order.Subject(), pay.Subject()}}, all)
	check("context wildcard", events.Query{From: first, Subjects: []string{events.SubjectPrefix + "order.>"}}, everyOther(all, 0))
	stored := readAll(ctx, t, st, events.Query{From: first, To: last})
	if len(stored) != len(all) {
		t.Fatalf("read %d events between %d and %d, want %d", len(stored), first, last, len(all))
	}
	from := stored[4].RecordedAt
	check("from a time", events.Query{FromTime: from}, all[4:])
	check("from a time, filtered", events.Query{FromTime: from, Subjects: []string{order.Subject()}}, everyOther(all[4:], 0))
	check("from a time before the log", events.Query{FromTime: time.Unix(0, 0), To: last, Subjects: []string{order.Subject()}}, everyOther(all, 0))
	if got := readAll(ctx, t, st, events.Query{From: last + 1_000_000}); len(got) != 0 {
		t.Errorf("read past the head returned %d events", len(got))
	}
	// A consumer may stop early without error.
	for range st.Read(ctx, events.Query{From: first}) {
		break
	}
}

// everyOther returns evs[start], evs[start+2], ...
func everyOther(evs []events.Event, start int) []events.Event {
	var out []events.Event
	for i := start; i < len(evs); i += 2 {
		out = append(out, evs[i])
	}
	return out
}

func (s *suite) testPositionAt(t *testing.T) {
	ctx, st := s.ctx(t), s.newStore(t)
	if p, err := st.PositionAt(ctx, time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil || p != 0 {
		t.Errorf("PositionAt before the first event = %d, %v; want 0", p, err)
	}
	ref := s.ref("order")
	s.mustAppend(ctx, t, st, decision(ref, 0, "placed"))
	s.mustAppend(ctx, t, st, decision(ref, 1, "confirmed"))
	evs := mustLoad(ctx, t, st, ref)
	e1, e2 := evs[0], evs[1]
	if !e2.RecordedAt.After(e1.RecordedAt) {
		t.Fatalf("second event recorded at %s, not after the first at %s", e2.RecordedAt, e1.RecordedAt)
	}
	at := func(name string, tm time.Time, want uint64) {
		t.Helper()
		if got, err := st.PositionAt(ctx, tm); err != nil || got != want {
			t.Errorf("PositionAt(%s) = %d, %v; want %d", name, got, err, want)
		}
	}
	at("first event's time", e1.RecordedAt, e1.Position)
	at("just before the second event", e2.RecordedAt.Add(-time.Nanosecond), e1.Position)
	at("between the events", e1.RecordedAt.Add(e2.RecordedAt.Sub(e1.RecordedAt)/2), e1.Position)
	at("last event's time", e2.RecordedAt, e2.Position)
	at("after the last event", time.Now().Add(time.Hour), e2.Position)
	if got, err := st.PositionAt(ctx, e1.RecordedAt.Add(-time.Nanosecond)); err != nil || got >= e1.Position {
		t.Errorf("PositionAt(just before the first event) = %d, %v; want below %d", got, err, e1.Position)
	}
}

// testPositionAtEventsOnly checks that PositionAt names the position of an
// event even when the store keeps records of its own (an idempotency
// record, say) next to the events: a projection that compares its
// checkpoint, the position of the last event it saw, with PositionAt(now)
// must find itself caught up.
func (s *suite) testPositionAtEventsOnly(t *testing.T) {
	ctx, st := s.ctx(t), s.newStore(t)
	ref := s.ref("order")
	a := s.mustAppend(ctx, t, st, keyed(decision(ref, 0, "placed", "confirmed")))
	evs := mustLoad(ctx, t, st, ref)
	last := evs[len(evs)-1]
	for _, at := range []struct {
		name string
		tm   time.Time
	}{{"the last event's time", last.RecordedAt}, {"an hour later", time.Now().Add(time.Hour)}} {
		if got, err := st.PositionAt(ctx, at.tm); err != nil || got != a.LastPosition {
			t.Errorf("PositionAt(%s) after a keyed decision = %d, %v; want its last event's position %d", at.name, got, err, a.LastPosition)
		}
	}
}

// testEndedContext checks that a read cut short by its context says so: an
// empty answer without an error would read as "no such aggregate" or "the
// log ends here".
func (s *suite) testEndedContext(t *testing.T) {
	ctx, st := s.ctx(t), s.newStore(t)
	ref := s.ref("order")
	s.mustAppend(ctx, t, st, decision(ref, 0, "placed"))
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if evs, err := st.Load(ended, ref, 0); err == nil {
		t.Errorf("Load with an ended context = %d events and no error", len(evs))
	}
	n, failed := 0, false
	for _, err := range st.Read(ended, events.Query{}) {
		if err != nil {
			failed = true
			break
		}
		n++
	}
	if !failed {
		t.Errorf("Read with an ended context yielded %d events and no error", n)
	}
	if _, err := st.PositionAt(ended, time.Now()); err == nil {
		t.Errorf("PositionAt with an ended context: no error")
	}
}

// Sizes of the subscription test.
const (
	subscribeBefore  = 10 // decisions stored before subscribing
	subscribeWriters = 4  // writers appending while the subscriber catches up
	subscribeEach    = 12 // decisions per writer
	// subscribeDrain bounds the wait for the last event once it is stored.
	subscribeDrain = 30 * time.Second
)

// errSeenAll ends a subscription that has received every expected event.
var errSeenAll = errors.New("testkit: every expected event was delivered")

func (s *suite) testSubscribe(t *testing.T) {
	ctx, st := s.ctx(t), s.newStore(t)
	ref := s.ref("order")
	var want []events.Event
	var from uint64
	for v := range uint64(subscribeBefore) {
		d := decision(ref, v, "step")
		a := s.mustAppend(ctx, t, st, d)
		if from == 0 {
			from = a.FirstPosition
		}
		want = append(want, d.Events...)
	}
	expect := newExpectation(want)
	var got []events.Event
	subErr := make(chan error, 1)
	sub := s.newStore(t)
	subCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		subErr <- sub.Subscribe(subCtx, events.Query{From: from}, func(e events.Event) error {
			got = append(got, e)
			if expect.seen(e.ID) {
				return errSeenAll
			}
			return nil
		})
	}()
	var wg sync.WaitGroup
	for range subscribeWriters {
		wg.Go(func() { s.subscribeWriter(ctx, t, st, expect) })
	}
	wg.Wait()
	// A last event, appended after every other was acknowledged, ends the
	// subscription: delivered in order, it comes after all of them.
	final := decision(ref, subscribeBefore, "closed")
	expect.add(final.Events)
	expect.close()
	s.mustAppend(ctx, t, st, final)
	select {
	case err := <-subErr:
		if !errors.Is(err, errSeenAll) {
			t.Fatalf("Subscribe ended with %v before delivering every event (%d missing)", err, expect.missing())
		}
	case <-time.After(subscribeDrain):
		stop()
		<-subErr
		t.Fatalf("Subscribe delivered the last event but not every earlier one within %s: %d missing", subscribeDrain, expect.missing())
	}
	checkIncreasing(t, "subscription", got)
	if got[0].Position != from {
		t.Errorf("subscription from %d started at %d", from, got[0].Position)
	}
	read := readAll(ctx, t, st, events.Query{From: from, To: got[len(got)-1].Position})
	if ok, diff := equalIDs(ids(got), ids(read)); !ok {
		t.Errorf("subscription differs from a Read of the same range: %s", diff)
	}
}

// testSubscribeFiltered: a subscription with subjects gets exactly the
// events that match them, in order, through catch-up and then live, with
// no gap and no duplicate; events of the same aggregates or contexts that
// do not match are never delivered. A subscription with an end is refused.
func (s *suite) testSubscribeFiltered(t *testing.T) {
	ctx, st := s.ctx(t), s.newStore(t)
	if err := st.Subscribe(ctx, events.Query{To: 5}, func(events.Event) error { return nil }); events.KindOf(err) != events.KindInvalid {
		t.Errorf("Subscribe with to 5 = %v; want a KindInvalid error", err)
	} else if !strings.Contains(err.Error(), "to") {
		t.Errorf("Subscribe with to 5 = %v; want the error to name the field to", err)
	}
	ref, other := s.ref("order"), s.ref("order")
	// One pattern selects one aggregate with '>', the other selects one
	// event name in every payment aggregate with '*'.
	q := events.Query{Subjects: []string{events.SubjectPrefix + "order." + ref.ID + ".>", events.SubjectPrefix + "payment.*.captured"}}
	var want []events.Event
	decoys := map[string]bool{}
	for v := range uint64(subscribeBefore) {
		d := decision(ref, v, "step")
		a := s.mustAppend(ctx, t, st, d)
		if q.From == 0 {
			q.From = a.FirstPosition
		}
		want = append(want, d.Events...)
		o := decision(other, v, "step")
		s.mustAppend(ctx, t, st, o)
		decoys[o.Events[0].ID] = true
	}
	expect := newExpectation(want)
	var got []events.Event
	subErr := make(chan error, 1)
	sub := s.newStore(t)
	subCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		subErr <- sub.Subscribe(subCtx, q, func(e events.Event) error {
			got = append(got, e)
			if expect.seen(e.ID) {
				return errSeenAll
			}
			return nil
		})
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range subscribeWriters {
		wg.Go(func() {
			for _, id := range s.filteredWriter(ctx, t, st, expect) {
				mu.Lock()
				decoys[id] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	final := decision(ref, subscribeBefore, "closed")
	expect.add(final.Events)
	expect.close()
	s.mustAppend(ctx, t, st, final)
	select {
	case err := <-subErr:
		if !errors.Is(err, errSeenAll) {
			t.Fatalf("filtered Subscribe ended with %v before delivering every matching event (%d missing)", err, expect.missing())
		}
	case <-time.After(subscribeDrain):
		stop()
		<-subErr
		t.Fatalf("filtered Subscribe delivered the last event but not every earlier one within %s: %d missing", subscribeDrain, expect.missing())
	}
	checkIncreasing(t, "filtered subscription", got)
	for _, e := range got {
		if decoys[e.ID] {
			t.Errorf("filtered subscription delivered %s (%s at position %d), which matches none of %v", e.ID, e.Subject(), e.Position, q.Subjects)
			break // one is enough to tell
		}
	}
	if got[0].Position != q.From {
		t.Errorf("filtered subscription from %d started at %d", q.From, got[0].Position)
	}
	rq := q
	rq.To = got[len(got)-1].Position
	if ok, diff := equalIDs(ids(got), ids(readAll(ctx, t, st, rq))); !ok {
		t.Errorf("filtered subscription differs from a Read of the same query: %s", diff)
	}
}

// testSubscribeFromTime: a subscription from an instant starts at the first
// selected event recorded at or after it, then goes live; one that names
// both a position and an instant is refused.
func (s *suite) testSubscribeFromTime(t *testing.T) {
	ctx, st := s.ctx(t), s.newStore(t)
	both := events.Query{From: 2, FromTime: time.Now()}
	if err := st.Subscribe(ctx, both, func(events.Event) error { return nil }); events.KindOf(err) != events.KindInvalid || !strings.Contains(err.Error(), "from_time") {
		t.Errorf("Subscribe from a position and an instant = %v; want a KindInvalid error naming from_time", err)
	}
	ref := s.ref("order")
	var all []events.Event
	for v := range uint64(4) {
		d := decision(ref, v, "step")
		s.mustAppend(ctx, t, st, d)
		all = append(all, d.Events...)
	}
	stored := readAll(ctx, t, st, events.Query{Subjects: []string{ref.Subject()}})
	if len(stored) != len(all) {
		t.Fatalf("read %d events of %s, want %d", len(stored), ref, len(all))
	}
	q := events.Query{FromTime: stored[2].RecordedAt, Subjects: []string{ref.Subject()}}
	live := decision(ref, 4, "closed")
	want := slices.Concat(all[2:], live.Events)
	var got []events.Event
	subErr := make(chan error, 1)
	go func() {
		subErr <- s.newStore(t).Subscribe(ctx, q, func(e events.Event) error {
			got = append(got, e)
			if e.ID == live.Events[0].ID {
				return errSeenAll
			}
			return nil
		})
	}()
	s.mustAppend(ctx, t, st, live)
	select {
	case err := <-subErr:
		if !errors.Is(err, errSeenAll) {
			t.Fatalf("Subscribe from an instant ended with %v before the live event", err)
		}
	case <-time.After(subscribeDrain):
		t.Fatalf("Subscribe from an instant did not deliver the live event within %s", subscribeDrain)
	}
	if ok, diff := equalIDs(ids(got), ids(want)); !ok {
		t.Errorf("subscription from the instant of the third event: %s", diff)
	}
}

// filteredWriter appends payment decisions of which only the captures
// match the filtered subscription, adds those to what it must see, and
// returns the ids of the authorizations, which it must not see.
func (s *suite) filteredWriter(ctx context.Context, t *testing.T, st events.Store, expect *expectation) (decoys []string) {
	ref := s.ref("payment")
	var v uint64
	for i := range subscribeEach {
		names := []string{"authorized", "captured"}[:1+i%2]
		d := keyed(decision(ref, v, names...))
		captured := d.Events[1:]
		expect.add(captured)
		if _, err := s.append(ctx, st, d, nil); err != nil {
			t.Errorf("append to %s while subscribed: %v", ref, err)
			expect.drop(captured)
			return decoys
		}
		decoys = append(decoys, d.Events[0].ID)
		v += uint64(len(names))
	}
	return decoys
}

// subscribeWriter appends decisions of one or two events to its own
// aggregate and adds them to what the subscriber must see.
func (s *suite) subscribeWriter(ctx context.Context, t *testing.T, st events.Store, expect *expectation) {
	ref := s.ref("payment")
	var v uint64
	for i := range subscribeEach {
		names := []string{"authorized", "captured"}[:1+i%2]
		d := keyed(decision(ref, v, names...))
		expect.add(d.Events)
		if _, err := s.append(ctx, st, d, nil); err != nil {
			t.Errorf("append to %s while subscribed: %v", ref, err)
			expect.drop(d.Events)
			return
		}
		v += uint64(len(names))
	}
}

// expectation tracks the events a subscriber still has to see. Events are
// added before they are appended, so the subscriber can never see one the
// expectation does not know yet; the subscription is done once the writers
// have finished and nothing is missing.
type expectation struct {
	mu      sync.Mutex
	pending map[string]bool
	closed  bool
}

func newExpectation(evs []events.Event) *expectation {
	x := &expectation{pending: make(map[string]bool)}
	x.add(evs)
	return x
}

func (x *expectation) add(evs []events.Event) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, e := range evs {
		x.pending[e.ID] = true
	}
}

// drop forgets events whose append failed.
func (x *expectation) drop(evs []events.Event) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, e := range evs {
		delete(x.pending, e.ID)
	}
}

// seen marks id as delivered and reports whether the subscription is done.
func (x *expectation) seen(id string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.pending, id)
	return x.closed && len(x.pending) == 0
}

// close says no more events will be added.
func (x *expectation) close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.closed = true
}

func (x *expectation) missing() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.pending)
}

package testkit

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/marketledger/ledger/events"
)

func (s *suite) testExpectedVersion(t *testing.T) {
	ctx, st := s.ctx(t), s.newStore(t)
	ref := s.ref("order")
	a := s.mustAppend(ctx, t, st, decision(ref, 0, "placed"))
	if a.Version != 1 || a.FirstPosition == 0 || a.LastPosition != a.FirstPosition || a.Replayed {
		t.Errorf("first append to a new aggregate = %+v, want version 1 and one non-zero position", a)
	}
	for _, stale := range []uint64{0, 2, 7} {
		_, err := st.Append(ctx, decision(ref, stale, "confirmed"))
		if events.KindOf(err) != events.KindConflict {
			t.Errorf("append at version %d to an aggregate at version 1: got %v, want a %s error", stale, err, events.KindConflict)
		}
	}
	b := s.mustAppend(ctx, t, st, decision(ref, 1, "confirmed"))
	if b.Version != 2 || b.FirstPosition <= a.LastPosition {
		t.Errorf("second append = %+v, want version 2 after position %d", b, a.LastPosition)
	}
	evs := mustLoad(ctx, t, st, ref)
	if len(evs) != 2 {
		t.Fatalf("loaded %d events, want 2: refused appends must store nothing", len(evs))
	}
	if evs[0].Position != a.FirstPosition || evs[1].Position != b.FirstPosition {
		t.Errorf("loaded positions %d, %d; Append reported %d, %d", evs[0].Position, evs[1].Position, a.FirstPosition, b.FirstPosition)
	}
}

func (s *suite) testAtomicDecision(t *testing.T) {
	ctx, st := s.ctx(t), s.newStore(t)
	ref := s.ref("order")
	s.mustAppend(ctx, t, st, decision(ref, 0, "placed"))
	d := decision(ref, 1, "line_added", "line_added", "confirmed")
	a := s.mustAppend(ctx, t, st, d)
	if a.Version != 4 {
		t.Errorf("version after a 3-event decision on version 1 = %d, want 4", a.Version)
	}
	evs := mustLoad(ctx, t, st, ref)
	if len(evs) != 4 {
		t.Fatalf("loaded %d events, want 4", len(evs))
	}
	for i, e := range evs[1:] {
		if e.ID != d.Events[i].ID || e.AggregateVersion != uint64(i+2) {
			t.Errorf("event %d = %s v%d, want %s v%d", i+1, e.ID, e.AggregateVersion, d.Events[i].ID, i+2)
		}
	}
	if evs[1].Position != a.FirstPosition || evs[3].Position != a.LastPosition {
		t.Errorf("decision positions %d..%d, Append reported %d..%d", evs[1].Position, evs[3].Position, a.FirstPosition, a.LastPosition)
	}
	// Atomic means no reader of the global log can stop inside the
	// decision: nothing else lies between its first and last event.
	got := ids(readAll(ctx, t, st, events.Query{From: a.FirstPosition, To: a.LastPosition}))
	if ok, diff := equalIDs(got, ids(d.Events)); !ok {
		t.Errorf("the log between the decision's first and last position is not exactly the decision: %s", diff)
	}
}

func (s *suite) testFailedDecisionLeavesNothing(t *testing.T) {
	ctx, st := s.ctx(t), s.newStore(t)
	ref := s.ref("order")
	s.mustAppend(ctx, t, st, decision(ref, 0, "placed"))
	s.mustAppend(ctx, t, st, decision(ref, 1, "confirmed"))
	// A second client whose view is one version old decides three events.
	other := s.newStore(t)
	stale := decision(ref, 1, "line_added", "line_added", "shipped")
	if _, err := other.Append(ctx, stale); events.KindOf(err) != events.KindConflict {
		t.Errorf("3-event decision at stale version 1: got %v, want %s", err, events.KindConflict)
	}
	// The same through the first client's warm cache.
	if _, err := st.Append(ctx, decision(ref, 1, "line_added", "line_added", "shipped")); events.KindOf(err) != events.KindConflict {
		t.Errorf("3-event decision at stale version 1 (warm client): got %v, want %s", err, events.KindConflict)
	}
	evs := mustLoad(ctx, t, st, ref)
	if len(evs) != 2 {
		t.Errorf("after refused decisions the aggregate has %d events, want 2 (no partial decision)", len(evs))
	}
	for _, e := range readAll(ctx, t, st, events.Query{From: evs[0].Position}) {
		if idSet(stale.Events)[e.ID] {
			t.Errorf("event %s of a refused decision is in the log at position %d", e.ID, e.Position)
		}
	}
}

// raceRounds and racers size the single-aggregate race: racers goroutines
// on two clients append at the same expected version, raceRounds times.
const (
	raceRounds = 6
	racers     = 16
)

func (s *suite) testRacingAppends(t *testing.T) {
	ctx := s.ctx(t)
	stores := []events.Store{s.newStore(t), s.newStore(t)}
	ref := s.ref("order")
	var rs retryStats
	var dis disruption
	for round := range raceRounds {
		if round == raceRounds/2 {
			s.disrupt(ctx, t, &dis)
		}
		version := uint64(round)
		winners := s.raceRound(t, stores, ref, version, &rs)
		if len(winners) != 1 {
			t.Fatalf("round %d at version %d: %d winners, want exactly 1", round, version, len(winners))
		}
		evs, err := stores[round%2].Load(ctx, ref, version)
		if err != nil {
			t.Fatalf("load after round %d: %v", round, err)
		}
		if len(evs) != 1 || evs[0].ID != winners[0].Events[0].ID || evs[0].AggregateVersion != version+1 {
			t.Fatalf("round %d: aggregate holds %v after version %d, want only the winner's event %s",
				round, ids(evs), version, winners[0].Events[0].ID)
		}
	}
	t.Logf("%d appends retried after %s", rs.n.Load(), events.KindUnavailable)
}

// raceRound starts racers appends at version at once and returns the
// decisions that won. Every loser must have got KindConflict.
func (s *suite) raceRound(t *testing.T, stores []events.Store, ref events.AggregateRef, version uint64, rs *retryStats) []events.Decision {
	ctx := s.ctx(t)
	start := make(chan struct{})
	var mu sync.Mutex
	var winners []events.Decision
	var wg sync.WaitGroup
	for i := range racers {
		d := keyed(decision(ref, version, fmt.Sprintf("raced_%d", i)))
		wg.Go(func() {
			<-start
			a, err := s.append(ctx, stores[i%len(stores)], d, rs)
			switch {
			case err == nil:
				if a.Version != version+1 {
					t.Errorf("winner at version %d reports version %d", version, a.Version)
				}
				mu.Lock()
				winners = append(winners, d)
				mu.Unlock()
			case events.KindOf(err) != events.KindConflict:
				t.Errorf("racer %d at version %d: got %v, want success or %s", i, version, err, events.KindConflict)
			}
		})
	}
	close(start)
	wg.Wait()
	return winners
}

// Sizes of the isolation test: good writers on their own aggregates,
// decisions per good writer, and conflicting decisions of each kind.
const (
	isolationWriters   = 24
	isolationDecisions = 3
	isolationConflicts = 4
)

func (s *suite) testConflictIsolation(t *testing.T) {
	ctx := s.ctx(t)
	warm, cold := s.newStore(t), s.newStore(t)
	// Stale-cache conflicts: cold learns each aggregate at version 1, then
	// warm moves it to 2, so cold's appends at version 1 pass cold's own
	// check and are refused only by the server, inside a shared batch.
	var staleRefs []events.AggregateRef
	for range isolationConflicts {
		ref := s.ref("payment")
		s.mustAppend(ctx, t, cold, decision(ref, 0, "authorized"))
		s.mustAppend(ctx, t, warm, decision(ref, 1, "captured"))
		staleRefs = append(staleRefs, ref)
	}
	shared := s.ref("payment")
	s.mustAppend(ctx, t, cold, decision(shared, 0, "authorized"))

	var rs retryStats
	var dis disruption
	var wg sync.WaitGroup
	good := make(chan struct{}, isolationWriters*isolationDecisions)
	start := make(chan struct{})
	for w := range isolationWriters {
		st := []events.Store{warm, cold}[w%2]
		wg.Go(func() { <-start; s.goodWriter(ctx, t, st, good, &rs) })
	}
	for i, ref := range staleRefs {
		wg.Go(func() {
			<-start
			s.mustConflict(ctx, t, cold, decision(ref, 1, "refunded"), fmt.Sprintf("stale cache %d", i))
		})
		wg.Go(func() {
			<-start
			s.mustConflict(ctx, t, warm, decision(shared, 0, "authorized"), fmt.Sprintf("stale version %d", i))
		})
	}
	close(start)
	s.disruptMidway(ctx, t, &dis, good, isolationWriters*isolationDecisions/2)
	wg.Wait()
	if evs := mustLoad(ctx, t, warm, shared); len(evs) != 1 {
		t.Errorf("aggregate %s has %d events after refused decisions, want 1", shared, len(evs))
	}
	t.Logf("%d appends retried after %s", rs.n.Load(), events.KindUnavailable)
}

// goodWriter appends isolationDecisions two-event decisions in sequence to
// a fresh aggregate; none may fail, whatever conflicts share its batches.
func (s *suite) goodWriter(ctx context.Context, t *testing.T, st events.Store, good chan<- struct{}, rs *retryStats) {
	ref := s.ref("order")
	for v := uint64(0); v < 2*isolationDecisions; v += 2 {
		a, err := s.append(ctx, st, keyed(decision(ref, v, "placed", "line_added")), rs)
		if err != nil {
			t.Errorf("append to %s at version %d next to conflicting appends: %v", ref, v, err)
			return
		}
		if a.Version != v+2 {
			t.Errorf("append to %s at version %d reports version %d, want %d", ref, v, a.Version, v+2)
		}
		good <- struct{}{}
	}
}

// mustConflict appends d, which must be refused as a conflict.
func (s *suite) mustConflict(ctx context.Context, t *testing.T, st events.Store, d events.Decision, what string) {
	if _, err := st.Append(ctx, d); events.KindOf(err) != events.KindConflict {
		t.Errorf("%s: append to %s at version %d: got %v, want %s", what, d.Aggregate, d.ExpectedVersion, err, events.KindConflict)
	}
}

// disruptMidway starts the disruption once n good appends have succeeded,
// or at once if the writers end before that.
func (s *suite) disruptMidway(ctx context.Context, t *testing.T, dis *disruption, good <-chan struct{}, n int) {
	for range n {
		select {
		case <-good:
		case <-ctx.Done():
			return
		}
	}
	s.disrupt(ctx, t, dis)
}

func (s *suite) testIdempotency(t *testing.T) {
	ctx, st := s.ctx(t), s.newStore(t)
	ref := s.ref("order")
	first := keyed(decision(ref, 0, "placed", "confirmed"))
	a := s.mustAppend(ctx, t, st, first)
	if a.Replayed {
		t.Errorf("first use of a key reports Replayed")
	}
	// The same command again, decided anew (fresh event ids), through
	// another client that has never seen the aggregate.
	again := decision(ref, 0, "placed", "confirmed")
	again.IdempotencyKey, again.CommandDigest = first.IdempotencyKey, first.CommandDigest
	for i, st := range []events.Store{st, s.newStore(t)} {
		b, err := st.Append(ctx, again)
		if err != nil {
			t.Fatalf("client %d: same key and digest again: %v", i, err)
		}
		if want := (events.Appended{Version: a.Version, FirstPosition: a.FirstPosition, LastPosition: a.LastPosition, Replayed: true}); b != want {
			t.Errorf("client %d: same key and digest again = %+v, want %+v", i, b, want)
		}
	}
	other := again
	other.CommandDigest = "sha256:another-command"
	if _, err := st.Append(ctx, other); events.KindOf(err) != events.KindDuplicate {
		t.Errorf("same key, different digest: got %v, want %s", err, events.KindDuplicate)
	}
	elsewhere := keyed(decision(s.ref("order"), 0, "placed"))
	elsewhere.IdempotencyKey, elsewhere.CommandDigest = first.IdempotencyKey, "sha256:another-command"
	if _, err := st.Append(ctx, elsewhere); events.KindOf(err) != events.KindDuplicate {
		t.Errorf("same key, different digest, other aggregate: got %v, want %s", err, events.KindDuplicate)
	}
	if evs := mustLoad(ctx, t, st, elsewhere.Aggregate); len(evs) != 0 {
		t.Errorf("refused duplicate stored %d events on %s", len(evs), elsewhere.Aggregate)
	}
	evs := mustLoad(ctx, t, st, ref)
	if ok, diff := equalIDs(ids(evs), ids(first.Events)); !ok {
		t.Errorf("aggregate after replays and refusals is not the first decision alone: %s", diff)
	}
	if got := readAll(ctx, t, st, events.Query{From: a.LastPosition + 1, Subjects: []string{ref.Subject()}}); len(got) != 0 {
		t.Errorf("replays appended %d events after position %d", len(got), a.LastPosition)
	}
}

// idemRacers is how many clients retry one command at the same time.
const idemRacers = 8

func (s *suite) testConcurrentIdempotency(t *testing.T) {
	ctx := s.ctx(t)
	stores := []events.Store{s.newStore(t), s.newStore(t)}
	ref := s.ref("order")
	key, digest := "cmd-"+ref.ID, "sha256:"+ref.ID
	results := make([]events.Appended, idemRacers)
	var rs retryStats
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range idemRacers {
		d := decision(ref, 0, "placed") // each retry decides anew
		d.IdempotencyKey, d.CommandDigest = key, digest
		wg.Go(func() {
			<-start
			a, err := s.append(ctx, stores[i%2], d, &rs)
			if err != nil {
				t.Errorf("racer %d with the same key and digest: %v", i, err)
			}
			results[i] = a
		})
	}
	close(start)
	wg.Wait()
	fresh := 0
	var first *events.Appended
	for i, a := range results {
		if a.Version == 0 {
			continue // failed, reported above
		}
		if !a.Replayed {
			fresh++
		}
		a.Replayed = false
		if first == nil {
			first = &a
		} else if a != *first {
			t.Errorf("racer %d got %+v, an earlier racer %+v: one command must have one result", i, a, *first)
		}
	}
	if fresh > 1 || (fresh == 0 && rs.n.Load() == 0) {
		t.Errorf("%d racers report a fresh append, want exactly 1", fresh)
	}
	if evs := mustLoad(ctx, t, stores[0], ref); len(evs) != 1 {
		t.Errorf("one command retried %d times stored %d events, want 1", idemRacers, len(evs))
	}
}

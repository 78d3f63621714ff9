package eventstoredb

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit"
)

func modelStore(t *testing.T, m *model) *Store {
	s := newStore(m.client())
	t.Cleanup(func() { s.Close() })
	return s
}

func decide(ref events.AggregateRef, version uint64, names ...string) events.Decision {
	d := events.Decision{Aggregate: ref, ExpectedVersion: version}
	for _, n := range names {
		d.Events = append(d.Events, testkit.NewEvent(ref, n))
	}
	return d
}

func mustAppend(t *testing.T, s *Store, d events.Decision) events.Appended {
	t.Helper()
	a, err := s.Append(context.Background(), d)
	if err != nil {
		t.Fatalf("append %s at %d: %v", d.Aggregate, d.ExpectedVersion, err)
	}
	return a
}

// TestLoadAcrossDecisions is the conformance suite's Load check with the
// positions each Append reported instead of dense ranges.
func TestLoadAcrossDecisions(t *testing.T) {
	ctx := context.Background()
	m := newModel()
	s := modelStore(t, m)
	ref := events.AggregateRef{Context: "order", ID: "o1"}
	var want []events.Event
	var firsts, lasts []uint64
	for _, names := range [][]string{{"placed"}, {"line_added", "line_added"}, {"confirmed"}} {
		d := decide(ref, uint64(len(want)), names...)
		a := mustAppend(t, s, d)
		if a.LastPosition <= a.FirstPosition && len(names) > 1 {
			t.Errorf("decision of %d events at %d..%d", len(names), a.FirstPosition, a.LastPosition)
		}
		want = append(want, d.Events...)
		firsts, lasts = append(firsts, a.FirstPosition), append(lasts, a.LastPosition)
	}
	got, err := modelStore(t, m).Load(ctx, ref, 0)
	if err != nil || len(got) != 4 {
		t.Fatalf("Load = %d events, %v", len(got), err)
	}
	if got[0].Position != firsts[0] || got[1].Position != firsts[1] || got[2].Position != lasts[1] || got[3].Position != firsts[2] {
		t.Errorf("loaded positions %d %d %d %d, appends reported %v..%v", got[0].Position, got[1].Position, got[2].Position, got[3].Position, firsts, lasts)
	}
	for i := range got {
		if got[i].ID != want[i].ID || got[i].AggregateVersion != uint64(i+1) || got[i].RecordedAt.IsZero() {
			t.Errorf("event %d = %s v%d", i, got[i].ID, got[i].AggregateVersion)
		}
	}
	tail, err := s.Load(ctx, ref, 2)
	if err != nil || len(tail) != 2 || events.VerifyChain(tail, 2, got[1].Hash) != nil {
		t.Errorf("Load after version 2 = %d events, %v", len(tail), err)
	}
	read := 0
	for e, err := range s.Read(ctx, events.Query{From: firsts[0], Subjects: []string{ref.Subject()}}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.ID != want[read].ID {
			t.Errorf("read %d = %s, want %s", read, e.ID, want[read].ID)
		}
		read++
	}
	if read != 4 {
		t.Errorf("read %d events, want 4", read)
	}
}

func TestFencedDecisionIsRefused(t *testing.T) {
	s := modelStore(t, newModel())
	ref := events.AggregateRef{Context: "order", ID: "o1"}
	d := decide(ref, 0, "placed")
	d.Fence = true
	_, err := s.Append(context.Background(), d)
	if events.KindOf(err) != events.KindInvalid || !strings.Contains(err.Error(), "fencing needs atomic multi-stream append") {
		t.Fatalf("fenced decision: %v, want invalid with the reason", err)
	}
	if evs, _ := s.Load(context.Background(), ref, 0); len(evs) != 0 {
		t.Errorf("a refused fenced decision stored %d events", len(evs))
	}
}

func TestReservedCheckpointAggregateIsRefused(t *testing.T) {
	s := modelStore(t, newModel())
	if _, err := s.Append(context.Background(), decide(mirrorReserved, 0, "moved")); events.KindOf(err) != events.KindInvalid {
		t.Errorf("append to ledger/mirror-checkpoint: %v, want invalid", err)
	}
}

func TestForeignEventInAggregateStream(t *testing.T) {
	m := newModel()
	s := modelStore(t, m)
	m.mustAppend("order-o9", "OrderPlaced", []byte(`{}`), []byte(`{"by":"legacy"}`))
	ref := events.AggregateRef{Context: "order", ID: "o9"}
	if _, err := s.Load(context.Background(), ref, 0); events.KindOf(err) != events.KindIntegrity || !strings.Contains(err.Error(), "foreign event") {
		t.Errorf("Load of a stream with a foreign event: %v, want an integrity error naming it", err)
	}
	if _, err := s.Append(context.Background(), decide(ref, 1, "confirmed")); events.KindOf(err) != events.KindIntegrity {
		t.Errorf("append onto a foreign stream: %v, want integrity", err)
	}
	// Reads of the global log skip it: it is not the ledger's.
	for e, err := range s.Read(context.Background(), events.Query{}) {
		if err != nil || e.AggregateID == "o9" {
			t.Fatalf("Read yielded %v, %v", e.ID, err)
		}
	}
}

// TestIdempotencyIntentIsCompletedAfterCrash stops an append between its
// idempotency intent and its events, as a crash would, and checks that a
// retry with the same key stores the first attempt's events once.
func TestIdempotencyIntentIsCompletedAfterCrash(t *testing.T) {
	ctx := context.Background()
	m := newModel()
	s := modelStore(t, m)
	ref := events.AggregateRef{Context: "payment", ID: "p1"}
	first := decide(ref, 0, "authorized")
	first.IdempotencyKey, first.CommandDigest = "cmd-1", "sha256:1"
	m.failAppend = func(stream string) error {
		if stream == StreamName(ref) {
			return &codeError{code: esdb.ErrorUnavailable, msg: "connection lost"}
		}
		return nil
	}
	if _, err := s.Append(ctx, first); events.KindOf(err) != events.KindUnavailable {
		t.Fatalf("append cut off after its intent: %v, want unavailable", err)
	}
	m.failAppend = nil
	if a, found, err := s.LookupIdempotency(ctx, ref, "cmd-1", "sha256:1"); found || err != nil {
		t.Errorf("lookup of an unsettled intent = %+v, %v, %v; want not found", a, found, err)
	}
	retry := decide(ref, 0, "authorized") // decided anew: fresh ids
	retry.IdempotencyKey, retry.CommandDigest = first.IdempotencyKey, first.CommandDigest
	a, err := modelStore(t, m).Append(ctx, retry)
	if err != nil || !a.Replayed || a.Version != 1 {
		t.Fatalf("retry = %+v, %v; want the first attempt's result, replayed", a, err)
	}
	evs, _ := s.Load(ctx, ref, 0)
	if len(evs) != 1 || evs[0].ID != first.Events[0].ID {
		t.Fatalf("aggregate holds %d events (%v), want the first attempt's event once", len(evs), evs)
	}
	again, err := s.Append(ctx, retry)
	if err != nil || again != a {
		t.Errorf("third attempt = %+v, %v; want %+v", again, err, a)
	}
	if got, found, err := s.LookupIdempotency(ctx, ref, "cmd-1", "sha256:1"); !found || err != nil || got != a {
		t.Errorf("lookup = %+v, %v, %v; want %+v", got, found, err, a)
	}
	if _, _, err := s.LookupIdempotency(ctx, ref, "cmd-1", "sha256:other"); events.KindOf(err) != events.KindDuplicate {
		t.Errorf("lookup with another digest: %v, want duplicate", err)
	}
}

// TestIdempotencyIntentIsVoidedWhenOvertaken leaves an intent unsettled,
// lets another decision take its version, and checks that the key is free
// again, as a refused decision leaves it.
func TestIdempotencyIntentIsVoidedWhenOvertaken(t *testing.T) {
	ctx := context.Background()
	m := newModel()
	s := modelStore(t, m)
	ref := events.AggregateRef{Context: "payment", ID: "p2"}
	keyed := decide(ref, 0, "authorized")
	keyed.IdempotencyKey, keyed.CommandDigest = "cmd-2", "sha256:2"
	m.failAppend = func(stream string) error {
		if stream == StreamName(ref) {
			return &codeError{code: esdb.ErrorCodeDeadlineExceeded, msg: "deadline"}
		}
		return nil
	}
	if _, err := s.Append(ctx, keyed); events.KindOf(err) != events.KindUnavailable {
		t.Fatalf("cut-off append: %v", err)
	}
	m.failAppend = nil
	other := mustAppend(t, s, decide(ref, 0, "authorized"))
	retry := decide(ref, 0, "authorized")
	retry.IdempotencyKey, retry.CommandDigest = keyed.IdempotencyKey, keyed.CommandDigest
	if _, err := s.Append(ctx, retry); events.KindOf(err) != events.KindConflict {
		t.Fatalf("retry at a version taken by another decision: %v, want conflict", err)
	}
	next := decide(ref, other.Version, "captured")
	next.IdempotencyKey, next.CommandDigest = keyed.IdempotencyKey, keyed.CommandDigest
	a, err := s.Append(ctx, next)
	if err != nil || a.Replayed || a.Version != 2 {
		t.Fatalf("the key after its intent was voided = %+v, %v; want a fresh append", a, err)
	}
	if evs, _ := s.Load(ctx, ref, 0); len(evs) != 2 || evs[0].ID == keyed.Events[0].ID {
		t.Errorf("aggregate = %d events; the voided intent's event must not be stored", len(evs))
	}
}

func TestSubscribeFromBeyondTheHead(t *testing.T) {
	m := newModel()
	s := modelStore(t, m)
	ref := events.AggregateRef{Context: "order", ID: "o1"}
	a := mustAppend(t, s, decide(ref, 0, "placed"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan events.Event, 4)
	go s.Subscribe(ctx, events.Query{From: a.LastPosition + 1}, func(e events.Event) error { got <- e; return nil })
	time.Sleep(50 * time.Millisecond)
	m.mustAppend("customer-8", "customer.registered", []byte(`{}`), nil)
	b := mustAppend(t, s, decide(ref, 1, "confirmed"))
	select {
	case e := <-got:
		if e.Position != b.FirstPosition {
			t.Errorf("first delivered position %d, want %d", e.Position, b.FirstPosition)
		}
	case <-ctx.Done():
		t.Fatal("no event delivered")
	}
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	s := newStore(newModel().client())
	s.Close()
	ref := events.AggregateRef{Context: "order", ID: "o1"}
	if _, err := s.Append(context.Background(), decide(ref, 0, "placed")); events.KindOf(err) != events.KindUnavailable {
		t.Errorf("append on a closed store: %v", err)
	}
}

func TestOpenRefusesBadURL(t *testing.T) {
	_, err := Open(context.Background(), "http://[::1")
	if events.KindOf(err) != events.KindInvalid {
		t.Errorf("Open with a bad URL: %v, want invalid", err)
	}
}

// TestOpenUnreachable checks that a server nobody listens on fails Open
// with a clear unavailable error, quickly.
func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := Open(ctx, "esdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=1&discoveryInterval=10&gossipTimeout=1")
	if events.KindOf(err) != events.KindUnavailable {
		t.Fatalf("Open of an unreachable server: %v, want unavailable", err)
	}
	var e *events.Error
	if !errors.As(err, &e) || !strings.Contains(e.Error(), "127.0.0.1:1") {
		t.Errorf("error does not name the address: %v", err)
	}
	t.Logf("%v after %s", err, time.Since(start).Round(time.Millisecond))
}

package subscriber_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/runtime/subscriber"
)

func startStore(t testing.TB) (*events.JetStreamStore, jetstream.JetStream) {
	st, js, _ := startStoreURL(t)
	return st, js
}

// startStoreURL is startStore that also returns the server's URL, for tests
// that play more than one process, each with a connection of its own.
func startStoreURL(t testing.TB) (*events.JetStreamStore, jetstream.JetStream, string) {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), Port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, js := connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := events.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	st, err := events.NewJetStreamStore(ctx, nc, contracts.Fence())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, js, srv.ClientURL()
}

// connect opens a connection of its own to url, closed when the test ends.
func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// appendN appends n one-event decisions on distinct orders, concurrently so
// the store group-commits them, and returns the last position.
func appendN(t testing.TB, st events.Store, n int) uint64 {
	t.Helper()
	var wg sync.WaitGroup
	var last atomic.Uint64
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := events.NewID()
			id := fmt.Sprintf("o%d-%s", i, u[len(u)-12:])
			e := events.Event{ID: events.NewID(), Type: "order.placed", SchemaVersion: 1, Source: "/test",
				AggregateID: id, OccurredAt: time.Now(), Data: []byte(`{"n":1}`)}
			a, err := st.Append(context.Background(), events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: id}, Events: []events.Event{e}})
			if err != nil {
				errs <- err
				return
			}
			for {
				cur := last.Load()
				if a.LastPosition <= cur || last.CompareAndSwap(cur, a.LastPosition) {
					break
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return last.Load()
}

// eventPositions returns the positions of every event (control records
// excluded) up to and including to.
func eventPositions(t testing.TB, st events.Store, to uint64) []uint64 {
	var out []uint64
	for e, err := range st.Read(context.Background(), events.Query{To: to}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Position)
	}
	return out
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling an asynchronous consumer: nothing to await
	}
}

// runSub runs s in the background and returns a stop function that cancels
// it and waits for Run to return.
func runSub(t testing.TB, s *subscriber.Subscription, h subscriber.Handler) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newSub(t testing.TB, js jetstream.JetStream, cfg subscriber.Config) *subscriber.Subscription {
	t.Helper()
	s, err := subscriber.New(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRedeliveryAfterHandlerError(t *testing.T) {
	st, js := startStore(t)
	last := appendN(t, st, 10)
	// One decision with an idempotency key leaves a control record: the
	// subscription must acknowledge it without calling the handler.
	e := events.Event{ID: events.NewID(), Type: "order.placed", SchemaVersion: 1, Source: "/test", AggregateID: "idem1", OccurredAt: time.Now(), Data: []byte(`{}`)}
	a, err := st.Append(context.Background(), events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: "idem1"},
		Events: []events.Event{e}, IdempotencyKey: "k", CommandDigest: "d"})
	if err != nil {
		t.Fatal(err)
	}
	head := a.LastPosition + 1 // the idempotency record follows the event
	var mu sync.Mutex
	calls := map[uint64]int{}
	s := newSub(t, js, subscriber.Config{Name: "redeliver", Backoff: []time.Duration{20 * time.Millisecond}})
	runSub(t, s, func(ctx context.Context, e events.Event) error {
		mu.Lock()
		defer mu.Unlock()
		calls[e.Position]++
		if e.Position == 3 && calls[3] < 3 {
			return errors.New("transient failure")
		}
		return nil
	})
	waitFor(t, "checkpoint at the head", func() bool { return s.Checkpoint() == head })
	mu.Lock()
	defer mu.Unlock()
	if calls[3] != 3 {
		t.Errorf("position 3 handled %d times, want 3 (two failures, then success)", calls[3])
	}
	for _, p := range eventPositions(t, st, last) {
		if calls[p] == 0 {
			t.Errorf("position %d never handled", p)
		}
	}
	if calls[head] != 0 {
		t.Errorf("the control record at %d reached the handler", head)
	}
	if got := len(calls); got != int(last)+1 {
		t.Errorf("handler saw %d positions, want %d", got, last+1)
	}
}

func TestPoisonEventIsParkedThenReplayed(t *testing.T) {
	st, js := startStore(t)
	last := appendN(t, st, 5)
	var attempts atomic.Int32
	var parked atomic.Int32
	s := newSub(t, js, subscriber.Config{Name: "poison", MaxAttempts: 3, Backoff: []time.Duration{10 * time.Millisecond},
		OnPark: func(subscriber.Parked) { parked.Add(1) }})
	stop := runSub(t, s, func(ctx context.Context, e events.Event) error {
		if e.Position == 2 {
			attempts.Add(1)
			return fmt.Errorf("cannot apply %s: unknown currency", e.ID)
		}
		return nil
	})
	waitFor(t, "checkpoint past the poison event", func() bool { return s.Checkpoint() == last })
	stop()
	if got := attempts.Load(); got != 3 {
		t.Errorf("poison event tried %d times, want 3", got)
	}
	if parked.Load() != 1 {
		t.Errorf("OnPark called %d times, want 1", parked.Load())
	}
	ctx := context.Background()
	list, err := subscriber.ListParked(ctx, js, "poison")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("parked %d events, want 1: %+v", len(list), list)
	}
	p := list[0]
	if p.Position != 2 || p.Attempts != 3 || !strings.Contains(p.Reason, "unknown currency") || p.Replayed {
		t.Errorf("parked record = %+v", p)
	}
	if p.Event.ID != p.EventID || p.Event.Position != 2 || p.Subject != p.Event.Subject() {
		t.Errorf("parked event = %+v", p.Event)
	}
	if got := len(eventPositions(t, st, 0)); got != int(last) {
		t.Errorf("the log reads %d events after parking, want %d: park records must stay out of LEDGER", got, last)
	}

	var seen []string
	res, err := subscriber.Replay(ctx, js, "poison", func(ctx context.Context, e events.Event) error {
		seen = append(seen, e.ID)
		return nil
	})
	if err != nil || res.Replayed != 1 || len(seen) != 1 || seen[0] != p.EventID {
		t.Errorf("Replay = %+v, %v; handler saw %v", res, err, seen)
	}
	res, err = subscriber.Replay(ctx, js, "poison", func(context.Context, events.Event) error { return errors.New("must not run") })
	if err != nil || res.Replayed != 0 || res.Skipped != 1 {
		t.Errorf("second Replay = %+v, %v; want it skipped", res, err)
	}
	if list, _ := subscriber.ListParked(ctx, js, "poison"); len(list) != 1 || !list[0].Replayed {
		t.Errorf("after replay: %+v, want the record kept and marked replayed", list)
	}
}

func TestRestartResumesFromCheckpointWithoutGap(t *testing.T) {
	st, js := startStore(t)
	last := appendN(t, st, 300)
	ctx := context.Background()
	kv, err := subscriber.DedupeBucket(ctx, js, "resume", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	handled := map[uint64]int{}    // through the dedupe helper
	deliveries := map[uint64]int{} // raw
	inner := func(ctx context.Context, e events.Event) error {
		mu.Lock()
		handled[e.Position]++
		mu.Unlock()
		return nil
	}
	raw := func(d *subscriber.Dedupe) subscriber.Handler {
		wrapped := d.Wrap(inner)
		return func(ctx context.Context, e events.Event) error {
			mu.Lock()
			deliveries[e.Position]++
			mu.Unlock()
			time.Sleep(time.Millisecond) // slow enough that the stop lands mid-stream
			return wrapped(ctx, e)
		}
	}
	cfg := subscriber.Config{Name: "resume", MaxInFlight: 8, AckWait: 2 * time.Second}
	s1 := newSub(t, js, cfg)
	stop := runSub(t, s1, raw(subscriber.NewDedupe(0, kv)))
	waitFor(t, "the first run to get going", func() bool { return s1.Checkpoint() >= 100 })
	stop()
	cp := s1.Checkpoint()
	floor, err := s1.AckFloor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if floor < cp {
		t.Errorf("server ack floor %d is behind the SDK's checkpoint %d", floor, cp)
	}
	if cp >= last {
		t.Fatalf("the first run finished everything (checkpoint %d); the test needs a stop mid-stream", cp)
	}

	// A new process: a new Subscription and a new Dedupe sharing only the
	// key-value bucket.
	s2 := newSub(t, js, cfg)
	if got := s2.Checkpoint(); got != floor {
		t.Errorf("restarted subscription starts at checkpoint %d, want the ack floor %d", got, floor)
	}
	runSub(t, s2, raw(subscriber.NewDedupe(0, kv)))
	waitFor(t, "the second run to reach the head", func() bool { return s2.Checkpoint() == last })
	mu.Lock()
	defer mu.Unlock()
	// Delivery is at least once (a gap would be a lost event). Through the
	// dedupe helper it is exactly once here because the first run was
	// stopped, not killed: every handler that returned got its mark, even
	// those that returned after the stop. A crash between handler and mark
	// repeats the handler (TestProcessDyingBetweenHandlerAndMark).
	for _, p := range eventPositions(t, st, last) {
		if handled[p] != 1 {
			t.Errorf("position %d handled %d times through the dedupe helper, want exactly 1 after a stop", p, handled[p])
		}
		if deliveries[p] == 0 {
			t.Errorf("position %d never delivered: a gap", p)
		}
	}
	dups := 0
	for _, n := range deliveries {
		dups += n - 1
	}
	t.Logf("stopped at checkpoint %d of %d; %d redeliveries (at least once), all absorbed by the dedupe helper", cp, last, dups)
}

func TestBackpressureBoundsInFlightWork(t *testing.T) {
	st, js := startStore(t)
	last := appendN(t, st, 40)
	const bound = 4
	var running, peak atomic.Int32
	release := make(chan struct{})
	s := newSub(t, js, subscriber.Config{Name: "bounded", MaxInFlight: bound})
	runSub(t, s, func(ctx context.Context, e events.Event) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	})
	waitFor(t, "the bound to fill", func() bool { return running.Load() == bound })
	time.Sleep(300 * time.Millisecond) // give an unbounded fetcher the chance to overrun
	cons, err := js.Consumer(context.Background(), events.StreamName, subscriber.ConsumerPrefix+"bounded")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending > bound {
		t.Errorf("%d events delivered and unacknowledged, bound %d", info.NumAckPending, bound)
	}
	if got := running.Load(); got != bound {
		t.Errorf("%d handlers running while blocked, want %d", got, bound)
	}
	close(release)
	waitFor(t, "the rest to drain", func() bool { return s.Checkpoint() == last })
	if p := peak.Load(); p > bound {
		t.Errorf("peak concurrency %d exceeds MaxInFlight %d", p, bound)
	}
}

func TestStartPositionsApplyOnlyWhenCreated(t *testing.T) {
	st, js := startStore(t)
	last := appendN(t, st, 10)
	ctx := context.Background()
	first := make(chan uint64, 100)
	s := newSub(t, js, subscriber.Config{Name: "from7", Start: subscriber.FromPosition(7), MaxInFlight: 1})
	stop := runSub(t, s, func(ctx context.Context, e events.Event) error { first <- e.Position; return nil })
	waitFor(t, "from7 to reach the head", func() bool { return s.Checkpoint() == last })
	stop()
	if p := <-first; p != 7 {
		t.Errorf("FromPosition(7) first delivered %d", p)
	}
	now := newSub(t, js, subscriber.Config{Name: "now", Start: subscriber.FromNow()})
	got := make(chan uint64, 10)
	runSub(t, now, func(ctx context.Context, e events.Event) error { got <- e.Position; return nil })
	newLast := appendN(t, st, 1)
	select {
	case p := <-got:
		if p != newLast {
			t.Errorf("FromNow delivered %d first, want the new event %d", p, newLast)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("FromNow delivered nothing")
	}
	// Re-binding with another start changes nothing: the checkpoint wins.
	again, err := subscriber.New(ctx, js, subscriber.Config{Name: "from7", Start: subscriber.FromBeginning()})
	if err != nil {
		t.Fatal(err)
	}
	if cp := again.Checkpoint(); cp != last {
		t.Errorf("re-bound subscription at %d, want its checkpoint %d", cp, last)
	}
}

func TestConfigIsValidated(t *testing.T) {
	_, js := startStore(t)
	for _, cfg := range []subscriber.Config{
		{Name: ""}, {Name: "a.b"}, {Name: "ok", MaxInFlight: -1}, {Name: "ok", MaxAttempts: 1000},
		{Name: "ok", Subjects: []string{"parked.x.>"}},
	} {
		if _, err := subscriber.New(context.Background(), js, cfg); events.KindOf(err) != events.KindInvalid {
			t.Errorf("New(%+v) = %v, want an invalid-input error", cfg, err)
		}
	}
}

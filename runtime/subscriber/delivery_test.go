package subscriber_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/subscriber"
	"github.com/nats-io/nats.go/jetstream"
)

// readCount reads the counter at key: its value and revision (0, 0 when the
// key was never written).
func readCount(ctx context.Context, kv jetstream.KeyValue, key string) (n int, rev uint64, err error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	n, err = strconv.Atoi(string(e.Value()))
	return n, e.Revision(), err
}

// increment adds one to the counter at key in place: an effect that is not
// idempotent, so a repeat shows.
func increment(ctx context.Context, kv jetstream.KeyValue, key string) error {
	n, rev, err := readCount(ctx, kv, key)
	if err != nil {
		return err
	}
	v := []byte(strconv.Itoa(n + 1))
	if rev == 0 {
		_, err = kv.Create(ctx, key, v)
	} else {
		_, err = kv.Update(ctx, key, v, rev)
	}
	return err
}

// incrementWrite is increment as a write for AtomicKV, conditional on the
// revision read.
func incrementWrite(ctx context.Context, kv jetstream.KeyValue, key string) ([]subscriber.KVWrite, error) {
	n, rev, err := readCount(ctx, kv, key)
	if err != nil {
		return nil, err
	}
	return []subscriber.KVWrite{{Key: key, Value: []byte(strconv.Itoa(n + 1)), IfRevision: true, Revision: rev}}, nil
}

// TestProcessDyingBetweenHandlerAndMark plays a process that dies (its
// connection closes) at one event, at one of two points: after the
// handler's effect and before the mark, or after the mark and before the
// acknowledgement. A second process takes over. Every event's effect must
// be stored at least once; with AtomicKV, and with Dedupe when only the
// acknowledgement was lost, exactly once; with Dedupe dying before the mark,
// twice, which is the contract Dedupe states.
func TestProcessDyingBetweenHandlerAndMark(t *testing.T) {
	for _, tc := range []struct {
		name        string
		atomic      bool
		afterMark   bool // die after the mark is stored, before the ack
		wantEffects int  // of the event the first process died on
		wantRuns    int  // of the handler on that event
	}{
		{name: "dedupe, died before the mark", wantEffects: 2, wantRuns: 2},
		{name: "dedupe, died before the ack", afterMark: true, wantEffects: 1, wantRuns: 1},
		{name: "atomic, died before the commit", atomic: true, wantEffects: 1, wantRuns: 2},
		{name: "atomic, died before the ack", atomic: true, afterMark: true, wantEffects: 1, wantRuns: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, js, url := startStoreURL(t)
			last := appendN(t, st, 5)
			positions := eventPositions(t, st, last)
			victim := positions[2]
			ctx := context.Background()
			if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "effects", Storage: jetstream.FileStorage}); err != nil {
				t.Fatal(err)
			}
			cfg := subscriber.Config{Name: "died", MaxInFlight: 1, AckWait: time.Second, Backoff: []time.Duration{10 * time.Millisecond}}

			var mu sync.Mutex
			runs := map[uint64]int{}
			// process builds the handler of one process, on a connection
			// of its own; dies, when set, closes that connection.
			process := func(dies bool) (jetstream.JetStream, subscriber.Handler) {
				nc, pjs := connect(t, url)
				kv, err := pjs.KeyValue(ctx, "effects")
				if err != nil {
					t.Fatal(err)
				}
				die := func(e events.Event) {
					if dies && e.Position == victim {
						nc.Close()
					}
				}
				count := func(e events.Event) {
					mu.Lock()
					runs[e.Position]++
					mu.Unlock()
				}
				key := func(e events.Event) string { return "count." + strconv.FormatUint(e.Position, 10) }
				var h subscriber.Handler
				if tc.atomic {
					a, err := subscriber.NewAtomicKV(ctx, pjs, kv, cfg.Name)
					if err != nil {
						t.Fatal(err)
					}
					h = a.Wrap(func(ctx context.Context, e events.Event) ([]subscriber.KVWrite, error) {
						count(e)
						w, err := incrementWrite(ctx, kv, key(e))
						if !tc.afterMark {
							die(e)
						}
						return w, err
					})
				} else {
					dkv, err := subscriber.DedupeBucket(ctx, pjs, cfg.Name, 0)
					if err != nil {
						t.Fatal(err)
					}
					h = subscriber.NewDedupe(0, dkv).Wrap(func(ctx context.Context, e events.Event) error {
						count(e)
						err := increment(ctx, kv, key(e))
						if !tc.afterMark {
							die(e)
						}
						return err
					})
				}
				return pjs, func(ctx context.Context, e events.Event) error {
					err := h(ctx, e)
					if tc.afterMark {
						die(e)
					}
					return err
				}
			}

			js1, h1 := process(true)
			s1 := newSub(t, js1, cfg)
			done := make(chan error, 1)
			go func() { done <- s1.Run(context.Background(), h1) }()
			select {
			case err := <-done:
				t.Logf("first process stopped: %v", err) // its connection closed
			case <-time.After(20 * time.Second):
				t.Fatal("the first process did not stop when its connection closed")
			}

			js2, h2 := process(false)
			s2 := newSub(t, js2, cfg)
			runSub(t, s2, h2)
			waitFor(t, "the second process to reach the head", func() bool { return s2.Checkpoint() == last })

			mu.Lock()
			defer mu.Unlock()
			kv, err := js.KeyValue(ctx, "effects")
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range positions {
				want, wantRuns := 1, 1
				if p == victim {
					want, wantRuns = tc.wantEffects, tc.wantRuns
				}
				got, _, err := readCount(ctx, kv, "count."+strconv.FormatUint(p, 10))
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("position %d: effect stored %d times, want %d", p, got, want)
				}
				if runs[p] != wantRuns {
					t.Errorf("position %d: handler ran %d times, want %d", p, runs[p], wantRuns)
				}
			}
		})
	}
}

// TestAtomicKVConcurrentEffectsOnOneKey runs handlers concurrently that all
// add to one counter: a write whose revision moved stores nothing and runs
// again, so the counter ends at the number of events exactly.
func TestAtomicKVConcurrentEffectsOnOneKey(t *testing.T) {
	st, js := startStore(t)
	last := appendN(t, st, 30)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "totals", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	a, err := subscriber.NewAtomicKV(ctx, js, kv, "totals")
	if err != nil {
		t.Fatal(err)
	}
	s := newSub(t, js, subscriber.Config{Name: "totals", MaxInFlight: 4, MaxAttempts: subscriber.MaxAttemptsLimit,
		Backoff: []time.Duration{5 * time.Millisecond}, OnPark: func(p subscriber.Parked) { t.Errorf("parked %d: %s", p.Position, p.Reason) }})
	runSub(t, s, a.Wrap(func(ctx context.Context, e events.Event) ([]subscriber.KVWrite, error) {
		return incrementWrite(ctx, kv, "total")
	}))
	waitFor(t, "the subscription to reach the head", func() bool { return s.Checkpoint() == last })
	got, _, err := readCount(ctx, kv, "total")
	if err != nil {
		t.Fatal(err)
	}
	if want := len(eventPositions(t, st, last)); got != want {
		t.Errorf("total = %d, want %d (one per event)", got, want)
	}
}

func TestAtomicKVRefusesReservedKeys(t *testing.T) {
	st, js := startStore(t)
	appendN(t, st, 1)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "reserved"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := subscriber.NewAtomicKV(ctx, js, kv, "reserved")
	if err != nil {
		t.Fatal(err)
	}
	e := events.Event{ID: events.NewID(), Position: 1}
	for _, key := range []string{subscriber.HandledKeyPrefix + "reserved." + e.ID, "", "a b", ".a"} {
		err := a.Wrap(func(context.Context, events.Event) ([]subscriber.KVWrite, error) {
			return []subscriber.KVWrite{{Key: key, Value: []byte("x")}}, nil
		})(ctx, e)
		if events.KindOf(err) != events.KindInvalid {
			t.Errorf("write to key %q: %v, want an invalid-input error", key, err)
		}
	}
	if done, err := a.Handled(ctx, e.ID); err != nil || done {
		t.Errorf("Handled after refused writes = %v, %v; want false", done, err)
	}
}

// TestDedupeMarksAHandlerThatReturnedDuringAStop stops the subscription
// while a handler runs; the handler then returns nil. Its mark must still
// be written, or the next process would run it again: a stop, unlike a
// crash, leaves no gap between effect and mark.
func TestDedupeMarksAHandlerThatReturnedDuringAStop(t *testing.T) {
	st, js := startStore(t)
	last := appendN(t, st, 3)
	positions := eventPositions(t, st, last)
	victim := positions[1]
	ctx := context.Background()
	kv, err := subscriber.DedupeBucket(ctx, js, "stopped", 0)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	runs := map[uint64]int{}
	handler := func(stop func()) subscriber.Handler {
		return subscriber.NewDedupe(0, kv).Wrap(func(ctx context.Context, e events.Event) error {
			mu.Lock()
			runs[e.Position]++
			mu.Unlock()
			if e.Position == victim {
				stop() // the stop lands after the effect, before the mark
			}
			return nil
		})
	}
	cfg := subscriber.Config{Name: "stopped", MaxInFlight: 1, AckWait: time.Second}
	s1 := newSub(t, js, cfg)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- s1.Run(runCtx, handler(stop)) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the first run did not stop")
	}
	s2 := newSub(t, js, cfg)
	runSub(t, s2, handler(func() {}))
	waitFor(t, "the second run to reach the head", func() bool { return s2.Checkpoint() == last })
	mu.Lock()
	defer mu.Unlock()
	for _, p := range positions {
		if runs[p] != 1 {
			t.Errorf("position %d handled %d times through the dedupe helper, want 1", p, runs[p])
		}
	}
}

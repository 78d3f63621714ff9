package testkit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit"
)

// stallBound is the longest an append may take across a stream leader
// change on three nodes: an election takes well under a second here, and a
// batch lost in it is sent again at once (the leader-elected advisory) or
// after one second without an answer. Before, such a batch waited out the
// 10 s batch time-out.
const stallBound = 3 * time.Second

// TestAppendsDoNotStallAcrossStepdowns: 16 writers append through two
// stores while the stream leader is asked to step down six times; every
// append succeeds, none takes longer than stallBound, and every
// acknowledged event is stored exactly once.
func TestAppendsDoNotStallAcrossStepdowns(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	c := testkit.StartCluster(t, 3)
	stores := []*events.JetStreamStore{c.NewStore(t), c.NewStore(t)}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var (
		mu       sync.Mutex
		slowest  time.Duration
		failures []error
		acked    = map[events.AggregateRef]events.Appended{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			st := stores[w%len(stores)]
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				ref := events.AggregateRef{Context: "order", ID: fmt.Sprintf("w%02d-%05d", w, n)}
				began := time.Now()
				a, err := st.Append(ctx, events.Decision{Aggregate: ref, Events: []events.Event{testkit.NewEvent(ref, "placed")}})
				d := time.Since(began)
				mu.Lock()
				slowest = max(slowest, d)
				if err != nil {
					failures = append(failures, fmt.Errorf("%s after %s: %w", ref, d, err))
				} else {
					acked[ref] = a
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	for range 6 {
		time.Sleep(700 * time.Millisecond) // the writers' pace between faults, not a synchronisation
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := c.StepDownStreamLeader(sctx)
		scancel()
		if err != nil {
			t.Fatalf("stepdown: %v", err)
		}
	}
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()
	for _, err := range failures {
		t.Errorf("append failed: %v", err)
	}
	if slowest > stallBound {
		t.Errorf("the slowest append took %s across the stepdowns, want at most %s", slowest, stallBound)
	}
	if err := c.WaitStreamReady(ctx); err != nil {
		t.Fatal(err)
	}
	// Every acknowledged decision is stored once, where the store said.
	for ref, a := range acked {
		evs, err := stores[0].Load(ctx, ref, 0)
		if err != nil || len(evs) != 1 || evs[0].Position != a.FirstPosition {
			t.Errorf("%s acknowledged at %d: loaded %d events (%v)", ref, a.FirstPosition, len(evs), err)
		}
	}
	t.Logf("%d appends acknowledged, slowest %s; store 0: %+v", len(acked), slowest, stores[0].Stats())
}

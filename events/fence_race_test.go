package events_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketledger/ledger/events"
)

// TestFenceHoldsUnderConcurrentAppends races 32 writers of fenced decisions,
// each deciding under the policy position it last saw, against a policy
// event appended midway; no fenced event decided under an older position
// may be stored after it.
func TestFenceHoldsUnderConcurrentAppends(t *testing.T) {
	st, nc := startStore(t)
	// The policy event comes from another client, as it does when the
	// policy service runs in its own process: its batch and the writers'
	// batches are then in flight at the server at the same time.
	nc2, err := nats.Connect(nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	other, err := events.NewJetStreamStore(context.Background(), nc2, events.WithFence("policy"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var policyPos atomic.Uint64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				// Half the writers race on shared aggregates, so that batches
				// are refused for stale versions and split and resent: the
				// resent halves must still carry their decisions' fence.
				id, version := fmt.Sprintf("w%d-%d", w, i), uint64(0)
				if w%2 == 1 {
					id = fmt.Sprintf("shared-%d", i%4)
					if evs, err := st.Load(ctx, events.AggregateRef{Context: "order", ID: id}, 0); err == nil {
						version = uint64(len(evs))
					}
				}
				e := ev(id, "order.placed")
				e.PolicyPosition = policyPos.Load()
				_, err := st.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: id}, ExpectedVersion: version, Events: []events.Event{e}, Fence: true})
				if err != nil && !events.IsPolicyConflict(err) && events.KindOf(err) != events.KindConflict {
					t.Error(err)
					return
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // let the writers get going: the race is the point
	a, err := other.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "policy", ID: "f"}, Events: []events.Event{ev("f", "policy.freeze_imposed")}})
	if err != nil {
		t.Fatal(err)
	}
	policyPos.Store(a.LastPosition)
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	after := 0
	for e, err := range st.Read(ctx, events.Query{From: a.LastPosition + 1}) {
		if err != nil {
			t.Fatal(err)
		}
		after++
		if e.Type == "order.placed" && e.PolicyPosition < a.LastPosition {
			t.Errorf("event at %d decided under policy %d stored after the policy event at %d", e.Position, e.PolicyPosition, a.LastPosition)
		}
	}
	t.Logf("policy event at %d; %d events after it", a.LastPosition, after)
}

package testkit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit"
)

// TestReadSeesEveryAcknowledgedAppendOnCluster appends to an aggregate of its
// own and at once reads that aggregate's subject, while other writers keep
// the cluster busy. A read is served by a one-replica consumer that the
// server may place on a follower which has not yet applied the append; the
// read must not end before the position the leader acknowledged. The miss
// is rare (about 1 read in 300 on two cores), hence the many rounds.
func TestReadSeesEveryAcknowledgedAppendOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	const rounds = 300
	c := testkit.StartCluster(t, 3)
	st := c.NewStore(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	bg, stop := context.WithCancel(ctx)
	defer stop()
	for w := range 6 {
		go func() {
			for j := 0; bg.Err() == nil; j++ {
				ref := events.AggregateRef{Context: "order", ID: fmt.Sprintf("w%d-%d", w, j)}
				_, _ = st.Append(bg, events.Decision{Aggregate: ref, Events: []events.Event{event(ref, "order.placed")}})
			}
		}()
	}
	missed := 0
	for i := range rounds {
		ref := events.AggregateRef{Context: "payment", ID: fmt.Sprintf("p%d", i)}
		a, err := st.Append(ctx, events.Decision{Aggregate: ref, Events: []events.Event{event(ref, "payment.authorized")}})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for e, err := range st.Read(ctx, events.Query{Subjects: []string{ref.Subject()}}) {
			if err != nil {
				t.Fatal(err)
			}
			found = found || e.Position == a.LastPosition
		}
		if !found {
			missed++
		}
	}
	if missed > 0 {
		t.Errorf("%d of %d reads ended before the append acknowledged just before them", missed, rounds)
	}
}

func event(ref events.AggregateRef, typ string) events.Event {
	return events.Event{ID: events.NewID(), Type: typ, SchemaVersion: 1, Source: "/test", AggregateID: ref.ID,
		OccurredAt: time.Now(), Data: []byte(`{}`)}
}

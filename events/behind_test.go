package events_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/marketledger/ledger/events"
)

// TestSubscriptionSaysHowFarBehindItIs: each event a subscription delivers
// says how many matching events the log held after it (an operator's
// follower lag in events): events of other subjects do not count, and the
// last one says 0.
func TestSubscriptionSaysHowFarBehindItIs(t *testing.T) {
	st, _ := startStore(t)
	ctx := t.Context()
	for i, agg := range []string{"o1", "o2", "o3", "o4"} {
		d := events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: agg}, Events: []events.Event{ev(agg, "order.placed")}}
		if _, err := st.Append(ctx, d); err != nil {
			t.Fatal(err)
		}
		other := events.Decision{Aggregate: events.AggregateRef{Context: "listing", ID: agg}, Events: []events.Event{ev(agg, "listing.created")}}
		if _, err := st.Append(ctx, other); err != nil {
			t.Fatalf("listing %d: %v", i, err)
		}
	}
	var behind []uint64
	done := errors.New("done")
	err := st.Subscribe(ctx, events.Query{From: 1, Subjects: []string{events.SubjectPrefix + "order.>"}}, func(e events.Event) error {
		behind = append(behind, e.Behind)
		if len(behind) == 4 {
			return done
		}
		return nil
	})
	if !errors.Is(err, done) {
		t.Fatal(err)
	}
	if want := []uint64{3, 2, 1, 0}; !slices.Equal(behind, want) {
		t.Fatalf("behind = %v, want %v", behind, want)
	}
}

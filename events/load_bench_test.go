package events_test

import (
	"context"
	"testing"

	"github.com/marketledger/ledger/events"
)

// BenchmarkLoad measures loading a 5-event aggregate: the cost every command
// pays before deciding.
func BenchmarkLoad(b *testing.B) {
	st, _ := startStore(b)
	ctx := context.Background()
	ref := events.AggregateRef{Context: "order", ID: "load-1"}
	evs := []events.Event{ev("load-1", "order.placed"), ev("load-1", "order.confirmed"), ev("load-1", "order.shipped"), ev("load-1", "order.completed"), ev("load-1", "order.noted")}
	if _, err := st.Append(ctx, events.Decision{Aggregate: ref, Events: evs}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		got, err := st.Load(ctx, ref, 0)
		if err != nil || len(got) != 5 {
			b.Fatal(len(got), err)
		}
	}
}

package events_test

import (
	"context"
	"testing"

	"github.com/marketledger/ledger/events"
)

func TestFenceRefusesDecisionsMadeUnderAnOlderPolicy(t *testing.T) {
	st, _ := startStore(t)
	ctx := context.Background()
	order := func(id string, pos uint64) events.Decision {
		e := ev(id, "order.placed")
		e.PolicyPosition = pos
		return events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: id}, Events: []events.Event{e}, Fence: true}
	}
	if _, err := st.Append(ctx, order("o1", 0)); err != nil {
		t.Fatalf("fenced decision with no policy yet: %v", err)
	}
	pol, err := st.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "policy", ID: "freeze-1"},
		Events: []events.Event{ev("freeze-1", "policy.freeze_imposed")}})
	if err != nil {
		t.Fatal(err)
	}
	// A policy batch ends with its fence record, which is then the head.
	head, err := st.PolicyHead(ctx)
	if err != nil || head != pol.LastPosition+1 {
		t.Fatalf("PolicyHead = %d, %v; want the fence record at %d", head, err, pol.LastPosition+1)
	}
	_, err = st.Append(ctx, order("o2", 0))
	if !events.IsPolicyConflict(err) {
		t.Fatalf("decision under policy 0 after a policy event: got %v, want a policy conflict", err)
	}
	if evs, _ := st.Load(ctx, events.AggregateRef{Context: "order", ID: "o2"}, 0); len(evs) != 0 {
		t.Fatalf("refused decision left %d events", len(evs))
	}
	if _, err := st.Append(ctx, order("o2", head)); err != nil {
		t.Fatalf("decision under the current policy: %v", err)
	}
	// A made-up position ahead of the real one is refused too, and does not
	// poison later decisions made under the real position.
	if _, err := st.Append(ctx, order("o3", head+100)); !events.IsPolicyConflict(err) {
		t.Fatalf("decision under a future policy position: got %v", err)
	}
	if _, err := st.Append(ctx, order("o4", head)); err != nil {
		t.Fatalf("decision under the current policy after a bogus one: %v", err)
	}
	// Policy events themselves cannot be fenced.
	bad := events.Decision{Aggregate: events.AggregateRef{Context: "policy", ID: "freeze-2"},
		Events: []events.Event{ev("freeze-2", "policy.freeze_imposed")}, Fence: true}
	if _, err := st.Append(ctx, bad); events.KindOf(err) != events.KindInvalid {
		t.Fatalf("fenced policy decision: got %v, want invalid", err)
	}
}

package order

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/enforcement"
)

// refusals returns the enforcement records of the whole log, in order.
func (e *env) refusals(t testing.TB) []events.Event {
	t.Helper()
	var out []events.Event
	for ev, err := range e.store.Read(t.Context(), events.Query{From: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Context() == contracts.ServiceEnforcement {
			out = append(out, ev)
		}
	}
	return out
}

// TestFrozenPlacementIsOnRecord refuses a placement by a freeze and finds
// exactly one enforcement.command_refused record of it, with the rule, its
// kind and legal basis, the command, its aggregate, the buyer, the
// principal, the policy position and the command's correlation and
// causation ids; nothing of the order is appended. The same command sent
// again with the same key is refused again and adds no record.
func TestFrozenPlacementIsOnRecord(t *testing.T) {
	e := start(t)
	rec, err := enforcement.New(enforcement.Config{Store: e.store})
	if err != nil {
		t.Fatal(err)
	}
	e.runner.Refusals = rec
	e.createListing(t, listingCreated())
	e.appendEvent(t, contracts.ServicePolicy, "freeze-id-sc", contracts.FreezeImposed{RuleID: "freeze-id-sc",
		Scope:             contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{contracts.ChannelSocialCommerce}},
		BlockedOperations: contracts.FreezeOperations, EffectiveAt: freezeAt, LegalBasis: "Permendag 31/2023", Issuer: "Kemendag"})
	freezePos := e.head(t)
	// The service decides under the view's policy: let it apply the whole
	// freeze batch (the event and its fence record) first, so that the
	// record's policy position is the head's.
	if _, err := e.view.Snapshot(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	e.setNow(freezeAt)
	cmd := with(place(), func(c *contracts.PlaceOrder) { c.OrderID, c.IdempotencyKey = "o9", "place-o9" })
	ctx := command.WithPrincipal(command.WithCorrelationID(t.Context(), "flow-9"), "buyer:b1")
	wait := func() {
		t.Helper()
		wctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := rec.Wait(wctx); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := e.svc.Place(ctx, cmd); events.KindOf(err) != events.KindFrozen {
			t.Fatalf("placement during the freeze: %v, want a refusal by the freeze", err)
		}
		wait()
	}
	got := e.refusals(t)
	if len(got) != 1 {
		t.Fatalf("%d refusal records, want 1 (the same command refused twice)", len(got))
	}
	ev := got[0]
	p, err := contracts.Decode(ev.Type, ev.SchemaVersion, ev.Data)
	if err != nil {
		t.Fatal(err)
	}
	body := p.(contracts.CommandRefused)
	digest, _ := command.Digest(cmd)
	want := contracts.CommandRefused{RefusalID: contracts.RefusalID("order.place", "o9", "place-o9"), Command: contracts.OpOrderPlace,
		AggregateID: "o9", RuleID: "freeze-id-sc", RuleKind: contracts.RuleFreeze, LegalBasis: "Permendag 31/2023",
		Detail: body.Detail, Actor: "b1", Principal: "buyer:b1", IdempotencyKey: "place-o9", CommandDigest: digest,
		PolicyPosition: freezePos}
	if d := cmp.Diff(want, body); d != "" {
		t.Errorf("record (-want +got):\n%s", d)
	}
	if body.Detail == "" || ev.AggregateID != want.RefusalID || ev.Source != contracts.Source(contracts.ServiceEnforcement) {
		t.Errorf("record %s of %s from %s, detail %q", ev.AggregateID, ev.Type, ev.Source, body.Detail)
	}
	if ev.CorrelationID != "flow-9" || ev.CausationID == "" || ev.PolicyPosition != freezePos || !ev.OccurredAt.Equal(freezeAt) {
		t.Errorf("envelope: correlation %q causation %q policy position %d (want %d) occurred %s",
			ev.CorrelationID, ev.CausationID, ev.PolicyPosition, freezePos, ev.OccurredAt)
	}
	if evs, err := e.store.Load(t.Context(), events.AggregateRef{Context: contracts.ServiceOrder, ID: "o9"}, 0); err != nil || len(evs) != 0 {
		t.Errorf("the refused order has %d events (%v): nothing of it may be appended", len(evs), err)
	}
	if s := rec.Stats(); s.Recorded != 1 || s.Repeated != 1 || s.Failed+s.Limited+s.Dropped != 0 {
		t.Errorf("stats %+v, want one recorded and one repeat", s)
	}
}

package main

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
)

type fakeView struct {
	err    error
	breaks uint64
}

func (f *fakeView) Err() error     { return f.err }
func (f *fakeView) Breaks() uint64 { return f.breaks }

// TestPolicyViewReadiness checks that a policy view failed closed makes
// readiness fail with its reason and shows on the metrics, and that it is
// ready again once the view recovers.
func TestPolicyViewReadiness(t *testing.T) {
	a := &api{reg: newNamedRegistry()}
	v := &fakeView{}
	a.watchPolicyView(v)
	if err := a.ready(); err != nil {
		t.Fatalf("continuous view: ready error %v", err)
	}
	v.err, v.breaks = errors.New("policy log not continuous: record at 57 follows policy position 40 but the view last applied 38"), 1
	if err := a.ready(); err == nil || err.Error() != "policy view: "+v.err.Error() {
		t.Errorf("failed-closed view: ready error %v", err)
	}
	got := map[string]float64{}
	mfs, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	if got["ledger_policy_view_failed_closed"] != 1 || got["ledger_policy_view_gaps_total"] != 1 {
		t.Errorf("metrics %v, want failed_closed 1 and gaps_total 1", got)
	}
	v.err = nil
	if err := a.ready(); err != nil {
		t.Errorf("recovered view: ready error %v", err)
	}
}

// TestUnfencedCommandsServedWhileThePolicyViewIsClosed runs the four
// services on a log whose policy subject shows a gap (a policy batch's record
// counting policy messages the view never saw): placing an order, which a
// freeze can block, is refused as unavailable with the gap named, and
// readiness fails; cancelling an order, which no rule blocks, is served.
func TestUnfencedCommandsServedWhileThePolicyViewIsClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := openNode(ctx, &globals{dataDir: t.TempDir()}, nodeConfig{role: auth.RoleOperator, port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	st, err := newStack(ctx, n.storeOf(ctx), time.Now, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.listing.Create(ctx, contracts.CreateListing{ListingID: "l-1", SellerID: "seller-1", Title: "Rice cooker",
		Category: "home", Channel: contracts.ChannelMarketplace, Jurisdiction: "ID", Origin: contracts.OriginDomestic,
		Price: contracts.Money{AmountMinor: 150_000_00, Currency: "IDR"}, Stock: 10}); err != nil {
		t.Fatal(err)
	}
	place := func(id string) error {
		_, err := st.order.Place(ctx, contracts.PlaceOrder{OrderID: id, BuyerID: "buyer-1", ListingID: "l-1", Quantity: 1})
		return err
	}
	if err := place("o-1"); err != nil {
		t.Fatal(err)
	}
	head, err := n.store.PolicyHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := strconv.FormatUint(head, 10)
	if _, err := n.js.Publish(ctx, contracts.PolicyFenceRecordSubject, []byte(`{"policy_position":`+h+`,"previous_policy_position":`+h+
		`,"decisions":1,"policy_messages":2}`)); err != nil {
		t.Fatal(err)
	}
	for st.view.Err() == nil {
		if ctx.Err() != nil {
			t.Fatal("the policy view did not notice the gap")
		}
		time.Sleep(5 * time.Millisecond)
	}
	err = place("o-2")
	if events.KindOf(err) != events.KindUnavailable || !strings.Contains(err.Error(), "policy log not continuous") {
		t.Errorf("placing an order with the policy view closed: %v; want unavailable, naming the gap", err)
	}
	if _, err := st.order.Cancel(ctx, contracts.CancelOrder{OrderID: "o-1", Reason: "buyer changed their mind"}); err != nil {
		t.Errorf("cancelling an order with the policy view closed: %v; want it served", err)
	}
	a := &api{reg: newNamedRegistry()}
	a.watchPolicyView(st.view)
	if err := a.ready(); err == nil || !strings.Contains(err.Error(), "policy log not continuous") {
		t.Errorf("readiness with the policy view closed: %v", err)
	}
}

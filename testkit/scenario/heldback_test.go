package scenario

import (
	"context"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/policyview"
	"github.com/marketledger/ledger/testkit"
)

// heldBack makes an in-scope order decision a moment before a scheduled
// freeze's instant E, under a policy view that knows the freeze but not its
// activation, and holds it back between the decision and its append (as a
// leader election, a full committer or a resend would) until the instance's
// activator has stored the activation at E. fault, if set, runs 1.5 s
// before E while the decision is held. The store must refuse the decision
// by its fence, and the runner's second decision, under the activation,
// must be refused by the rule by position: the deciding clock still reads
// 1.5 s before E, outside any guard before the instant.
func heldBack(t *testing.T, in *Instance, name string, fault func(context.Context) error) {
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	rule, category := "held-"+name, "cat-held-"+name
	e := time.Now().Add(2500 * time.Millisecond).Round(0)
	pos, _, err := ImposeFreeze(ctx, in, Freeze(rule, category, e))
	if err != nil {
		t.Fatalf("impose: %v", err)
	}
	// The decision must be made under a view that knows the freeze: the
	// runner decides first on the view as it is, without reading the head.
	if err := Await(ctx, 30*time.Second, "the freeze in the view", func() bool { return in.View.Position() >= pos }); err != nil {
		t.Fatal(err)
	}
	tradeClock := func() time.Time { return e.Add(-1500 * time.Millisecond) }
	runner := &command.Runner{Store: in.Store, Codec: contracts.Codec{}, Source: contracts.Source(contracts.ServiceOrder), Clock: tradeClock}
	agg := command.Aggregate[int]{Context: contracts.ServiceOrder, Initial: func(string) int { return 0 },
		Evolve: func(s int, _ any) int { return s + 1 }}
	target := contracts.Target{Jurisdiction: "ID", Channel: contracts.ChannelSocialCommerce, Category: category, SellerID: "s1",
		Origin: contracts.OriginDomestic}
	price := IDR(100_000)
	decided, release := make(chan uint64, 1), make(chan struct{})
	attempts := 0
	done := make(chan error, 1)
	order := "o-" + rule
	go func() {
		_, err := command.Run(ctx, runner, agg, order, command.Meta{CommandID: events.NewID(), Command: "place " + order}, in.View.Snapshot,
			func(_ int, rules policyview.Rules, now time.Time) ([]any, error) {
				attempts++
				if err := rules.Check(contracts.OpOrderPlace, target, price, now); err != nil {
					return nil, err
				}
				if attempts == 1 {
					decided <- rules.Position
					<-release
				}
				return []any{contracts.OrderPlaced{OrderID: order, BuyerID: "b1", ListingID: "l1", SellerID: target.SellerID, Quantity: 1,
					UnitPrice: price, Total: price, Channel: target.Channel, Jurisdiction: target.Jurisdiction, Category: category,
					Origin: target.Origin}}, nil
			})
		done <- err
	}()
	select {
	case under := <-decided:
		if under < pos {
			t.Fatalf("decided under policy %d, before the freeze at %d", under, pos)
		}
	case <-ctx.Done():
		t.Fatal("no decision")
	}
	if fault != nil {
		time.Sleep(time.Until(e.Add(-1500 * time.Millisecond)))
		if err := fault(ctx); err != nil {
			t.Fatalf("fault: %v", err)
		}
	}
	var activated uint64
	if err := Await(ctx, 30*time.Second, "the freeze's activation in the view", func() bool {
		r, _ := in.View.Rules().Timeline.Find(rule)
		activated = r.ActivationPosition
		return activated != 0
	}); err != nil {
		t.Fatal(err)
	}
	conflicts := in.Store.Stats().PolicyConflicts
	close(release)
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatal("the held-back decision never returned")
	}
	if r, ok := policyview.RefusalOf(err); events.KindOf(err) != events.KindFrozen || !ok || r.RuleID != rule {
		t.Fatalf("held-back decision: %v; want refused by %s", err, rule)
	}
	if attempts < 2 || in.Store.Stats().PolicyConflicts == conflicts {
		t.Errorf("decided %d times, %d fence refusals: want the first decision refused by the fence", attempts,
			in.Store.Stats().PolicyConflicts-conflicts)
	}
	evs, err := in.Store.Load(ctx, events.AggregateRef{Context: contracts.ServiceOrder, ID: order}, 0)
	if err != nil || len(evs) != 0 {
		t.Errorf("order events stored: %v, %v", evs, err)
	}
	t.Logf("freeze at %d scheduled %s, activated at %d; the held-back decision was refused by the fence, then by the rule",
		pos, e.Format(time.RFC3339Nano), activated)
}

// TestHeldBackDecisionRefusedAfterActivation: one node.
func TestHeldBackDecisionRefusedAfterActivation(t *testing.T) {
	heldBack(t, nodeInstances(t, 1)[0], "sn", nil)
}

// TestHeldBackDecisionRefusedAfterActivationOnCluster: three nodes, the
// stream leader stepping down 1.5 s before the instant while the decision
// is held.
func TestHeldBackDecisionRefusedAfterActivationOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	c := testkit.StartCluster(t, 3)
	ins := clusterInstances(t, c, 2)
	heldBack(t, ins[0], "cl", func(ctx context.Context) error {
		old := c.StreamLeader()
		leader, err := c.StepDownStreamLeader(ctx)
		t.Logf("stream leader %s stepped down, %s leads", old, leader)
		return err
	})
}

package scenario

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit"
)

// runTimeout bounds one seeded run; a run that needs longer is stuck. It
// outlasts the checkout deadline, so that a slow order ends with the
// checkout's outcome, not the test's time-out.
const runTimeout = checkoutDeadline + time.Minute

// typeChecked is the store option every scenario store uses, as `ledger
// serve` does: an event the contracts do not know is refused.
var typeChecked = events.WithTypeChecker(contracts.Checker{})

// nodeInstances starts one embedded node and n service instances on it,
// each on its own connection and store, and the checkout on their log.
func nodeInstances(t *testing.T, n int) []*Instance {
	t.Helper()
	node := testkit.StartNode(t, testkit.WithStoreOptions(typeChecked))
	ins := []*Instance{NewInstance(t, "i0", node.Store)}
	for i := 1; i < n; i++ {
		ins = append(ins, NewInstance(t, fmt.Sprintf("i%d", i), node.NewStore(t)))
	}
	NewCheckout(t, ins)
	return ins
}

// storeOpener is a cluster that opens a store on a connection of its own:
// embedded nodes (testkit.Cluster) or processes (testkit.ProcCluster).
type storeOpener interface {
	NewStore(t testing.TB, opts ...events.Option) *events.JetStreamStore
}

// clusterInstances opens n service instances on c, each on its own
// connection (to a node the client picks at random) and store, and the
// checkout on their log.
func clusterInstances(t *testing.T, c storeOpener, n int) []*Instance {
	t.Helper()
	var ins []*Instance
	for i := range n {
		ins = append(ins, NewInstance(t, fmt.Sprintf("cluster-i%d", i), c.NewStore(t, typeChecked)))
	}
	NewCheckout(t, ins)
	return ins
}

func runID(seed uint64) string { return fmt.Sprintf("r%06x", seed&0xffffff) }

// immediateFreeze runs 32 checkout loops (and 4 out-of-scope control
// loops) across ins, appends a freeze effective at once after a random
// number of accepted checkouts, and keeps the loops running until each has
// been refused about twice. fault, if set, runs at the same moment as the
// freeze's append (a stream leader stepdown).
func immediateFreeze(t *testing.T, seed uint64, ins []*Instance, fault func(context.Context) error) {
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	rng := rand.New(rand.NewPCG(seed, 0))
	run := runID(seed)
	load := &Load{RunID: run, Category: "cat-" + run, Instances: ins, Loops: 32, Control: 4, Seed: seed}
	if err := CreateListings(ctx, ins[0], load.Listings()...); err != nil {
		t.Fatal(err)
	}
	before := int64(1 + rng.IntN(40))
	reached := load.Accepted(before)
	stop := load.Run(ctx)
	defer stop()
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatalf("fewer than %d checkouts accepted before the run's deadline: %v", before, load.Errs)
	}
	// A random moment within a checkout's duration, so that the freeze
	// lands on every step of some checkout across the seeds.
	time.Sleep(time.Duration(rng.IntN(20_000)) * time.Microsecond)
	rule := "freeze-" + run
	faulted := make(chan error, 1)
	if fault != nil {
		go func() { faulted <- fault(ctx) }()
	}
	asked := time.Now()
	_, acked, err := ImposeFreeze(ctx, ins[rng.IntN(len(ins))], Freeze(rule, load.Category, time.Time{}))
	if err != nil {
		t.Fatalf("impose freeze: %v", err)
	}
	load.Cut.Store(&acked)
	t.Logf("freeze acknowledged %s after it was asked for", acked.Sub(asked))
	if fault != nil {
		if err := <-faulted; err != nil {
			t.Fatalf("fault: %v", err)
		}
	}
	if err := Await(ctx, 2*time.Minute, "64 refusals and 4 control checkouts after the freeze", func() bool {
		return load.RefusedAfter() >= 64 && load.ControlAfter() >= 4
	}); err != nil {
		t.Errorf("%v (refused %d, control %d, errors %v)", err, load.RefusedAfter(), load.ControlAfter(), load.Errs)
	}
	stop()
	for _, err := range load.Errs {
		t.Errorf("checkout loop: %v", err)
	}
	for _, v := range load.Judge(acked, time.Time{}) {
		t.Error(v)
	}
	lg := JudgeLog(t, ctx, ins[0].Store, rule)
	judgeRaw(t, ctx, ins[0].Store)
	JudgeCheckouts(t, ctx, ins[0].Checkouts)
	if n := refusalRecords(t, ctx, ins, rule); n == 0 {
		t.Errorf("%d checkout steps refused after the freeze, none on record", load.RefusedAfter())
	}
	f := lg.Freezes[rule]
	captured := 0
	for _, x := range lg.InScope(f) {
		if x.Operation == contracts.OpPaymentCapture {
			captured++
		}
	}
	if captured == 0 {
		t.Errorf("no in-scope checkout was captured before the freeze")
	}
	t.Logf("seed %d: %d checkouts, %d in-scope captures before the freeze (waited for %d accepted), %d blocked steps refused after it",
		seed, len(load.Checkouts), captured, before, load.RefusedAfter())
}

// TestFreezeNowUnderConcurrentCheckouts: a freeze effective at once,
// appended at a random moment while 32 loops check out across three
// service instances on one node, is honoured from its acknowledgement on,
// and the log alone shows zero violations.
func TestFreezeNowUnderConcurrentCheckouts(t *testing.T) {
	ForSeeds(t, 3, func(t *testing.T, seed uint64) {
		immediateFreeze(t, seed, nodeInstances(t, 3), nil)
	})
}

// TestFreezeScheduledAhead: a freeze appended now and effective 2 to 2.5
// seconds later lets in-scope trade go on until its instant and none after,
// by decision time and by the server's recorded time.
func TestFreezeScheduledAhead(t *testing.T) {
	ForSeeds(t, 2, func(t *testing.T, seed uint64) {
		scheduledFreeze(t, seed, nodeInstances(t, 3), nil, 0)
	})
}

// scheduleLeadMin is how long before its instant a scheduled freeze's
// append must be acknowledged for the loops to be expected to trade in
// scope in between.
const scheduleLeadMin = 500 * time.Millisecond

// scheduledFreeze runs the checkout loops across ins, appends a freeze
// effective 2 to 2.5 seconds ahead, and judges the loops and the log
// against its instant. fault, if set, runs faultBefore ahead of the
// instant (0: at the instant itself).
func scheduledFreeze(t *testing.T, seed uint64, ins []*Instance, fault func(context.Context) error, faultBefore time.Duration) {
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	rng := rand.New(rand.NewPCG(seed, 0))
	run := runID(seed)
	load := &Load{RunID: run, Category: "cat-" + run, Instances: ins, Loops: 32, Control: 4, Seed: seed}
	if err := CreateListings(ctx, ins[0], load.Listings()...); err != nil {
		t.Fatal(err)
	}
	reached := load.Accepted(int64(1 + rng.IntN(8)))
	stop := load.Run(ctx)
	defer stop()
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatalf("no checkout accepted before the run's deadline: %v", load.Errs)
	}
	instant := time.Now().Add(2*time.Second + time.Duration(rng.IntN(500))*time.Millisecond).Round(0)
	load.Cut.Store(&instant)
	rule := "freeze-" + run
	_, acked, err := ImposeFreeze(ctx, ins[rng.IntN(len(ins))], Freeze(rule, load.Category, instant))
	if err != nil {
		t.Fatalf("impose freeze: %v", err)
	}
	// A freeze stored after its instant (its append took longer than the
	// 2 s ahead, on a busy machine) binds from its storage: no service can
	// refuse by a rule the log does not hold yet. The log's judges see the
	// same; the buyers' judge cuts at the later of the two.
	cut := instant
	if acked.After(cut) {
		t.Logf("freeze stored %s after its instant", acked.Sub(instant))
		cut = acked
	}
	if fault != nil {
		time.Sleep(time.Until(instant.Add(-faultBefore))) // the fault belongs to a wall-clock instant
		if err := fault(ctx); err != nil {
			t.Fatalf("fault: %v", err)
		}
	}
	if err := Await(ctx, 2*time.Minute, "64 refusals and 4 control checkouts after the instant", func() bool {
		return load.RefusedAfter() >= 64 && load.ControlAfter() >= 4
	}); err != nil {
		t.Errorf("%v (refused %d, control %d, errors %v)", err, load.RefusedAfter(), load.ControlAfter(), load.Errs)
	}
	stop()
	// The services refuse by the clock rule from the instant; the
	// activation lands when its append does, which a leader election can
	// hold back for one batch time-out. Judge the log once it is there.
	if err := Await(ctx, 30*time.Second, "the freeze's activation in the log", func() bool {
		evs, err := ins[0].Store.Load(ctx, events.AggregateRef{Context: "policy", ID: rule}, 0)
		return err == nil && slices.ContainsFunc(evs, func(e events.Event) bool { return e.Type == "policy.rule_activated" })
	}); err != nil {
		t.Error(err)
	}
	for _, err := range load.Errs {
		t.Errorf("checkout loop: %v", err)
	}
	for _, v := range load.Judge(cut, instant) {
		t.Error(v)
	}
	lg := JudgeLog(t, ctx, ins[0].Store, rule)
	judgeRaw(t, ctx, ins[0].Store)
	JudgeCheckouts(t, ctx, ins[0].Checkouts)
	if n := refusalRecords(t, ctx, ins, rule); n == 0 {
		t.Errorf("%d checkout steps refused after the freeze, none on record", load.RefusedAfter())
	}
	f := lg.Freezes[rule]
	if !f.Scheduled.Equal(instant) || f.ActivationPosition == 0 || f.InForce.Before(instant) {
		t.Errorf("freeze scheduled at %s activated at %d recorded %s, want scheduled at %s and activated at or after it",
			f.Scheduled, f.ActivationPosition, f.InForce, instant)
	}
	var after int
	var lastAt time.Time
	for _, x := range lg.InScope(f) {
		if x.Position > f.Position && x.Position < f.ActivationPosition {
			after++
		}
		if x.OccurredAt.After(lastAt) {
			lastAt = x.OccurredAt
		}
	}
	// The loops trade in scope until the instant; a freeze whose append was
	// acknowledged less than a moment before its instant (a busy machine
	// took the 2 s ahead for the append) leaves them no time to, and says
	// nothing about the schedule either way.
	switch lead := instant.Sub(acked); {
	case after == 0 && lead >= scheduleLeadMin:
		t.Errorf("no in-scope trade between the freeze's append and its instant (%s apart): the schedule was not exercised", lead)
	case after == 0:
		t.Logf("the freeze's append was acknowledged %s before its instant: too late for trade in between", lead)
	}
	t.Logf("seed %d: %d in-scope transactions after the freeze's append, the last %s before its instant, %d refused after",
		seed, after, instant.Sub(lastAt), load.RefusedAfter())
}

// TestFreezeNowOnClusterWithStepdown: the same as
// TestFreezeNowUnderConcurrentCheckouts on a three-node cluster, with the
// stream leader asked to step down at the moment the freeze is appended,
// and instances connected to different nodes; then a scheduled freeze with
// a stepdown at its instant, and the hundred buyers.
func TestFreezeNowOnClusterWithStepdown(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	c := testkit.StartCluster(t, 3)
	ins := clusterInstances(t, c, 3)
	ForSeeds(t, 2, func(t *testing.T, seed uint64) {
		immediateFreeze(t, seed, ins, func(ctx context.Context) error {
			old := c.StreamLeader()
			leader, err := c.StepDownStreamLeader(ctx)
			t.Logf("stream leader %s stepped down, %s leads", old, leader)
			return err
		})
	})
	stepdown := func(ctx context.Context) error {
		old := c.StreamLeader()
		leader, err := c.StepDownStreamLeader(ctx)
		t.Logf("stream leader %s stepped down, %s leads", old, leader)
		return err
	}
	t.Run("scheduled", func(t *testing.T) {
		ForSeeds(t, 1, func(t *testing.T, seed uint64) { scheduledFreeze(t, seed, ins, stepdown, 0) })
	})
	// A leader election 1.5 s before the instant: decisions made just
	// before it are queued behind the election and may be stored after the
	// instant; those stored after the activation must fail their fence and
	// be refused (ADR 0004).
	t.Run("scheduled-stepdown-before", func(t *testing.T) {
		ForSeeds(t, 1, func(t *testing.T, seed uint64) { scheduledFreeze(t, seed, ins, stepdown, 1500*time.Millisecond) })
	})
	t.Run("hundred-buyers", func(t *testing.T) { hundredBuyers(t, ins, "cl") })
}

// TestHundredBuyersStockTen: 100 concurrent buyers of one listing with
// stock 10, across three instances on one node, give exactly 10 confirmed
// orders and stock 0.
func TestHundredBuyersStockTen(t *testing.T) {
	hundredBuyers(t, nodeInstances(t, 3), "sn")
}

func hundredBuyers(t *testing.T, ins []*Instance, run string) {
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	lst := ListingSpec{ID: run + "-hot", Seller: "seller-hot", Category: "hot-" + run, Channel: contracts.ChannelMarketplace,
		Price: 99_000 * 100, Stock: 10}
	if err := CreateListings(ctx, ins[0], lst); err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	done := make(chan *Checkout, 100)
	errs := make(chan error, 100)
	for i := range 100 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			c := &Checkout{OrderID: fmt.Sprintf("%s-buyer-%03d", run, i), BuyerID: fmt.Sprintf("buyer-%03d", i),
				ListingID: lst.ID, Quantity: 1, Pick: func(string) *Instance { return ins[rng.IntN(len(ins))] }}
			<-start
			if err := c.Run(ctx); err != nil {
				errs <- err
				return
			}
			done <- c
		}()
	}
	close(start)
	var accepted, outOfStock int
	var confirmed []string
	for range 100 {
		select {
		case err := <-errs:
			t.Error(err)
		case c := <-done:
			switch c.Outcome {
			case Accepted:
				accepted++
				confirmed = append(confirmed, c.OrderID)
			case OutOfStock:
				outOfStock++
			default:
				t.Errorf("%s ended %s", c.OrderID, c.Outcome)
			}
		}
	}
	lg, err := ReadLog(ctx, ins[0].Store)
	if err != nil {
		t.Fatal(err)
	}
	judgeRaw(t, ctx, ins[0].Store)
	JudgeCheckouts(t, ctx, ins[0].Checkouts)
	var logged int
	for i := range 100 {
		if lg.Has(fmt.Sprintf("%s-buyer-%03d", run, i), "order.confirmed") {
			logged++
		}
	}
	if accepted != 10 || outOfStock != 90 || logged != 10 || lg.Stock[lst.ID] != 0 {
		t.Errorf("accepted %d, out of stock %d, confirmed in the log %d, stock %d; want 10, 90, 10, 0",
			accepted, outOfStock, logged, lg.Stock[lst.ID])
	}
	for _, id := range confirmed {
		if !lg.Has(id, "payment.captured") {
			t.Errorf("confirmed order %s has no captured payment", id)
		}
	}
}

// refusalRecords waits for the instances' refusal records in flight and
// returns how many enforcement.command_refused records name rule; each
// must name a blockable command and its legal basis.
func refusalRecords(t *testing.T, ctx context.Context, ins []*Instance, rule string) int {
	t.Helper()
	for _, in := range ins {
		if err := in.Refusals.Wait(ctx); err != nil {
			t.Fatalf("%s: refusal records: %v", in.Name, err)
		}
	}
	n := 0
	for e, err := range ins[0].Store.Read(ctx, events.Query{Subjects: []string{"ledger.enforcement.>"}}) {
		if err != nil {
			t.Fatal(err)
		}
		p, err := contracts.Decode(e.Type, e.SchemaVersion, e.Data)
		if err != nil {
			t.Fatal(err)
		}
		r := p.(contracts.CommandRefused)
		if r.RuleID != rule {
			continue
		}
		n++
		if !slices.Contains(contracts.Operations, r.Command) || r.LegalBasis != LegalBasis || e.PolicyPosition == 0 {
			t.Errorf("refusal record at %d: %+v", e.Position, r)
		}
	}
	return n
}

package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/nodetest"
	"github.com/marketledger/ledger/runtime/policyview"
)

func startStore(t testing.TB) (*events.JetStreamStore, *nats.Conn) {
	t.Helper()
	l := nodetest.Start(t, events.WithTypeChecker(contracts.Checker{}), contracts.Fence())
	return l.Store, l.Conn
}

func serve(t *testing.T) (*events.JetStreamStore, *nats.Conn, *Service) {
	t.Helper()
	st, nc := startStore(t)
	svc, err := New(Config{Store: st, Authorizer: StaticRoles{"kemendag": {RolePolicyIssuer}, "intern": {"viewer"}}})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := svc.Serve(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Stop() })
	return st, nc, svc
}

// call sends a request over NATS and decodes the reply into out, or
// returns the problem.
func call(t testing.TB, nc *nats.Conn, verb string, body, out any) *Problem {
	t.Helper()
	b, ok := body.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	msg, err := nc.Request(SubjectPrefix+"."+verb, b, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", verb, err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		var p Problem
		if err := json.Unmarshal(msg.Data, &p); err != nil || fmt.Sprint(p.Status) != code {
			t.Fatalf("%s: problem %q with code %s: %v", verb, msg.Data, code, err)
		}
		return &p
	}
	if err := json.Unmarshal(msg.Data, out); err != nil {
		t.Fatalf("%s: reply %q: %v", verb, msg.Data, err)
	}
	return nil
}

func freezeCmd(id string) contracts.ImposeFreeze {
	return contracts.ImposeFreeze{RuleID: id, Scope: socialID, LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}
}

// TestFreezeLifecycleOverNATS imposes, lists, lifts and lists again, and
// checks that a service's policy view sees each step.
func TestFreezeLifecycleOverNATS(t *testing.T) {
	st, nc, _ := serve(t)
	ctx := context.Background()
	view, err := policyview.Start(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()

	var r Reply
	if p := call(t, nc, "impose_freeze", freezeCmd("r1"), &r); p != nil {
		t.Fatalf("impose: %+v", *p)
	}
	if r.Version != 1 || len(r.Events) != 1 || r.Events[0].Type != "policy.freeze_imposed" {
		t.Errorf("impose reply: %+v", r)
	}
	// The view is at the policy head: the fence record that closes the
	// freeze's batch, just after the freeze.
	snap, err := view.Snapshot(ctx, true)
	head, herr := st.PolicyHead(ctx)
	if err != nil || herr != nil || snap.Position != head || head <= r.Events[0].Position || len(snap.Rules.Timeline) != 1 {
		t.Errorf("view after impose at %d (head %d, %v): %+v, %v", r.Events[0].Position, head, herr, snap, err)
	}
	var l Listing
	if p := call(t, nc, "list", nil, &l); p != nil || len(l.Rules) != 1 || !l.Rules[0].InForce {
		t.Errorf("list after impose: %+v, %+v", l, p)
	}
	beforeLift := time.Now()
	time.Sleep(5 * time.Millisecond)
	if p := call(t, nc, "lift_freeze", contracts.LiftFreeze{RuleID: "r1", LegalBasis: "served again", Issuer: "kemendag"}, &r); p != nil {
		t.Fatalf("lift: %+v", *p)
	}
	if p := call(t, nc, "list", nil, &l); p != nil || len(l.Rules) != 1 || l.Rules[0].InForce || l.Rules[0].LiftedAt.IsZero() {
		t.Errorf("list after lift: %+v, %+v", l, p)
	}
	l = Listing{} // json.Unmarshal would keep fields the reply omits
	if p := call(t, nc, "list", ListRequest{AsOf: beforeLift}, &l); p != nil || len(l.Rules) != 1 || !l.Rules[0].InForce || !l.Rules[0].LiftedAt.IsZero() {
		t.Errorf("list as of before the lift: %+v, %+v", l, p)
	}
	l = Listing{}
	if p := call(t, nc, "list", ListRequest{AsOf: time.Now().Add(-time.Hour)}, &l); p != nil || len(l.Rules) != 0 {
		t.Errorf("list as of an hour ago: %+v, %+v", l, p)
	}
}

func TestFloorPriceOverNATS(t *testing.T) {
	_, nc, _ := serve(t)
	var r Reply
	if p := call(t, nc, "set_floor_price", setFloor(), &r); p != nil {
		t.Fatalf("set: %+v", *p)
	}
	if r.Rule.Floor == nil || r.Rule.Floor.AmountMinor != 10_000 {
		t.Errorf("set reply: %+v", r)
	}
	if p := call(t, nc, "lift_floor_price", contracts.LiftFloorPrice{RuleID: "r1", LegalBasis: "x", Issuer: "kemendag"}, &r); p != nil {
		t.Fatalf("lift: %+v", *p)
	}
}

// TestBadInputAppendsNothing sends refused commands: each gets a clear
// problem naming field and rule, and the stream does not move.
func TestBadInputAppendsNothing(t *testing.T) {
	st, nc, _ := serve(t)
	var r Reply
	if p := call(t, nc, "impose_freeze", freezeCmd("r1"), &r); p != nil {
		t.Fatalf("impose: %+v", *p)
	}
	ctx := context.Background()
	before, err := st.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(*contracts.ImposeFreeze)) contracts.ImposeFreeze {
		c := freezeCmd("r2")
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name, verb string
		body       any
		status     int
		field      string
	}{
		{"no scope", "impose_freeze", edit(func(c *contracts.ImposeFreeze) { c.Scope = contracts.Scope{} }), 400, "/scope"},
		{"unknown operation", "impose_freeze", []byte(`{"rule_id":"r2","scope":{"all":true},"blocked_operations":["payment.refund"],"legal_basis":"x","issuer":"kemendag"}`), 400, "/blocked_operations/0"},
		{"unknown jurisdiction", "impose_freeze", edit(func(c *contracts.ImposeFreeze) { c.Scope.Jurisdictions = []string{"XX"} }), 400, "/scope/jurisdictions/0"},
		{"past", "impose_freeze", edit(func(c *contracts.ImposeFreeze) { c.EffectiveAt = time.Now().Add(-time.Minute) }), 422, "/effective_at"},
		{"no legal basis", "impose_freeze", edit(func(c *contracts.ImposeFreeze) { c.LegalBasis = "" }), 400, "/legal_basis"},
		{"issuer without role", "impose_freeze", edit(func(c *contracts.ImposeFreeze) { c.Issuer = "intern" }), 403, "/issuer"},
		{"unknown issuer", "impose_freeze", edit(func(c *contracts.ImposeFreeze) { c.Issuer = "nobody" }), 403, "/issuer"},
		{"same rule again", "impose_freeze", freezeCmd("r1"), 409, "/rule_id"},
		{"lift unknown", "lift_freeze", contracts.LiftFreeze{RuleID: "r9", LegalBasis: "x", Issuer: "kemendag"}, 404, "/rule_id"},
		{"lift a freeze as floor", "lift_floor_price", contracts.LiftFloorPrice{RuleID: "r1", LegalBasis: "x", Issuer: "kemendag"}, 404, "/rule_id"},
		{"floor overflow", "set_floor_price", []byte(`{"rule_id":"f1","scope":{},"amount":{"amount_minor":9223372036854775808,"currency":"USD"},"legal_basis":"x","issuer":"kemendag"}`), 400, "/amount/amount_minor"},
		{"list bad as_of", "list", []byte(`{"as_of":"yesterday"}`), 400, "/as_of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out json.RawMessage
			p := call(t, nc, tc.verb, tc.body, &out)
			if p == nil {
				t.Fatalf("accepted: %s", out)
			}
			if p.Status != tc.status || p.Field != tc.field || p.Rule == "" {
				t.Errorf("got %d at %q (%s), want %d at %q", p.Status, p.Field, p.Detail, tc.status, tc.field)
			}
		})
	}
	after, err := st.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("refused commands moved the stream from %d to %d", before, after)
	}
}

// TestImposeFreezeNowRepliesInForce checks that an effective-now freeze is
// answered in force from its own position, and that the stored event says
// it takes effect on its recording.
func TestImposeFreezeNowRepliesInForce(t *testing.T) {
	st, nc, _ := serve(t)
	var r Reply
	if p := call(t, nc, "impose_freeze", freezeCmd("r1"), &r); p != nil {
		t.Fatalf("impose: %+v", *p)
	}
	if !r.Rule.InForce || r.Rule.ActivationPosition != r.Events[0].Position || r.Rule.ActivationPosition == 0 {
		t.Errorf("reply: in_force %v from %d, want true from %d", r.Rule.InForce, r.Rule.ActivationPosition, r.Events[0].Position)
	}
	evs, err := st.Load(context.Background(), events.AggregateRef{Context: contracts.ServicePolicy, ID: "r1"}, 0)
	if err != nil || len(evs) != 1 {
		t.Fatalf("load: %v, %v", evs, err)
	}
	p, _ := contracts.Decode(evs[0].Type, evs[0].SchemaVersion, evs[0].Data)
	if got := p.(contracts.FreezeImposed).Activation; got != contracts.ActivationOnRecording {
		t.Errorf("stored activation %q, want on_recording", got)
	}
}

// fakeClock is an injected clock the test moves.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time   { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Set(t time.Time)  { c.ns.Store(t.UnixNano()) }
func newClock(t time.Time) *fakeClock { c := &fakeClock{}; c.Set(t); return c }

// TestActivatorExactlyOnce schedules a freeze and a lift and runs the
// activator of three policy instances on one injected clock: nothing is
// appended before the instant, exactly one activation at it.
func TestActivatorExactlyOnce(t *testing.T) {
	st, _ := startStore(t)
	ctx := context.Background()
	clock := newClock(t0)
	var svcs []*Service
	for range 3 {
		svc, err := New(Config{Store: st, Clock: clock.Now, Authorizer: StaticRoles{"kemendag": {RolePolicyIssuer}}})
		if err != nil {
			t.Fatal(err)
		}
		svcs = append(svcs, svc)
	}
	e := t0.Add(time.Hour)
	c := freezeCmd("r1")
	c.EffectiveAt = e
	res, err := svcs[0].ImposeFreeze(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if rep := NewReply(res); rep.Rule.InForce || !rep.Rule.ScheduledAt.Equal(e) {
		t.Errorf("scheduled freeze reply: %+v", rep.Rule)
	}
	run := func() int {
		var wg sync.WaitGroup
		var total atomic.Int64
		for _, svc := range svcs {
			wg.Go(func() {
				res, err := svc.ActivateDue(ctx)
				if err != nil {
					t.Error(err)
				}
				for _, r := range res {
					total.Add(int64(len(r.Events)))
				}
			})
		}
		wg.Wait()
		return int(total.Load())
	}
	clock.Set(e.Add(-time.Nanosecond))
	if n := run(); n != 0 {
		t.Errorf("activations before the instant: %d", n)
	}
	clock.Set(e)
	if n := run(); n != 1 {
		t.Errorf("activations at the instant: %d, want 1", n)
	}
	if n := run(); n != 0 {
		t.Errorf("activations again: %d", n)
	}
	l, err := svcs[1].List(ctx, time.Now())
	if err != nil || len(l.Rules) != 1 || !l.Rules[0].InForce || l.Rules[0].ActivationPosition == 0 {
		t.Errorf("list after activation: %+v, %v", l, err)
	}
	evs, _ := st.Load(ctx, events.AggregateRef{Context: contracts.ServicePolicy, ID: "r1"}, 0)
	if len(evs) != 2 || evs[1].Type != "policy.rule_activated" || !evs[1].OccurredAt.Equal(e) {
		t.Errorf("events: %+v", evs)
	}
}

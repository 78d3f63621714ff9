package listing

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/nodetest"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/policyview"
	"github.com/marketledger/ledger/runtime/service"
)

// env is one embedded JetStream node with the listing service on it.
type env struct {
	store *events.JetStreamStore
	nc    *nats.Conn
	svc   *Service
	view  *policyview.View
	now   atomic.Pointer[time.Time]
}

func start(t testing.TB) *env {
	t.Helper()
	l := nodetest.Start(t, events.WithTypeChecker(contracts.Checker{}), contracts.Fence())
	st, nc := l.Store, l.Conn
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	view, err := policyview.Start(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(view.Close)
	e := &env{store: st, nc: nc, view: view}
	e.setNow(beforeNoon)
	r := &command.Runner{Store: st, Codec: contracts.Codec{}, Source: contracts.Source(contracts.ServiceListing),
		Clock: func() time.Time { return *e.now.Load() }}
	e.svc = New(r, view.Snapshot)
	return e
}

func (e *env) setNow(t time.Time) { e.now.Store(&t) }

// testPrefix keeps requests out of the LEDGER stream, which captures
// "ledger.>" (see WithSubjectPrefix).
const testPrefix = "svc.ledger.listing"

// appendPolicy stores a policy event as the policy service would.
func (e *env) appendPolicy(t testing.TB, id string, payload any) {
	t.Helper()
	typ, v, data, err := contracts.Encode(payload)
	if err != nil {
		t.Fatal(err)
	}
	ev := events.Event{ID: events.NewID(), Type: typ, SchemaVersion: v, Source: contracts.Source(contracts.ServicePolicy),
		AggregateID: id, OccurredAt: *e.now.Load(), Data: data}
	if _, err := e.store.Append(context.Background(), events.Decision{Aggregate: events.AggregateRef{Context: "policy", ID: id},
		Events: []events.Event{ev}}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) head(t testing.TB) uint64 {
	t.Helper()
	p, err := e.store.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// request sends a command over NATS and returns the reply or the problem.
func request(t testing.TB, nc *nats.Conn, verb string, cmd any) (Reply, *Problem, string) {
	t.Helper()
	body, _ := json.Marshal(cmd)
	msg, err := nc.Request(testPrefix+"."+verb, body, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		var p Problem
		if err := json.Unmarshal(msg.Data, &p); err != nil {
			t.Fatalf("problem body %q: %v", msg.Data, err)
		}
		return Reply{}, &p, code
	}
	var r Reply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		t.Fatalf("reply %q: %v", msg.Data, err)
	}
	return r, nil, ""
}

func TestServeCommands(t *testing.T) {
	e := start(t)
	svc, err := e.svc.Serve(e.nc, service.WithPrefix(testPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	r, p, _ := request(t, e.nc, "create", create())
	if p != nil {
		t.Fatalf("create: %+v", p)
	}
	if r.Version != 1 || r.State.Stock != 10 || len(r.Events) != 1 || r.Events[0] != "listing.created" {
		t.Errorf("create reply %+v", r)
	}
	steps := []struct {
		verb string
		cmd  any
		want func(Listing) bool
	}{
		{"change_price", contracts.ChangePrice{ListingID: "l1", Price: usd(120_00)}, func(l Listing) bool { return l.Price == usd(120_00) }},
		{"change_stock", contracts.ChangeStock{ListingID: "l1", Stock: 5}, func(l Listing) bool { return l.Stock == 5 }},
		{"reserve_stock", contracts.ReserveStock{ListingID: "l1", OrderID: "o1", Quantity: 2}, func(l Listing) bool { return l.Stock == 3 && l.Reserved["o1"] == 2 }},
		{"release_stock", contracts.ReleaseStock{ListingID: "l1", OrderID: "o1", Quantity: 2, Reason: "cancelled"}, func(l Listing) bool { return l.Stock == 5 }},
		{"delist", contracts.Delist{ListingID: "l1", Reason: "gone"}, func(l Listing) bool { return l.Delisted }},
	}
	for _, s := range steps {
		r, p, _ := request(t, e.nc, s.verb, s.cmd)
		if p != nil || !s.want(r.State) {
			t.Errorf("%s: reply %+v problem %+v", s.verb, r, p)
		}
	}
	info := svc.Info()
	if info.Name != ServiceName || len(info.Endpoints) != len(Commands) {
		t.Errorf("service info %+v", info)
	}
}

// TestBadInputAppendsNothing sends broken and refused commands and checks
// the error code, the field and rule of the problem, and that the stream
// did not move.
func TestBadInputAppendsNothing(t *testing.T) {
	e := start(t)
	svc, err := e.svc.Serve(e.nc, service.WithPrefix(testPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	if _, p, _ := request(t, e.nc, "create", create()); p != nil {
		t.Fatal(p)
	}
	tests := []struct {
		name, verb string
		body       any
		code       string
		field      string
	}{
		{"malformed JSON", "create", json.RawMessage(`{"listing_id":`), "400", ""},
		{"zero price", "create", with(create(), func(c *contracts.CreateListing) { c.ListingID, c.Price.AmountMinor = "l2", 0 }), "400", "/price/amount_minor"},
		{"negative price", "create", with(create(), func(c *contracts.CreateListing) { c.ListingID, c.Price.AmountMinor = "l2", -1 }), "400", "/price/amount_minor"},
		{"unknown currency", "create", with(create(), func(c *contracts.CreateListing) { c.ListingID, c.Price.Currency = "l2", "ABC" }), "400", "/price/currency"},
		{"unknown jurisdiction", "create", with(create(), func(c *contracts.CreateListing) { c.ListingID, c.Jurisdiction = "l2", "QQ" }), "400", "/jurisdiction"},
		{"create twice", "create", create(), "409", "/listing_id"},
		{"unknown listing", "change_stock", contracts.ChangeStock{ListingID: "nope", Stock: 1}, "404", "/listing_id"},
		{"over-reserve", "reserve_stock", contracts.ReserveStock{ListingID: "l1", OrderID: "o1", Quantity: 11}, "409", "/quantity"},
		{"release unreserved", "release_stock", contracts.ReleaseStock{ListingID: "l1", OrderID: "o1", Quantity: 1, Reason: "x"}, "404", "/order_id"},
		{"unknown field", "delist", map[string]any{"listing_id": "l1", "evil": true}, "400", ""},
	}
	before := e.head(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, p, code := request(t, e.nc, tc.verb, tc.body)
			if p == nil {
				t.Fatalf("accepted")
			}
			if code != tc.code || p.Status == 0 || (tc.field != "" && p.Field != tc.field) {
				t.Errorf("got code %q problem %+v, want %s on %q", code, p, tc.code, tc.field)
			}
		})
	}
	if after := e.head(t); after != before {
		t.Errorf("stream moved from %d to %d on bad input", before, after)
	}
}

// TestFloorPriceRefusesCreate appends a floor price after the view started
// and checks that a creation below it is refused with the rule, and that a
// listing in a freeze's scope is still created (promotion only).
func TestFloorPriceRefusesCreate(t *testing.T) {
	e := start(t)
	svc, err := e.svc.Serve(e.nc, service.WithPrefix(testPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	e.appendPolicy(t, "floor-usd-100", contracts.FloorPriceSet{RuleID: "floor-usd-100", Scope: contracts.Scope{Jurisdictions: []string{"ID"}},
		BlockedOperations: contracts.FloorPriceOperations, Amount: usd(100_00), Origin: contracts.OriginCrossBorder,
		EffectiveAt: freezeAt, LegalBasis: "Permendag 31/2023", Issuer: "Kemendag"})
	e.appendPolicy(t, "freeze-id-sc", contracts.FreezeImposed{RuleID: "freeze-id-sc", Scope: contracts.Scope{Channels: []contracts.Channel{contracts.ChannelSocialCommerce}},
		BlockedOperations: contracts.FreezeOperations, EffectiveAt: freezeAt, LegalBasis: "Permendag 31/2023", Issuer: "Kemendag"})
	e.setNow(freezeAt)
	cheap := with(create(), func(c *contracts.CreateListing) { c.Price = usd(99_99) })
	before := e.head(t)
	_, p, code := request(t, e.nc, "create", cheap)
	if p == nil || code != "423" || p.Status != 423 || p.Field != "/price" {
		t.Fatalf("below-floor create: code %q problem %+v", code, p)
	}
	if want := "rule floor-usd-100 (floor_price, Permendag 31/2023) blocks listing.create"; p.Rule != want {
		t.Errorf("rule %q, want %q", p.Rule, want)
	}
	if after := e.head(t); after != before {
		t.Errorf("stream moved from %d to %d on a refused create", before, after)
	}
	r, p, _ := request(t, e.nc, "create", create())
	if p != nil {
		t.Fatalf("create at the floor during a freeze: %+v", p)
	}
	evs, err := e.store.Load(context.Background(), events.AggregateRef{Context: "listing", ID: "l1"}, 0)
	if err != nil || len(evs) != 1 || evs[0].PolicyPosition != r.FirstPosition-1 {
		t.Errorf("created under policy position %d, want %d (%v)", evs[0].PolicyPosition, r.FirstPosition-1, err)
	}
}

// TestConcurrentReservations races 100 buyers for 10 units.
func TestConcurrentReservations(t *testing.T) {
	e := start(t)
	svc, err := e.svc.Serve(e.nc, service.WithPrefix(testPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	if _, p, _ := request(t, e.nc, "create", create()); p != nil {
		t.Fatal(p)
	}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			_, p, _ := request(t, e.nc, "reserve_stock", contracts.ReserveStock{ListingID: "l1", OrderID: fmt.Sprintf("o%d", i), Quantity: 1})
			switch {
			case p == nil:
				ok.Add(1)
			case p.Status == 409:
				refused.Add(1)
			default:
				t.Errorf("buyer %d: %+v", i, p)
			}
		})
	}
	wg.Wait()
	l, _, err := e.svc.Load(context.Background(), "l1")
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != 10 || refused.Load() != 90 || l.Stock != 0 || len(l.Reserved) != 10 {
		t.Errorf("reserved %d, refused %d, stock %d, holders %d; want 10, 90, 0, 10", ok.Load(), refused.Load(), l.Stock, len(l.Reserved))
	}
}

// TestIdempotencyKey sends one reservation twice with a key and once more
// with the same key and another quantity.
func TestIdempotencyKey(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	if _, err := e.svc.Create(ctx, create()); err != nil {
		t.Fatal(err)
	}
	c := contracts.ReserveStock{ListingID: "l1", OrderID: "o1", Quantity: 2, IdempotencyKey: "checkout:o1:reserve"}
	first, err := e.svc.ReserveStock(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.svc.ReserveStock(ctx, c)
	if err != nil || !again.Replayed || again.Version != first.Version || again.State.Stock != 8 {
		t.Errorf("replay: %+v %v", again, err)
	}
	c.Quantity = 3
	if _, err := e.svc.ReserveStock(ctx, c); events.KindOf(err) != events.KindDuplicate {
		t.Errorf("same key, other command: %v, want duplicate", err)
	}
}

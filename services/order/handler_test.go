package order

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/service"
)

// request sends a command over NATS and returns the reply or the problem.
func request(t testing.TB, nc *nats.Conn, verb string, cmd any) (Reply, *Problem, string) {
	t.Helper()
	body, _ := json.Marshal(cmd)
	msg, err := nc.Request(orderPrefix+"."+verb, body, 10*time.Second)
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

func serve(t testing.TB, e *env) {
	svc, err := e.svc.Serve(e.nc, service.WithPrefix(orderPrefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
}

// TestServeLifecycle takes one order through every command over NATS.
func TestServeLifecycle(t *testing.T) {
	e := start(t)
	serve(t, e)
	e.createListing(t, listingCreated())
	e.appendEvent(t, contracts.ServiceListing, "l1", contracts.ListingPriceChanged{ListingID: "l1", Price: usd(120_00), PreviousPrice: usd(150_00)})
	r, p, _ := request(t, e.nc, "place", place())
	if p != nil {
		t.Fatalf("place: %+v", p)
	}
	if r.State.UnitPrice != usd(120_00) || r.State.Total != usd(240_00) || r.State.Channel != contracts.ChannelSocialCommerce {
		t.Errorf("placed at the listing's price of the moment? %+v", r.State)
	}
	for _, s := range []struct {
		verb string
		cmd  any
		want Status
	}{
		{"confirm", contracts.ConfirmOrder{OrderID: "o1", PaymentID: "o1"}, StatusConfirmed},
		{"ship", contracts.ShipOrder{OrderID: "o1", Carrier: "JNE"}, StatusShipped},
		{"complete", contracts.CompleteOrder{OrderID: "o1"}, StatusCompleted},
	} {
		if r, p, _ := request(t, e.nc, s.verb, s.cmd); p != nil || r.State.Status != s.want {
			t.Errorf("%s: %+v %+v", s.verb, r, p)
		}
	}
}

// TestBadInputAppendsNothing checks codes, fields and that the stream did
// not move.
func TestBadInputAppendsNothing(t *testing.T) {
	e := start(t)
	serve(t, e)
	e.createListing(t, listingCreated())
	e.createListing(t, with(listingCreated(), func(l *contracts.ListingCreated) {
		l.ListingID, l.Price = "pricey", usd(contracts.MaxAmountMinor/2)
	}))
	e.createListing(t, with(listingCreated(), func(l *contracts.ListingCreated) { l.ListingID = "gone" }))
	e.appendEvent(t, contracts.ServiceListing, "gone", contracts.ListingDelisted{ListingID: "gone"})
	if _, p, _ := request(t, e.nc, "place", place()); p != nil {
		t.Fatal(p)
	}
	tests := []struct {
		name, verb string
		body       any
		code       string
		field      string
	}{
		{"malformed", "place", json.RawMessage(`[`), "400", ""},
		{"zero quantity", "place", with(place(), func(c *contracts.PlaceOrder) { c.OrderID, c.Quantity = "o2", 0 }), "400", "/quantity"},
		{"amount overflow", "place", contracts.PlaceOrder{OrderID: "o2", BuyerID: "b1", ListingID: "pricey", Quantity: 3}, "422", "/quantity"},
		{"unknown listing", "place", contracts.PlaceOrder{OrderID: "o2", BuyerID: "b1", ListingID: "nope", Quantity: 1}, "404", "/listing_id"},
		{"delisted listing", "place", contracts.PlaceOrder{OrderID: "o2", BuyerID: "b1", ListingID: "gone", Quantity: 1}, "422", "/listing_id"},
		{"place twice", "place", place(), "409", "/order_id"},
		{"unknown order", "cancel", contracts.CancelOrder{OrderID: "nope", Reason: "x"}, "404", "/order_id"},
		{"ship unconfirmed", "ship", contracts.ShipOrder{OrderID: "o1"}, "409", "/order_id"},
		{"unknown field", "complete", map[string]any{"order_id": "o1", "x": 1}, "400", ""},
	}
	before := e.head(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, p, code := request(t, e.nc, tc.verb, tc.body)
			if p == nil {
				t.Fatal("accepted")
			}
			if code != tc.code || (tc.field != "" && p.Field != tc.field) {
				t.Errorf("got %q %+v, want %s on %q", code, p, tc.code, tc.field)
			}
		})
	}
	if after := e.head(t); after != before {
		t.Errorf("stream moved from %d to %d on bad input", before, after)
	}
}

// TestFreezeRefusesPlacement appends a freeze effective at 17:00 WIB while
// the service runs: placement in scope is refused from that instant with
// the rule and legal basis, nothing appended; cancellation goes on; orders
// out of scope are placed; the placement before records its policy
// position.
func TestFreezeRefusesPlacement(t *testing.T) {
	e := start(t)
	serve(t, e)
	e.createListing(t, listingCreated())
	e.createListing(t, with(listingCreated(), func(l *contracts.ListingCreated) {
		l.ListingID, l.Channel = "market", contracts.ChannelMarketplace
	}))
	if _, p, _ := request(t, e.nc, "place", place()); p != nil {
		t.Fatal(p)
	}
	e.appendEvent(t, contracts.ServicePolicy, "freeze-id-sc", contracts.FreezeImposed{RuleID: "freeze-id-sc",
		Scope:             contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{contracts.ChannelSocialCommerce}},
		BlockedOperations: contracts.FreezeOperations, EffectiveAt: freezeAt, LegalBasis: "Permendag 31/2023", Issuer: "Kemendag"})
	freezePos := e.head(t)
	e.setNow(freezeAt.Add(-time.Second))
	r, p, _ := request(t, e.nc, "place", with(place(), func(c *contracts.PlaceOrder) { c.OrderID = "o2" }))
	if p != nil {
		t.Fatalf("a second before the freeze: %+v", p)
	}
	evs, _ := e.store.Load(t.Context(), events.AggregateRef{Context: "order", ID: "o2"}, 0)
	if len(evs) != 1 || evs[0].PolicyPosition != freezePos {
		t.Errorf("o2 decided under policy position %d, want %d (%d events, reply %+v)", evs[0].PolicyPosition, freezePos, len(evs), r)
	}
	e.setNow(freezeAt)
	before := e.head(t)
	_, p, code := request(t, e.nc, "place", with(place(), func(c *contracts.PlaceOrder) { c.OrderID = "o3" }))
	if p == nil || code != "423" || p.Rule != "rule freeze-id-sc (freeze, Permendag 31/2023) blocks order.place" {
		t.Fatalf("at the freeze: code %q problem %+v", code, p)
	}
	if after := e.head(t); after != before {
		t.Errorf("a refused placement moved the stream from %d to %d", before, after)
	}
	if _, p, _ := request(t, e.nc, "cancel", contracts.CancelOrder{OrderID: "o1", Reason: "refund during the freeze"}); p != nil {
		t.Errorf("cancel during the freeze: %+v", p)
	}
	if _, p, _ := request(t, e.nc, "place", contracts.PlaceOrder{OrderID: "o4", BuyerID: "b1", ListingID: "market", Quantity: 1}); p != nil {
		t.Errorf("marketplace order during a social-commerce freeze: %+v", p)
	}
}

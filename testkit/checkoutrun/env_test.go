package checkoutrun

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/policyview"
	"github.com/marketledger/ledger/runtime/service"
	"github.com/marketledger/ledger/services/order"
)

// Subject prefixes outside the LEDGER stream, which captures "ledger.>"
// (see WithSubjectPrefix).
const (
	orderPrefix   = "svc.ledger.order"
	listingPrefix = "svc.ledger.listing"
	paymentPrefix = "svc.ledger.payment"
)

// env is one embedded JetStream node with the order service on it.
type env struct {
	store  *events.JetStreamStore
	nc     *nats.Conn
	runner *command.Runner
	svc    *order.Service
	now    atomic.Pointer[time.Time]
}

func start(t testing.TB) *env {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), Port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	if _, err := events.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	st, err := events.NewJetStreamStore(ctx, nc, events.WithTypeChecker(contracts.Checker{}), contracts.Fence())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	view, err := policyview.Start(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(view.Close)
	e := &env{store: st, nc: nc}
	e.setNow(beforeNoon)
	e.runner = &command.Runner{Store: st, Codec: contracts.Codec{}, Source: contracts.Source(contracts.ServiceOrder), Clock: e.clock}
	e.svc = order.New(e.runner, view.Snapshot)
	osvc, err := e.svc.Serve(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { osvc.Stop() })
	return e
}

func (e *env) clock() time.Time   { return *e.now.Load() }
func (e *env) setNow(t time.Time) { e.now.Store(&t) }

// appendEvent stores one contract event as its publisher would.
func (e *env) appendEvent(t testing.TB, context, id string, payload any) {
	t.Helper()
	typ, v, data, err := contracts.Encode(payload)
	if err != nil {
		t.Fatal(err)
	}
	ev := events.Event{ID: events.NewID(), Type: typ, SchemaVersion: v, Source: contracts.Source(context),
		AggregateID: id, OccurredAt: e.clock(), Data: data}
	ref := events.AggregateRef{Context: context, ID: id}
	evs, _ := e.store.Load(t.Context(), ref, 0)
	if _, err := e.store.Append(t.Context(), events.Decision{Aggregate: ref, ExpectedVersion: uint64(len(evs)),
		Events: []events.Event{ev}}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) createListing(t testing.TB, l contracts.ListingCreated) {
	e.appendEvent(t, contracts.ServiceListing, l.ListingID, l)
}

func listingCreated() contracts.ListingCreated {
	l := theListing()
	return contracts.ListingCreated{ListingID: l.ID, SellerID: l.SellerID, Title: "Batik shirt", Category: l.Category,
		Channel: l.Channel, Jurisdiction: l.Jurisdiction, Origin: l.Origin, Price: l.Price, Stock: l.Stock}
}

func (e *env) head(t testing.TB) uint64 {
	t.Helper()
	p, err := e.store.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// count returns how many events of typ the aggregate has.
func (e *env) count(t testing.TB, context, id, typ string) int {
	t.Helper()
	evs, err := e.store.Load(t.Context(), events.AggregateRef{Context: context, ID: id}, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

// fakeListing is a minimal listing service for the checkout: it reserves
// and releases stock through the command runner, as the real one does,
// and only from contract events (the order service never imports it).
type fakeListing struct {
	runner *command.Runner
	// late, when set, swallows reservations, as a listing service that
	// answers after the checkout gave up; deliver them with handle.
	late atomic.Bool
}

type heldListing struct {
	order.Listing
	held map[string]int64
}

var heldAggregate = command.Aggregate[heldListing]{
	Context: contracts.ServiceListing,
	Initial: func(id string) heldListing {
		return heldListing{Listing: order.Listing{ID: id}, held: map[string]int64{}}
	},
	Evolve: func(s heldListing, p any) heldListing {
		s.Listing = order.EvolveListing(s.Listing, p)
		switch e := p.(type) {
		case contracts.ListingStockReserved:
			s.held[e.OrderID] += e.Quantity
		case contracts.ListingStockReleased:
			s.held[e.OrderID] -= e.Quantity
		}
		return s
	},
}

func (f *fakeListing) serve(t testing.TB, nc *nats.Conn) {
	svc, err := micro.AddService(nc, micro.Config{Name: "fake-listing", Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	g := svc.AddGroup(listingPrefix)
	for _, verb := range []string{"reserve_stock", "release_stock"} {
		if err := g.AddEndpoint(verb, micro.HandlerFunc(func(req micro.Request) {
			if verb == "reserve_stock" && f.late.Load() {
				return
			}
			out := service.NewResponder(nc, req.Reply())
			go f.handle(verb, req.Data(), out)
		})); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fakeListing) handle(verb string, data []byte, out service.Responder) {
	var c struct {
		ListingID      string `json:"listing_id"`
		OrderID        string `json:"order_id"`
		Quantity       int64  `json:"quantity"`
		IdempotencyKey string `json:"idempotency_key"`
	}
	_ = json.Unmarshal(data, &c)
	meta := command.Meta{CommandID: events.NewID(), IdempotencyKey: c.IdempotencyKey, Command: json.RawMessage(data)}
	_, err := command.Run(context.Background(), f.runner, heldAggregate, c.ListingID, meta, nil,
		func(s heldListing, _ struct{}, _ time.Time) ([]any, error) {
			held := s.held[c.OrderID]
			switch {
			case verb == "release_stock" && held <= 0:
				return nil, &events.Error{Kind: events.KindNotFound, Field: "/order_id"}
			case verb == "release_stock":
				return []any{contracts.ListingStockReleased{ListingID: s.ID, OrderID: c.OrderID, Quantity: held,
					Stock: s.Stock + held, Reason: "released"}}, nil
			case held > 0:
				return nil, nil
			case s.Stock < c.Quantity:
				return nil, &events.Error{Kind: events.KindConflict, Field: "/quantity", Rule: "not enough stock"}
			}
			return []any{contracts.ListingStockReserved{ListingID: s.ID, OrderID: c.OrderID, Quantity: c.Quantity,
				Stock: s.Stock - c.Quantity}}, nil
		})
	if err != nil {
		out.Fail(service.ProblemOf(err))
		return
	}
	out.OK(struct{}{})
}

// fakePayment answers authorize and void like the payment service: one
// authorization per idempotency key, a decline for the buyer "broke",
// and no answer at all while silent is set.
type fakePayment struct {
	mu         sync.Mutex
	authorized map[string]string // idempotency key -> payment id
	requests   int
	voided     map[string]bool
	silent     atomic.Bool
}

func (f *fakePayment) serve(t testing.TB, nc *nats.Conn) micro.Service {
	f.authorized, f.voided = map[string]string{}, map[string]bool{}
	svc, err := micro.AddService(nc, micro.Config{Name: "fake-payment", Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	g := svc.AddGroup(paymentPrefix)
	_ = g.AddEndpoint("authorize", micro.HandlerFunc(f.authorize))
	_ = g.AddEndpoint("void", micro.HandlerFunc(f.void))
	return svc
}

func (f *fakePayment) authorize(req micro.Request) {
	if f.silent.Load() {
		return
	}
	var c contracts.AuthorizePayment
	_ = json.Unmarshal(req.Data(), &c)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if c.BuyerID == "broke" {
		_ = req.Error("422", "card declined", []byte(`{"status":422,"detail":"card declined","field":"/buyer_id"}`))
		return
	}
	f.authorized[c.IdempotencyKey] = c.PaymentID
	_ = req.Respond([]byte(`{"payment_id":"` + c.PaymentID + `","payment":{"status":"authorized"}}`))
}

func (f *fakePayment) void(req micro.Request) {
	var c contracts.VoidPayment
	_ = json.Unmarshal(req.Data(), &c)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.voided[c.PaymentID] = true
	_ = req.Error("404", "no such payment", []byte(`{"status":404,"detail":"no such payment"}`))
}

// open counts the authorizations not voided.
func (f *fakePayment) open() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, pid := range f.authorized {
		if !f.voided[pid] {
			n++
		}
	}
	return n
}

func (f *fakePayment) authorizations() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.authorized)
}

// waitFor polls cond for up to 20 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func commandLoad(ctx context.Context, e *env, id string) (heldListing, uint64, error) {
	return command.Load(ctx, e.runner, heldAggregate, id)
}

var (
	wib        = time.FixedZone("WIB", 7*3600)
	beforeNoon = time.Date(2023, 10, 4, 11, 0, 0, 0, wib)
	usd        = func(minor int64) contracts.Money { return contracts.Money{AmountMinor: minor, Currency: "USD"} }
)

func theListing() order.Listing {
	return order.Listing{ID: "l1", Created: true, SellerID: "s1", Category: "apparel", Channel: contracts.ChannelSocialCommerce,
		Jurisdiction: "ID", Origin: contracts.OriginCrossBorder, Price: usd(150_00), Stock: 10}
}

func place() contracts.PlaceOrder {
	return contracts.PlaceOrder{OrderID: "o1", BuyerID: "b1", ListingID: "l1", Quantity: 2}
}

func with[T any](v T, f func(*T)) T { f(&v); return v }

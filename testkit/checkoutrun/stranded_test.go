package checkoutrun

import (
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/service"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/services/order"
	"github.com/nats-io/nats.go/jetstream"
)

// within polls cond for up to 15 s: long enough for a loaded machine, short
// enough that a missing compensation fails the test rather than hangs it.
func within(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkpoint returns the manager's checkpoint (0 before the first write).
func (e *env) checkpoint(t testing.TB) uint64 {
	t.Helper()
	js, _ := jetstream.New(e.nc)
	kv, err := js.KeyValue(t.Context(), "ledger_checkout")
	if err != nil {
		return 0
	}
	v, err := kv.Get(t.Context(), "position")
	if err != nil || len(v.Value()) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v.Value())
}

// TestLateReservationOfARejectedOrderIsReleased: the listing service
// answers a reservation only after the checkout gave up on it. The order
// was rejected and its end handled (the checkpoint passed it) when the
// reservation is stored; the manager must still give the units back.
func TestLateReservationOfARejectedOrderIsReleased(t *testing.T) {
	e := start(t)
	lst := &fakeListing{runner: e.runner}
	lst.late.Store(true)
	lst.serve(t, e.nc)
	(&fakePayment{}).serve(t, e.nc)
	e.createListing(t, listingCreated())
	m := e.manager(time.Minute, func(err error) { t.Error(err) })
	runManager(t, m)
	if _, err := e.svc.Place(t.Context(), place()); err != nil {
		t.Fatal(err)
	}
	e.setNow(beforeNoon.Add(2 * time.Minute))
	within(t, "rejection", func() bool { return e.status(t, "o1") == order.StatusRejected })
	var ended uint64
	for ev, err := range e.store.Read(t.Context(), events.Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == "order.rejected" {
			ended = ev.Position
		}
	}
	within(t, "the checkpoint past the rejection", func() bool { return e.checkpoint(t) >= ended })

	o, _, err := e.svc.Load(t.Context(), "o1")
	if err != nil {
		t.Fatal(err)
	}
	late, _ := json.Marshal(contracts.ReserveStock{ListingID: o.ListingID, OrderID: o.ID, Quantity: o.Quantity,
		IdempotencyKey: checkout.StepKey(o.ID, "reserve")})
	lst.handle("reserve_stock", late, service.NewResponder(e.nc, "_INBOX.nobody"))
	if n := e.count(t, "listing", "l1", "listing.stock_reserved"); n != 1 {
		t.Fatalf("%d reservations stored, want the late one", n)
	}
	within(t, "the late reservation released", func() bool { s, h := e.stock(t); return s == 10 && h == 0 })
}

// TestResumedAfterDeadlineVoidsWhatWasAuthorized: the stock was reserved
// and the payment authorized, then the manager was down until after the
// checkout's deadline. The reservation is looked up, not guessed, and the
// order that cannot be confirmed in time is ended with its authorization
// voided and its stock released.
func TestResumedAfterDeadlineVoidsWhatWasAuthorized(t *testing.T) {
	e := start(t)
	lst := &fakeListing{runner: e.runner}
	lst.serve(t, e.nc)
	pay := &fakePayment{}
	pay.serve(t, e.nc)
	pay.silent.Store(true) // the authorization was made; its answer is lost
	e.createListing(t, listingCreated())
	if _, err := e.svc.Place(t.Context(), place()); err != nil {
		t.Fatal(err)
	}
	o, _, err := e.svc.Load(t.Context(), "o1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(contracts.ReserveStock{ListingID: o.ListingID, OrderID: o.ID, Quantity: o.Quantity,
		IdempotencyKey: checkout.StepKey(o.ID, "reserve")})
	lst.handle("reserve_stock", body, service.NewResponder(e.nc, "_INBOX.nobody"))
	e.setNow(beforeNoon.Add(2 * time.Minute))
	runManager(t, e.manager(time.Minute, nil))
	within(t, "the order ended", func() bool { s := e.status(t, "o1"); return s == order.StatusCancelled || s == order.StatusRejected })
	within(t, "release", func() bool { s, h := e.stock(t); return s == 10 && h == 0 })
	within(t, "void", func() bool { pay.mu.Lock(); defer pay.mu.Unlock(); return pay.voided[contracts.PaymentID("o1")] })
	if s := e.status(t, "o1"); s != order.StatusCancelled {
		t.Errorf("order is %s; want cancelled: its stock was reserved, its payment was not done in time", s)
	}
}

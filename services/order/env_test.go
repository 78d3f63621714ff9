package order

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/nodetest"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/policyview"
)

// orderPrefix is a subject prefix outside the LEDGER stream, which
// captures "ledger.>" (see WithSubjectPrefix).
const orderPrefix = "svc.ledger.order"

// env is one embedded JetStream node with the order service on it.
type env struct {
	store  *events.JetStreamStore
	nc     *nats.Conn
	runner *command.Runner
	svc    *Service
	view   *policyview.View
	now    atomic.Pointer[time.Time]
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
	e.runner = &command.Runner{Store: st, Codec: contracts.Codec{}, Source: contracts.Source(contracts.ServiceOrder), Clock: e.clock}
	e.svc = New(e.runner, view.Snapshot)
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

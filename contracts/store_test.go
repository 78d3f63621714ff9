package contracts_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/embedded"
)

// startStores starts an embedded server and returns two stores on it: a
// legacy one without a type checker, standing for a producer deployed before
// order.placed v2 existed, and the current one, which checks every append.
func startStores(t *testing.T) (legacy, current *events.JetStreamStore) {
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
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	legacy, err = events.NewJetStreamStore(ctx, nc, contracts.Fence())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { legacy.Close() })
	current, err = events.NewJetStreamStore(ctx, nc, events.WithTypeChecker(contracts.Checker{}), contracts.Fence())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { current.Close() })
	return legacy, current
}

// TestStoredV1ReadThroughUpcaster writes an order.placed v1 body as an old
// producer did, then reads it back from the stream and decodes it: the
// reader gets the current type with the default channel.
func TestStoredV1ReadThroughUpcaster(t *testing.T) {
	legacy, current := startStores(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v1 := contracts.OrderPlacedV1{OrderID: "o-legacy", BuyerID: "b-1", ListingID: "l-1", SellerID: "s-1", Quantity: 3,
		UnitPrice: contracts.Money{AmountMinor: 2500, Currency: "USD"}, Total: contracts.Money{AmountMinor: 7500, Currency: "USD"},
		Jurisdiction: "ID", Category: "books", Origin: contracts.OriginDomestic}
	data, err := json.Marshal(v1)
	if err != nil {
		t.Fatal(err)
	}
	ref := events.AggregateRef{Context: "order", ID: v1.OrderID}
	old := events.Event{ID: events.NewID(), Type: "order.placed", SchemaVersion: 1, Source: contracts.Source(contracts.ServiceOrder),
		AggregateID: v1.OrderID, OccurredAt: time.Date(2023, 9, 1, 10, 0, 0, 0, time.FixedZone("WIB", 7*3600)), Data: data}

	// The current store refuses to write the old version...
	_, err = current.Append(ctx, events.Decision{Aggregate: ref, Events: []events.Event{old}})
	if !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("current store appended a v1 event: %v", err)
	}
	// ...which only a producer from before the change wrote.
	if _, err := legacy.Append(ctx, events.Decision{Aggregate: ref, Events: []events.Event{old}}); err != nil {
		t.Fatal(err)
	}

	stored, err := current.Load(ctx, ref, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].SchemaVersion != 1 {
		t.Fatalf("loaded %+v, want one v1 event", stored)
	}
	got, err := contracts.DecodeAs[contracts.OrderPlaced](stored[0].Type, stored[0].SchemaVersion, stored[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	want := contracts.OrderPlaced{OrderID: "o-legacy", BuyerID: "b-1", ListingID: "l-1", SellerID: "s-1", Quantity: 3,
		UnitPrice: v1.UnitPrice, Total: v1.Total, Channel: contracts.ChannelMarketplace,
		Jurisdiction: "ID", Category: "books", Origin: contracts.OriginDomestic}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("upcast from the stream (-want +got):\n%s", diff)
	}

	// A v2 event appended after it through the checking store reads back as
	// itself, and the aggregate's history is all current types.
	typ, version, body, err := contracts.Encode(contracts.OrderConfirmed{OrderID: "o-legacy", PaymentID: "p-1"})
	if err != nil {
		t.Fatal(err)
	}
	next := events.Event{ID: events.NewID(), Type: typ, SchemaVersion: version, Source: contracts.Source(contracts.ServiceOrder),
		AggregateID: "o-legacy", OccurredAt: time.Now(), Data: body}
	if _, err := current.Append(ctx, events.Decision{Aggregate: ref, ExpectedVersion: 1, Events: []events.Event{next}}); err != nil {
		t.Fatal(err)
	}
	for e, err := range current.Read(ctx, events.Query{Subjects: []string{"ledger.order.>"}}) {
		if err != nil {
			t.Fatal(err)
		}
		if _, err := contracts.Decode(e.Type, e.SchemaVersion, e.Data); err != nil {
			t.Errorf("Decode(%s v%d) from the stream: %v", e.Type, e.SchemaVersion, err)
		}
	}
}

// TestStoreRefusesInvalidEvent shows the edge: a schema-invalid body never
// enters the stream, and the error names the field and the rule.
func TestStoreRefusesInvalidEvent(t *testing.T) {
	_, current := startStores(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bad := events.Event{ID: events.NewID(), Type: "listing.price_changed", SchemaVersion: 1, Source: "/ledger/listing",
		AggregateID: "l-1", OccurredAt: time.Now(),
		Data: []byte(`{"listing_id":"l-1","price":{"amount_minor":0,"currency":"USD"},"previous_price":{"amount_minor":100,"currency":"USD"}}`)}
	_, err := current.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "listing", ID: "l-1"}, Events: []events.Event{bad}})
	var e *events.Error
	if !errors.As(err, &e) || e.Kind != events.KindInvalid {
		t.Fatalf("Append = %v, want invalid", err)
	}
	if got, want := e.Field, "events/0/price/amount_minor"; got != want {
		t.Errorf("field = %q, want %q", got, want)
	}
	if got, want := e.Rule, "minimum 1"; got != want {
		t.Errorf("rule = %q, want %q", got, want)
	}
	got, err := current.Load(ctx, events.AggregateRef{Context: "listing", ID: "l-1"}, 0)
	if err != nil || len(got) != 0 {
		t.Errorf("Load after refused append = %d events, %v; want none", len(got), err)
	}
}

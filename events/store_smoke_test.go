package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/embedded"
)

func startStore(t testing.TB) (*events.JetStreamStore, *nats.Conn) {
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
	st, err := events.NewJetStreamStore(ctx, nc, events.WithFence("policy"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, nc
}

func ev(agg, typ string) events.Event {
	return events.Event{ID: events.NewID(), Type: typ, SchemaVersion: 1, Source: "/test",
		AggregateID: agg, OccurredAt: time.Now(), Data: []byte(`{"a":1}`)}
}

func TestSmoke(t *testing.T) {
	st, _ := startStore(t)
	ctx := context.Background()
	ref := events.AggregateRef{Context: "order", ID: "o1"}
	a, err := st.Append(ctx, events.Decision{Aggregate: ref, Events: []events.Event{ev("o1", "order.placed"), ev("o1", "order.confirmed")}, IdempotencyKey: "k1", CommandDigest: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", a)
	b, err := st.Append(ctx, events.Decision{Aggregate: ref, Events: []events.Event{ev("o1", "order.placed"), ev("o1", "order.confirmed")}, IdempotencyKey: "k1", CommandDigest: "d1"})
	t.Logf("%+v %v", b, err)
	_, err = st.Append(ctx, events.Decision{Aggregate: ref, Events: []events.Event{ev("o1", "order.shipped")}})
	t.Logf("conflict: %v", err)
	c, err := st.Append(ctx, events.Decision{Aggregate: ref, ExpectedVersion: 2, Events: []events.Event{ev("o1", "order.shipped")}})
	t.Logf("%+v %v", c, err)
	evs, err := st.Load(ctx, ref, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		t.Logf("%d v%d %s %s", e.Position, e.AggregateVersion, e.Type, e.RecordedAt)
	}
	for e, err := range st.Read(ctx, events.Query{}) {
		t.Logf("read %d %s %v", e.Position, e.Type, err)
	}
	p, err := st.PositionAt(ctx, time.Now())
	t.Logf("pos now %d %v", p, err)
	p, err = st.PositionAt(ctx, time.Now().Add(-time.Hour))
	t.Logf("pos hour ago %d %v", p, err)
}

package subscriber_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/runtime/subscriber"
)

// A service that sends an e-mail for every new order: a named durable
// subscription on the order context; Dedupe skips the redeliveries of
// orders already e-mailed (a crash between sending and marking can still
// send one twice). Run it again and it resumes after the last order it
// handled.
func Example() {
	ctx := context.Background()
	// A ledger of its own on a free port; a real service connects to the
	// ledger's NATS server instead (nats.Connect("nats://127.0.0.1:4222")).
	dir, _ := os.MkdirTemp("", "subscriber-example-")
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)
	events.EnsureStream(ctx, js, 1)
	st, _ := events.NewJetStreamStore(ctx, nc, contracts.Fence())
	defer st.Close()
	for _, id := range []string{"o-1", "o-2", "o-3"} {
		e := events.Event{ID: events.NewID(), Type: "order.placed", SchemaVersion: 2, Source: "/ledger/order",
			AggregateID: id, OccurredAt: time.Now(), CorrelationID: id, Data: []byte(`{"order_id":"` + id + `"}`)}
		st.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: id}, Events: []events.Event{e}})
	}

	sub, err := subscriber.New(ctx, js, subscriber.Config{
		Name:        "order-emails",
		Subjects:    []string{"ledger.order.*.placed"},
		Start:       subscriber.FromBeginning(),
		MaxInFlight: 1, // one at a time: in log order
		MaxAttempts: 5, // then parked on parked.order-emails.<position>
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	dedupe := subscriber.NewDedupe(10_000, nil) // or a DedupeBucket to survive restarts
	runCtx, stop := context.WithCancel(ctx)
	sent := 0
	done := make(chan error, 1)
	go func() {
		done <- sub.Run(runCtx, dedupe.Wrap(func(ctx context.Context, e events.Event) error {
			fmt.Printf("e-mail for %s (position %d)\n", e.AggregateID, e.Position)
			if sent++; sent == 3 {
				stop()
			}
			return nil
		}))
	}()
	<-done
	// Waits for the acknowledgements the handlers' returns started.
	for sub.Checkpoint() < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("checkpoint", sub.Checkpoint())
	// Output:
	// e-mail for o-1 (position 1)
	// e-mail for o-2 (position 2)
	// e-mail for o-3 (position 3)
	// checkpoint 3
}

// A read model kept in a key-value bucket, with each event's effect stored
// exactly once: the handler returns its writes, and AtomicKV stores them
// with the event's mark in one atomic batch. A crash anywhere can make the
// handler run again, never make its writes count twice.
func ExampleAtomicKV() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "subscriber-example-")
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)
	events.EnsureStream(ctx, js, 1)
	st, _ := events.NewJetStreamStore(ctx, nc, contracts.Fence())
	defer st.Close()
	for _, id := range []string{"o-1", "o-2", "o-3"} {
		e := events.Event{ID: events.NewID(), Type: "order.placed", SchemaVersion: 2, Source: "/ledger/order",
			AggregateID: id, OccurredAt: time.Now(), CorrelationID: id, Data: []byte(`{"order_id":"` + id + `"}`)}
		st.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: id}, Events: []events.Event{e}})
	}

	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "order-counts", Storage: jetstream.FileStorage})
	if err != nil {
		fmt.Println(err)
		return
	}
	counts, err := subscriber.NewAtomicKV(ctx, js, kv, "order-counts")
	if err != nil {
		fmt.Println(err)
		return
	}
	sub, err := subscriber.New(ctx, js, subscriber.Config{Name: "order-counts", Subjects: []string{"ledger.order.*.placed"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- sub.Run(runCtx, counts.Wrap(func(ctx context.Context, e events.Event) ([]subscriber.KVWrite, error) {
			n, rev := 0, uint64(0)
			if cur, err := kv.Get(ctx, "placed"); err == nil {
				n, rev = int(binary.BigEndian.Uint64(cur.Value())), cur.Revision()
			} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil, err // redelivered after a backoff
			}
			// Stored only if "placed" is still at the revision read: a
			// concurrent handler makes this one run again on the new value.
			v := binary.BigEndian.AppendUint64(nil, uint64(n+1))
			return []subscriber.KVWrite{{Key: "placed", Value: v, IfRevision: true, Revision: rev}}, nil
		}))
	}()
	for sub.Checkpoint() < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done
	cur, _ := kv.Get(ctx, "placed")
	fmt.Println("orders placed:", binary.BigEndian.Uint64(cur.Value()))
	// Output:
	// orders placed: 3
}

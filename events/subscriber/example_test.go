package subscriber_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/events/embedded"
	"github.com/marketledger/ledger/events/subscriber"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A service that sends an e-mail for every new order: a named durable
// subscription on the order context, made idempotent with Dedupe. Run it
// again and it resumes after the last order it handled.
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
	st, _ := events.NewJetStreamStore(ctx, nc)
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

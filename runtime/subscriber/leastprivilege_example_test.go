package subscriber_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/runtime/subscriber"
)

// A team's service that follows the log as its own least-privileged NATS
// user. The operator mints the user once:
//
//	ledger credentials subscriber --data DATA --team emails --subscription emails-orders
//
// and hands the team DATA/credentials/subscribers/emails.creds (or its NATS
// context); the running server admits it at once, with no restart. The
// service connects with that file (nats.UserCredentials, `nats --creds`)
// and runs the subscription it was granted; a subscription it was not
// granted is refused at once, as a permission error.
func Example_leastPrivilege() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "subscriber-example-")
	defer os.RemoveAll(dir)

	// The operator's side: the ledger's server runs (ledger serve, which
	// also creates the parking stream); mint the team's user.
	url, stop := startLedger(ctx, dir)
	defer stop()
	team, err := auth.MintSubscriber(dir, "emails", []string{"emails-orders"}, url)
	if err != nil {
		fmt.Println(err)
		return
	}

	// The team's side: its standard .creds file.
	nc, err := nats.Connect(url, nats.UserCredentials(team.CredsFile))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	sub, err := subscriber.New(ctx, js, subscriber.Config{Name: "emails-orders", Subjects: []string{"ledger.order.*.placed"}, MaxInFlight: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	kv, err := subscriber.DedupeBucket(ctx, js, "emails-orders", 24*time.Hour)
	if err != nil {
		fmt.Println(err)
		return
	}
	dedupe := subscriber.NewDedupe(10_000, kv)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- sub.Run(runCtx, dedupe.Wrap(func(ctx context.Context, e events.Event) error {
			fmt.Printf("e-mail for %s\n", e.AggregateID)
			if e.AggregateID == "o-2" {
				cancel()
			}
			return nil
		}))
	}()
	<-done

	// Another team's subscription name: refused by the server, at once.
	start := time.Now()
	_, err = subscriber.New(ctx, js, subscriber.Config{Name: "billing"})
	fmt.Println(events.KindOf(err), time.Since(start) < time.Second)
	// Output:
	// e-mail for o-1
	// e-mail for o-2
	// permission true
}

// startLedger starts the ledger's embedded server in dir with its users,
// creates the log and the parking stream as the operator, appends two
// orders, and returns the server's URL.
func startLedger(ctx context.Context, dir string) (string, func()) {
	set, err := auth.Ensure(dir)
	if err != nil {
		panic(err)
	}
	srv, err := embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort, Configure: set.Configure})
	if err != nil {
		panic(err)
	}
	nc, err := auth.Connect(srv.ClientURL(), set.CredsFile(auth.RoleOperator))
	if err != nil {
		panic(err)
	}
	js, _ := jetstream.New(nc)
	if _, err := events.EnsureStream(ctx, js, 1); err != nil {
		panic(err)
	}
	if _, err := subscriber.EnsureParkedStream(ctx, js, 1); err != nil {
		panic(err)
	}
	st, err := events.NewJetStreamStore(ctx, nc, contracts.Fence())
	if err != nil {
		panic(err)
	}
	for _, id := range []string{"o-1", "o-2"} {
		e := events.Event{ID: events.NewID(), Type: "order.placed", SchemaVersion: 2, Source: "/ledger/order",
			AggregateID: id, OccurredAt: time.Now(), CorrelationID: id, Data: []byte(`{"order_id":"` + id + `"}`)}
		if _, err := st.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: id}, Events: []events.Event{e}}); err != nil {
			panic(err)
		}
	}
	return srv.ClientURL(), func() { st.Close(); nc.Close(); srv.Shutdown() }
}

package auth_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
)

// TestSubscriberRole mints a team's subscriber user, connects with its
// .creds file and checks that it may create, pull from and acknowledge its
// own durable consumer and keep its dedupe bucket, and may not append to
// the log, create or delete another team's consumer, or create the
// parking stream. The user survives a restart of Ensure, and the accounts
// block lists it.
func TestSubscriberRole(t *testing.T) {
	dir := t.TempDir()
	sub, err := auth.MintSubscriber(dir, "emails", []string{"emails-orders"}, "nats://127.0.0.1:4222")
	if err != nil {
		t.Fatal(err)
	}
	if sub.Subscriptions[0] != "emails-orders" || len(sub.Subscriptions) != 1 {
		t.Errorf("subscriptions %v, want [emails-orders]", sub.Subscriptions)
	}
	for _, f := range []string{sub.SeedFile, sub.CredsFile, sub.ContextFile} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want a file of mode 0600", f, err, fi)
		}
	}
	if b, _ := os.ReadFile(sub.CredsFile); !strings.Contains(string(b), "BEGIN NATS USER JWT") || !strings.Contains(string(b), "BEGIN USER NKEY SEED") {
		t.Errorf("%s is not a .creds file:\n%s", sub.CredsFile, b)
	}
	set, err := auth.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	var conf strings.Builder
	if err := set.WriteServerConfig(&conf); err != nil || !strings.Contains(conf.String(), "subscriber-emails") {
		t.Errorf("server-config does not list the subscriber (%v):\n%s", err, conf.String())
	}
	srv, err := embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort, Configure: set.Configure})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opNC, err := auth.Connect(srv.ClientURL(), set.CredsFile(auth.RoleOperator))
	if err != nil {
		t.Fatal(err)
	}
	defer opNC.Close()
	op, _ := jetstream.New(opNC)
	if _, err := events.EnsureStream(ctx, op, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := op.CreateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{Durable: "sub-billing", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}

	v := &violations{ch: make(chan struct{}, 1)}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(sub.CredsFile), nats.ErrorHandler(v.handler))
	if err != nil {
		t.Fatalf("connect with %s: %v", filepath.Base(sub.CredsFile), err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	// Allowed: its own durable consumer, pulled and acknowledged; its
	// dedupe bucket.
	cons, err := js.CreateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{Durable: "sub-emails-orders",
		AckPolicy: jetstream.AckExplicitPolicy, FilterSubjects: []string{"ledger.order.>"}})
	if err != nil {
		t.Fatalf("create its own consumer: %v", err)
	}
	if _, err := op.Publish(ctx, "ledger.order.o-1.placed", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range msgs.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Errorf("acknowledge on its own consumer: %v", err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("pulled %d messages from its own consumer, want 1 (%v)", n, msgs.Error())
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "sub-dedupe-emails-orders"}); err != nil {
		t.Errorf("create its dedupe bucket: %v", err)
	}

	// Denied: each publish is dropped and reported.
	denied := map[string]func() error{
		"$JS.API.CONSUMER.CREATE.LEDGER.sub-billing": func() error {
			_, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{Durable: "sub-billing"})
			return err
		},
		"$JS.API.CONSUMER.DELETE.LEDGER.sub-billing": func() error { return nc.Publish("$JS.API.CONSUMER.DELETE.LEDGER.sub-billing", nil) },
		"$JS.API.STREAM.CREATE.LEDGER_PARKED":        func() error { return nc.Publish("$JS.API.STREAM.CREATE.LEDGER_PARKED", nil) },
		"ledger.order.o-2.placed":                    func() error { return nc.Publish("ledger.order.o-2.placed", []byte("{}")) },
		"$KV.ledger_checkout.position":               func() error { return nc.Publish("$KV.ledger_checkout.position", nil) },
	}
	for subject, do := range denied {
		go do() // a request waits for an answer that never comes: the violation is the answer
		v.wait(t, subject)
	}
}

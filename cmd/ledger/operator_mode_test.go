package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
)

// TestDataDirFromBeforeOperatorModeIsServed: a data directory written
// before operator mode (the roles' seeds and auth.json, no JWT, no
// operator or account key, and the log in the JetStream store of the
// global account) is opened with every event in place: its users keep
// their keys, get .creds files, and the stock client connects with them.
func TestDataDirFromBeforeOperatorModeIsServed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	before, err := auth.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	creds := before.Dir()
	for _, f := range []string{"account.nk", "nats-operator.nk", "nats-system.nk"} {
		if err := os.Remove(filepath.Join(creds, f)); err != nil {
			t.Fatal(err)
		}
	}
	for _, role := range auth.Roles() {
		os.Remove(before.CredsFile(role))
	}
	// The old server kept every client in the global account: one without
	// accounts writes the log there.
	const appended = 3
	func() {
		srv, err := embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Shutdown()
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if _, err := events.EnsureStream(ctx, js, 1); err != nil {
			t.Fatal(err)
		}
		st, err := events.NewJetStreamStore(ctx, nc)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		for _, id := range []string{"o-1", "o-2", "o-3"} {
			e := events.Event{ID: events.NewID(), Type: "order.placed", SchemaVersion: 1, Source: "/test",
				AggregateID: id, OccurredAt: time.Now(), Data: []byte(`{"a":1}`)}
			if _, err := st.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: id}, Events: []events.Event{e}}); err != nil {
				t.Fatal(err)
			}
		}
	}()

	n, err := openNode(ctx, &globals{dataDir: dir}, nodeConfig{role: auth.RoleInvestigator, port: embedded.RandomPort})
	if err != nil {
		t.Fatalf("open the data directory from before operator mode: %v", err)
	}
	defer n.Close()
	st, err := n.js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().State; got.Msgs != appended || got.LastSeq != appended {
		t.Errorf("the log holds %d messages up to %d; want the %d written before", got.Msgs, got.LastSeq, appended)
	}
	set, err := auth.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range auth.Roles() {
		a, _ := before.User(role)
		b, _ := set.User(role)
		if a.Nkey != b.Nkey {
			t.Errorf("%s: key changed from %s to %s", role, a.Nkey, b.Nkey)
		}
	}
	nc, err := nats.Connect(n.url, nats.UserCredentials(set.CredsFile(auth.RoleInvestigator)))
	if err != nil {
		t.Fatalf("the stock client with investigator.creds: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.Stream(ctx, events.StreamName); err != nil {
		t.Errorf("the investigator reads the log: %v", err)
	}
}

// Package nodetest starts what a test of the log needs: one embedded node
// in a temporary directory on a random port of 127.0.0.1, the LEDGER
// stream, a connection and a store on it, all stopped when the test ends.
// Tests of any module may use it (the module map lets tests start a node);
// code that is not a test must never import it.
package nodetest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/embedded"
)

// setupTimeout bounds creating the stream and opening the store.
const setupTimeout = 20 * time.Second

// Log is one node with the LEDGER stream (one replica) and a store on it.
type Log struct {
	Server *embedded.Server
	Conn   *nats.Conn
	JS     jetstream.JetStream
	Store  *events.JetStreamStore
}

// Start starts a node for t and opens a store on its LEDGER stream with
// opts (a service's tests pass the contracts' type checker and fence).
func Start(t testing.TB, opts ...events.Option) *Log {
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
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := events.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	st, err := events.NewJetStreamStore(ctx, nc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Log{Server: srv, Conn: nc, JS: js, Store: st}
}

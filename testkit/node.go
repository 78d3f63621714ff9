package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/embedded"
)

// setupTimeout bounds starting a server, creating the stream and opening a
// store; a slow shared machine needs seconds, a broken one never finishes.
const setupTimeout = 30 * time.Second

// Node is one embedded JetStream server with the LEDGER stream (one replica)
// and a store on it. Everything it holds is released by the test's cleanup.
type Node struct {
	// URL is the client URL of the server (nats://127.0.0.1:<port>).
	URL string
	// DataDir is the server's data directory, inside the test's TempDir.
	DataDir string
	// Server is the running embedded server.
	Server *embedded.Server
	// Conn is the connection the Store uses.
	Conn *nats.Conn
	// Store is a ready store on the LEDGER stream.
	Store *events.JetStreamStore

	storeOpts []events.Option
}

// NodeOption adjusts how StartNode starts a node.
type NodeOption func(*nodeConfig)

type nodeConfig struct {
	configure func(*server.Options)
	storeOpts []events.Option
}

// WithServerOptions lets a test adjust the nats-server options last (limits,
// accounts). It must not turn off fsync: use embedded directly for that.
func WithServerOptions(f func(*server.Options)) NodeOption {
	return func(c *nodeConfig) { c.configure = f }
}

// WithStoreOptions passes options to every store the node opens.
func WithStoreOptions(opts ...events.Option) NodeOption {
	return func(c *nodeConfig) { c.storeOpts = append(c.storeOpts, opts...) }
}

// StartNode starts a single embedded JetStream node on a random loopback
// port with fsync on every write, creates the LEDGER stream and opens a
// store on it. It fails the test if any step fails; t.Cleanup stops it all.
func StartNode(t testing.TB, opts ...NodeOption) *Node {
	t.Helper()
	var cfg nodeConfig
	for _, o := range opts {
		o(&cfg)
	}
	dir := t.TempDir()
	srv, err := embedded.Start(embedded.Config{
		DataDir:   dir,
		Port:      embedded.RandomPort,
		Configure: cfg.configure,
	})
	if err != nil {
		t.Fatalf("testkit: start node: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	n := &Node{URL: srv.ClientURL(), DataDir: dir, Server: srv, storeOpts: cfg.storeOpts}
	n.Conn = connect(t, n.URL)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	js, err := jetstream.New(n.Conn)
	if err != nil {
		t.Fatalf("testkit: jetstream: %v", err)
	}
	if _, err := events.EnsureStream(ctx, js, 1); err != nil {
		t.Fatalf("testkit: create stream: %v", err)
	}
	n.Store = openStore(t, n.Conn, n.storeOpts...)
	return n
}

// Connect opens another connection to the node, closed by t's cleanup.
func (n *Node) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	return connect(t, n.URL)
}

// NewStore opens another store on its own connection to the node, so that
// tests can race several clients whose caches disagree.
func (n *Node) NewStore(t testing.TB) *events.JetStreamStore {
	t.Helper()
	return openStore(t, connect(t, n.URL), n.storeOpts...)
}

// connect dials url (a comma-separated list is allowed) with a client that
// keeps reconnecting for the whole test, so that a node going away and
// coming back is survived.
func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url,
		nats.Name("testkit:"+t.Name()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectJitter(0, 0),
		nats.Timeout(5*time.Second),
	)
	if err != nil {
		t.Fatalf("testkit: connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// openStore opens a store on nc and closes it before nc is closed.
func openStore(t testing.TB, nc *nats.Conn, opts ...events.Option) *events.JetStreamStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	st, err := events.NewJetStreamStore(ctx, nc, append([]events.Option{contracts.Fence()}, opts...)...)
	if err != nil {
		t.Fatalf("testkit: open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/events/embedded"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

type serveOpts struct {
	http     string
	host     string
	port     int
	replicas int
	lazy     bool
}

func newServeCmd(g *globals) *cobra.Command {
	o := &serveOpts{}
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the ledger: the embedded NATS server and the LEDGER stream",
		Long: `serve starts an embedded NATS server with JetStream (fsync on every write) on
127.0.0.1:4222, creates the LEDGER stream or checks that an existing one keeps
the ledger's guarantees, and runs until SIGINT or SIGTERM.

With --nats it connects to an existing NATS cluster instead and creates or
checks the stream there (--replicas 3 on a cluster).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, g, o)
		},
	}
	c.Flags().StringVar(&o.http, "http", "127.0.0.1:8080", "address of the HTTP API (health, metrics, OpenAPI)")
	c.Flags().StringVar(&o.host, "host", "127.0.0.1", "address of the embedded NATS server's client port")
	c.Flags().IntVar(&o.port, "port", embedded.DefaultPort, "client port of the embedded NATS server")
	c.Flags().IntVar(&o.replicas, "replicas", 1, "replicas of the LEDGER stream when it is created (3 on a cluster)")
	c.Flags().BoolVar(&o.lazy, "unsafe-lazy-fsync", false, "do not fsync every write (acknowledged events can be lost on a crash; benchmarks only)")
	return c
}

// node is a connection to the log: an embedded server or a cluster.
type node struct {
	srv   *embedded.Server // nil with --nats
	nc    *nats.Conn
	js    jetstream.JetStream
	store *events.JetStreamStore
	url   string
}

func (n *node) Close() {
	if n.store != nil {
		n.store.Close()
	}
	if n.nc != nil {
		n.nc.Drain()
		n.nc.Close()
	}
	if n.srv != nil {
		n.srv.Shutdown()
	}
}

// openNode starts the embedded server (or connects with --nats), then
// creates or checks the LEDGER stream and opens the store.
func openNode(ctx context.Context, g *globals, host string, port, replicas int, lazy bool, log *zap.Logger) (*node, error) {
	n := &node{url: g.natsURL}
	if g.natsURL == "" {
		if err := os.MkdirAll(g.dataDir, 0o700); err != nil {
			return nil, usagef("data directory %s: %v", g.dataDir, err)
		}
		srv, err := embedded.Start(embedded.Config{DataDir: g.dataDir, Host: host, Port: port, LazyFsync: lazy, ServerName: "ledger"})
		if err != nil {
			return nil, usagef("%v", err)
		}
		n.srv, n.url = srv, srv.ClientURL()
	}
	nc, err := nats.Connect(n.url, nats.Name("ledger"), nats.MaxReconnects(-1))
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("connect to %s: %w", n.url, err)
	}
	n.nc = nc
	if n.js, err = jetstream.New(nc); err != nil {
		n.Close()
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := events.EnsureStream(cctx, n.js, replicas); err != nil {
		n.Close()
		return nil, err
	}
	if n.store, err = events.NewJetStreamStore(cctx, nc, events.WithLogger(log), events.WithTypeChecker(contracts.Checker{})); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

func runServe(ctx context.Context, g *globals, o *serveOpts) error {
	log := newLogger()
	defer log.Sync()
	n, err := openNode(ctx, g, o.host, o.port, o.replicas, o.lazy, log)
	if err != nil {
		return err
	}
	defer n.Close()
	log.Info("ledger serving", zap.String("nats", n.url), zap.String("data", g.dataDir),
		zap.String("stream", events.StreamName), zap.Bool("fsync_always", !o.lazy))
	a := newAPI(n, log)
	err = a.serveHTTP(ctx, o.http)
	log.Info("shut down: HTTP drained, pending appends settled, store closed")
	return err
}

func newLogger() *zap.Logger {
	cfg := zap.NewProductionConfig()
	cfg.Sampling = nil
	l, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return l
}

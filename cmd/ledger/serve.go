package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/events/embedded"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/services/order"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

type serveOpts struct {
	services    string
	projections bool
	http        string
	host        string
	port        int
	replicas    int
	lazy        bool
}

func newServeCmd(g *globals) *cobra.Command {
	o := &serveOpts{}
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the ledger: embedded NATS, the services, the read models, the notary and the HTTP API",
		Long: `serve starts an embedded NATS server with JetStream (fsync on every write) on
127.0.0.1:4222, creates the LEDGER stream or checks that an existing one keeps
the ledger's guarantees, and runs the listing, order, payment and policy
services (NATS micro on svc.ledger.<context>.<verb>, HTTP POST
/v1/commands/<context>.<verb>), the checkout process manager, the read models
and the notary, until SIGINT or SIGTERM; then it stops taking work, lets what
was acknowledged finish, and exits.

With --nats it connects to an existing NATS cluster instead and creates or
checks the stream there (--replicas 3 on a cluster). --services runs a subset,
so each service can be its own process; exactly one process of a deployment
should keep --projections on. The HTTP API is described at /openapi.json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, g, o)
		},
	}
	c.Flags().StringVar(&o.services, "services", strings.Join(allServices, ","), "comma-separated services this process runs (listing, order, payment, policy)")
	c.Flags().BoolVar(&o.projections, "projections", true, "run the read models and the notary (exactly one process of a deployment should)")
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
	lock  *dirLock         // held while srv runs
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
	n.lock.Release()
}

// openNode starts the embedded server (or connects with --nats), then
// creates or checks the LEDGER stream and opens the store.
func openNode(ctx context.Context, g *globals, host string, port, replicas int, lazy bool, log *zap.Logger) (*node, error) {
	n := &node{url: g.natsURL}
	if g.natsURL == "" {
		if err := os.MkdirAll(g.dataDir, 0o700); err != nil {
			return nil, usagef("data directory %s: %v", g.dataDir, err)
		}
		lock, err := lockDataDir(g.dataDir)
		switch {
		case errors.Is(err, errDirBusy):
			// Another ledger process serves this directory: use its server.
			info, err := readServeInfo(g.dataDir)
			if err != nil {
				return nil, usagef("%v", err)
			}
			n.url = info.NATS
		case err != nil:
			return nil, usagef("data directory %s: %v", g.dataDir, err)
		default:
			srv, err := embedded.Start(embedded.Config{DataDir: g.dataDir, Host: host, Port: port, LazyFsync: lazy, ServerName: "ledger"})
			if err != nil {
				lock.Release()
				return nil, usagef("%v", err)
			}
			n.srv, n.url, n.lock = srv, srv.ClientURL(), lock
		}
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
	enabled, err := parseServices(o.services)
	if err != nil {
		return err
	}
	log := newLogger()
	defer log.Sync()
	n, err := openNode(ctx, g, o.host, o.port, o.replicas, o.lazy, log)
	if err != nil {
		return err
	}
	defer n.Close()
	st, err := newStack(ctx, n.store, time.Now, enabled)
	if err != nil {
		return err
	}
	defer st.Close()
	stopMicro, err := serveMicro(n, st)
	if err != nil {
		return err
	}
	defer stopMicro()
	if st.order != nil {
		go runCheckout(ctx, n, st, log)
	}
	log.Info("ledger serving", zap.String("nats", n.url), zap.String("data", g.dataDir), zap.String("services", o.services),
		zap.String("stream", events.StreamName), zap.Bool("fsync_always", !o.lazy))
	if n.srv != nil {
		if err := writeServeInfo(g.dataDir, serveInfo{NATS: n.url, HTTP: o.http, PID: os.Getpid()}); err != nil {
			return err
		}
		defer removeServeInfo(g.dataDir)
	}
	a := newAPI(n, log)
	if o.projections {
		eng, err := startProjections(ctx, n, a)
		if err != nil {
			return err
		}
		defer eng.Stop()
		a.ready = eng.Err
	}
	a.mountCommands(st)
	if key, err := projections.LoadOrCreateKey(g.dataDir); err != nil {
		return err
	} else {
		a.mountSnapshots(key)
		if o.projections {
			go runNotary(ctx, n, key, log)
		}
	}
	err = a.serveHTTP(ctx, o.http)
	log.Info("shut down: HTTP drained, pending appends settled, store closed")
	return err
}

// startProjections runs every read model from its durable consumer, with
// lag exported on /metrics; /readyz fails while the engine has failed.
func startProjections(ctx context.Context, n *node, a *api) (*projections.Engine, error) {
	models, err := projections.NewModels(projections.ModelNames()...)
	if err != nil {
		return nil, err
	}
	eng, err := projections.NewEngine(ctx, n.js, projections.EngineConfig{Models: models, Registerer: a.reg})
	if err != nil {
		return nil, fmt.Errorf("projections: %w", err)
	}
	if err := eng.Start(ctx); err != nil {
		return nil, fmt.Errorf("projections: %w", err)
	}
	return eng, nil
}

// notaryEvery is how often `ledger serve` appends a signed checkpoint of the
// log's Merkle tree.
const notaryEvery = time.Minute

// runNotary folds the log into the Merkle tree and appends signed
// checkpoints until ctx ends, restarting after a failure.
func runNotary(ctx context.Context, n *node, key ed25519.PrivateKey, log *zap.Logger) {
	for ctx.Err() == nil {
		if err := projections.NewNotary(n.store, key).Run(ctx, notaryEvery); err != nil && ctx.Err() == nil {
			log.Warn("notary stopped; restarting", zap.Error(err))
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
		}
	}
}

// parseServices checks a --services list.
func parseServices(list string) (map[string]bool, error) {
	enabled := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(allServices, name) {
			return nil, usagef("unknown service %q in --services: use %s", name, strings.Join(allServices, ", "))
		}
		enabled[name] = true
	}
	return enabled, nil
}

// serveMicro exposes the running services over NATS request-reply
// (svc.ledger.<context>.<verb>, discoverable with `nats micro ls`).
func serveMicro(n *node, st *stack) (func(), error) {
	var stops []func() error
	stop := func() {
		for _, s := range stops {
			s()
		}
	}
	add := func(svc micro.Service, err error) error {
		if err != nil {
			stop()
			return err
		}
		stops = append(stops, svc.Stop)
		return nil
	}
	if st.listing != nil {
		if err := add(st.listing.Serve(n.nc)); err != nil {
			return nil, err
		}
	}
	if st.order != nil {
		if err := add(st.order.Serve(n.nc)); err != nil {
			return nil, err
		}
	}
	if st.payment != nil {
		if err := add(st.payment.Serve(n.nc)); err != nil {
			return nil, err
		}
	}
	if st.policy != nil {
		if err := add(st.policy.Serve(n.nc)); err != nil {
			return nil, err
		}
	}
	return stop, nil
}

// runCheckout drives the checkout process manager until ctx ends; it is
// restarted after a failure, resuming from its checkpoint.
func runCheckout(ctx context.Context, n *node, st *stack, log *zap.Logger) {
	for ctx.Err() == nil {
		c := order.NewCheckout(order.CheckoutConfig{Store: n.store, Conn: n.nc, Orders: st.order, Clock: time.Now})
		if err := c.Run(ctx); err != nil && ctx.Err() == nil {
			log.Warn("checkout process manager stopped; restarting from its checkpoint", zap.Error(err))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
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

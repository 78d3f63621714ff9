package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/node/tlsconf"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/projections/notary"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/service"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/services/policy"
)

type serveOpts struct {
	// perClient and total bound the HTTP requests in flight (0: the
	// httpauth defaults).
	perClient   int
	total       int
	tlsCert     string
	tlsKey      string
	tokens      string
	services    string
	projections bool
	http        string
	host        string
	port        int
	replicas    int
	lazy        bool
	breakGlass  string
	// skewMax bounds the measured clock skew of the services' decision
	// clock against the log server's (command.Skew).
	skewMax time.Duration
	// issuers is the policy issuers file (default DATA/policy-issuers.json).
	issuers string
}

func newServeCmd(g *globals) *cobra.Command {
	o := &serveOpts{}
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the ledger: embedded NATS, the services, the read models, the notary and the HTTP API",
		Long: `serve starts an embedded NATS server with JetStream (fsync on every write) on
127.0.0.1:4222, creates the LEDGER stream or checks that an existing one keeps
the ledger's guarantees and holds every position the ledger recorded it held
(the read models' checkpoints, the notary's last checkpoint and
DATA/ledger-watermark.json; a log that lost history is refused), and runs
the listing, order, payment and policy services (NATS micro on
svc.ledger.<context>.<verb>, HTTP POST
/v1/commands/<context>.<verb>), the checkout process manager, the read models
and the notary, until SIGINT or SIGTERM; then it stops taking work, lets what
was acknowledged finish, and exits.

The embedded server admits only the ledger's NATS users, one per role, each
allowed only what its work needs (a service appends only to its own context);
it runs in operator mode, and each user's standard .creds file (a user JWT
signed by the ledger's account, and its seed) is written to DATA/credentials
on first start, for the stock nats CLI (--creds) and the other ledger
subcommands. Each service runs
as its own user even inside one process. --tls-cert and --tls-key turn on
TLS for the NATS client port and the HTTP API.

The HTTP API wants a bearer token on every endpoint but /healthz, /readyz and
/openapi.json; issue tokens with 'ledger token issue' (they are in force
within a second, no restart). The API is described at /openapi.json.

With --nats it connects to an existing NATS cluster instead and creates or
checks the stream there (--replicas 3 on a cluster), with the users' .creds
files in --creds (see docs/operations.md). --services runs a subset, so each service
can be its own process; exactly one process of a deployment should keep
--projections on.`,
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
	c.Flags().DurationVar(&o.skewMax, "max-clock-skew", command.DefaultSkewMax, "refuse fenced commands and report not ready while the services' clock is further than this from the log server's")
	c.Flags().IntVar(&o.replicas, "replicas", 1, "replicas of the LEDGER stream when it is created (3 on a cluster)")
	c.Flags().StringVar(&o.tlsCert, "tls-cert", "", "certificate (PEM) for TLS on the NATS client port and the HTTP API (off by default; loopback)")
	c.Flags().StringVar(&o.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	c.Flags().IntVar(&o.perClient, "max-in-flight-per-client", httpauth.DefaultPerClient, "HTTP requests in flight per client (its token, or its address without one); more are answered 429")
	c.Flags().IntVar(&o.total, "max-in-flight", httpauth.DefaultTotal, "HTTP requests in flight in all; more are answered 503")
	c.Flags().StringVar(&o.tokens, "tokens", "", "API tokens file (default DATA/credentials/tokens.json; see 'ledger token')")
	c.Flags().StringVar(&o.breakGlass, "break-glass-admin", "", "public nkey (U...) of a break-glass administrator the embedded NATS server admits until this process stops: the only user that may change or delete the LEDGER stream (see docs/operations.md)")
	c.Flags().StringVar(&o.issuers, "policy-issuers", "", "file naming who may issue policy, {\"policy_issuers\": [\"kemendag\"]} (default DATA/"+issuersFile+"; without it: "+strings.Join(defaultIssuers, ", ")+"); read on every policy command")
	c.Flags().BoolVar(&o.lazy, "unsafe-lazy-fsync", false, "do not fsync every write (acknowledged events can be lost on a crash; benchmarks only)")
	return c
}

func runServe(ctx context.Context, g *globals, o *serveOpts) error {
	enabled, err := parseServices(o.services)
	if err != nil {
		return err
	}
	if err := checkCredentialsDir(g.credsDir); err != nil {
		return err
	}
	serverTLS, err := o.serverTLS()
	if err != nil {
		return err
	}
	log := newLogger()
	defer log.Sync()
	tracing := startTracing(ctx, log)
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		defer cancel()
		tracing.Shutdown(fctx)
	}()
	// The node's own user is the investigator: the HTTP API's reads use it.
	// Each service, the projections and the notary act as their own users.
	n, err := openNode(ctx, g, nodeConfig{role: auth.RoleInvestigator, host: o.host, port: o.port, replicas: o.replicas,
		lazy: o.lazy, serverTLS: serverTLS, ensure: true, exclusive: true, breakGlass: o.breakGlass, log: log})
	if err != nil {
		return err
	}
	defer n.Close()
	if o.breakGlass != "" {
		if n.srv == nil {
			return usagef("--break-glass-admin applies to the embedded NATS server only; on a cluster, add the administrator to the servers' configuration (docs/operations.md)")
		}
		log.Warn("break-glass administrator admitted until this process stops: it may change or delete the LEDGER stream",
			zap.String("nkey", o.breakGlass))
	}
	// Fail closed: a log that holds less than the ledger recorded of it
	// is not served (docs/adr/0012-the-log-cannot-shrink.md).
	if err := checkHistory(ctx, n.js, g.dataDir); err != nil {
		return fmt.Errorf("%w; refusing to serve", err)
	}
	if err := raiseWatermarkToHead(ctx, n.js, g.dataDir); err != nil {
		return fmt.Errorf("record the log's length in %s: %w", watermarkFile, err)
	}
	wctx, stopWatermark := context.WithCancel(ctx)
	watermarkDone := make(chan struct{})
	go func() { defer close(watermarkDone); keepWatermark(wctx, n.js, g.dataDir, log) }()
	defer func() { stopWatermark(); <-watermarkDone }()
	if o.skewMax < 0 {
		return usagef("--max-clock-skew %s: want a positive duration", o.skewMax)
	}
	skew := &command.Skew{Max: o.skewMax} // 0: command.DefaultSkewMax
	issuers, err := issuersFrom(g.dataDir, o.issuers)
	if err != nil {
		return err
	}
	st, err := newStack(ctx, n.storeOf(ctx), time.Now, enabled, skew, withIssuers(issuers))
	if err != nil {
		return err
	}
	defer st.Close()
	for _, r := range st.refusals {
		r.SetLogger(log)
	}
	if st.policy != nil {
		// Scheduled policy changes take effect when the activator appends
		// their activation; several processes may run it (ADR 0004).
		actx, stopActivator := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			st.policy.RunActivator(actx, policy.ActivatorTick, func(err error) { log.Warn("policy activation failed; retrying", zap.Error(err)) })
		}()
		defer func() { stopActivator(); <-done }()
	}
	natsCmds := newNATSCommands()
	stopMicro, err := serveMicro(ctx, n, st, service.WithObserver(natsCmds.observe))
	if err != nil {
		return err
	}
	defer stopMicro()
	var checkoutRunner *checkout.Runner
	if st.order != nil {
		var stopCheckout func()
		checkoutRunner, stopCheckout, err = startCheckout(ctx, n, time.Now, log)
		if err != nil {
			return err
		}
		// On shutdown the manager stops before the connections close.
		defer stopCheckout()
	}
	if o.lazy && n.srv == nil {
		log.Warn("--unsafe-lazy-fsync applies to the embedded NATS server only; with --nats the servers' configuration decides")
	}
	dur, err := checkDurability(ctx, n.js, n.srv != nil, o.lazy, o.replicas)
	if err != nil {
		return err
	}
	logDurability(log, dur)
	log.Info("ledger serving", append([]zap.Field{zap.String("nats", n.url), zap.String("data", g.dataDir), zap.String("services", o.services),
		zap.String("stream", events.StreamName), zap.Bool("nats_auth", n.creds != ""),
		zap.Bool("tls", serverTLS != nil)}, dur.fields()...)...)
	if n.srv != nil {
		ca := ""
		if g.tlsCA != "" {
			if ca, err = filepath.Abs(g.tlsCA); err != nil {
				return err
			}
		}
		if err := writeServeInfo(g.dataDir, serveInfo{NATS: n.url, HTTP: o.http, TLSCA: ca, PID: os.Getpid(), BreakGlassJWT: n.breakGlassJWT}); err != nil {
			return err
		}
		defer removeServeInfo(g.dataDir)
	}
	tokensPath := o.tokens
	if tokensPath == "" {
		tokensPath = filepath.Join(credentialsDir(g.dataDir), tokensFile)
	}
	tokens, err := httpauth.OpenTokenFile(tokensPath, log)
	if err != nil {
		return usagef("%v", err)
	}
	if tokens.Len() == 0 {
		log.Warn("no API tokens yet: every endpoint but /healthz, /readyz and /openapi.json answers 401; issue one with 'ledger token issue'",
			zap.String("tokens", tokensPath))
	}
	if o.perClient < 0 || o.total < 0 || (o.total > 0 && o.perClient > o.total) {
		return usagef("--max-in-flight-per-client %d and --max-in-flight %d: want 0 < per client <= total", o.perClient, o.total)
	}
	a := newAPI(n, tokens, httpauth.NewLimiter(o.perClient, o.total, log), log)
	a.history = &historyGuard{js: n.js, dataDir: g.dataDir}
	a.watchTracing(tracing)
	a.watchParked(n.js)
	a.reg.MustRegister(natsCmds.duration)
	if checkoutRunner != nil {
		a.watchCheckout(checkoutRunner)
	}
	if o.projections {
		pc, err := n.as(ctx, auth.RoleProjections)
		if err != nil {
			return err
		}
		eng, err := startProjections(ctx, pc, a)
		if err != nil {
			return err
		}
		defer eng.Stop()
		a.ready = eng.Err
		a.buckets = []string{"KV_" + projections.StateBucket, "OBJ_" + projections.SnapshotBucket}
	}
	a.watchSkew(skew)
	a.watchRefusalRecords(st.refusalStats)
	if st.view != nil {
		a.watchPolicyView(st.view)
	}
	a.mountCommands(st)
	a.mountState(st)
	// Every serve keeps its own as-of index: a cache of the log in its
	// data directory, which needs no other process.
	asOf, stopIndex, err := startIndex(ctx, g.dataDir, n.store, log)
	if err != nil {
		return err
	}
	defer stopIndex()
	a.mountModels(asOf)
	if key, err := notary.LoadOrCreateKey(g.dataDir); err != nil {
		return err
	} else {
		a.mountSnapshots(key, asOf.rq)
		if err := a.mountConsole(ctx, tokens, g.dataDir, key, g.zone()); err != nil {
			return err
		}
		if o.projections {
			pc, err := n.as(ctx, auth.RoleProjections)
			if err != nil {
				return err
			}
			nw := &notaryWatch{started: time.Now(), head: pc.store.LastPosition}
			a.watchNotary(nw)
			go runNotary(ctx, pc, key, g.dataDir, log, nw.checkpointed)
		}
	}
	if serving != nil {
		serving(a)
	}
	err = a.serveHTTP(ctx, o.http, serverTLS)
	log.Info("shut down: HTTP drained, pending appends settled, store closed")
	return err
}

// serving, when set (by tests), is shown the API once every part of serve
// is mounted and registered.
var serving func(*api)

// serverTLS loads --tls-cert and --tls-key, if given: one certificate for
// the NATS client port and the HTTP API.
func (o *serveOpts) serverTLS() (*tls.Config, error) {
	if o.tlsCert == "" && o.tlsKey == "" {
		return nil, nil
	}
	if o.tlsCert == "" || o.tlsKey == "" {
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	cfg, err := tlsconf.Server(tlsconf.Files{Cert: o.tlsCert, Key: o.tlsKey}, false)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return cfg, nil
}

// startProjections runs every read model from its durable consumer, with
// lag exported on /metrics; /readyz fails while the engine has failed.
func startProjections(ctx context.Context, n *roleConn, a *api) (*projections.Engine, error) {
	models, err := models.NewModels(models.ModelNames()...)
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
// checkpoints until ctx ends, restarting after a failure. Each checkpoint
// is also recorded in dataDir's watermark file, the evidence of the log's
// length that outlives the stream.
func runNotary(ctx context.Context, n *roleConn, key ed25519.PrivateKey, dataDir string, log *zap.Logger,
	seen func(contracts.NotaryCheckpointed, events.Appended)) {
	record := func(c contracts.NotaryCheckpointed, a events.Appended) {
		seen(c, a)
		if err := recordCheckpoint(ctx, n.js, dataDir, c, a); err != nil {
			log.Warn("could not record the notary's checkpoint", zap.String("file", watermarkFile), zap.Error(err))
		}
	}
	for ctx.Err() == nil {
		nt := notary.New(n.store, key)
		nt.OnCheckpoint(record)
		if err := nt.Run(ctx, notaryEvery); err != nil && ctx.Err() == nil {
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
func serveMicro(ctx context.Context, n *node, st *stack, opts ...service.Option) (func(), error) {
	var stops []func() error
	stop := func() {
		for _, s := range stops {
			s()
		}
	}
	add := func(role string, serve func(*nats.Conn) (micro.Service, error)) error {
		c, err := n.as(ctx, role)
		if err != nil {
			return err
		}
		svc, err := serve(c.nc)
		if err != nil {
			return err
		}
		stops = append(stops, svc.Stop)
		return nil
	}
	var err error
	if st.listing != nil {
		err = add(auth.RoleListing, func(nc *nats.Conn) (micro.Service, error) { return st.listing.Serve(nc, opts...) })
	}
	if err == nil && st.order != nil {
		err = add(auth.RoleOrder, func(nc *nats.Conn) (micro.Service, error) { return st.order.Serve(nc, opts...) })
	}
	if err == nil && st.payment != nil {
		err = add(auth.RolePayment, func(nc *nats.Conn) (micro.Service, error) { return st.payment.Serve(nc, opts...) })
	}
	if err == nil && st.policy != nil {
		err = add(auth.RolePolicy, func(nc *nats.Conn) (micro.Service, error) { return st.policy.Serve(nc, opts...) })
	}
	if err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// startCheckout runs the checkout (services/checkout) on the order
// service's NATS user, deciding its business deadlines on clock, until the
// returned stop is called: `ledger serve` runs it on the wall clock, `ledger
// demo` on its simulated one (and drains it after every simulated step).
func startCheckout(ctx context.Context, n *node, clock func() time.Time, log *zap.Logger) (*checkout.Runner, func(), error) {
	oc, err := n.as(ctx, auth.RoleOrder)
	if err != nil {
		return nil, nil, err
	}
	c := checkout.New(checkout.Config{Store: oc.store, Conn: oc.nc, Clock: clock,
		OnError: func(err error) {
			log.Warn("checkout process manager resumes from its checkpoint", zap.Error(err))
		}})
	cctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); runCheckout(cctx, c, log) }()
	return c, func() { stop(); <-done }, nil
}

// runCheckout runs the checkout until ctx ends; it is restarted after a
// failure, resuming from its checkpoint.
func runCheckout(ctx context.Context, c *checkout.Runner, log *zap.Logger) {
	for ctx.Err() == nil {
		err := c.Run(ctx)
		if events.KindOf(err) == events.KindIntegrity {
			log.Error("checkout stopped: its checkpoint is damaged; no order is checked out until it is repaired or deleted", zap.Error(err))
			return
		}
		if err != nil && ctx.Err() == nil {
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

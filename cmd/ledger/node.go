package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/node/tlsconf"
	"github.com/marketledger/ledger/runtime/subscriber"
)

// nodeConfig says how a subcommand reaches the log and as whom.
type nodeConfig struct {
	// role is the NATS user the subcommand acts as (auth.Role*): the least
	// privileged one its work needs.
	role string
	// host and port of the embedded server, when this process starts it
	// (embedded.RandomPort for any free port).
	host string
	port int
	// replicas of the LEDGER stream when it is created.
	replicas int
	// lazy turns off fsync on every write (benchmarks only).
	lazy bool
	// serverTLS, when set, turns on TLS on the embedded server's client port.
	serverTLS *tls.Config
	// ensure creates the stream if it is missing (as the operator) even when
	// this process did not start the server: `ledger serve` does.
	ensure bool
	// breakGlass, when set, is the public nkey of a break-glass
	// administrator the embedded server admits for this process's life
	// (auth.BreakGlass): the one user that may change the stream.
	breakGlass string
	// exclusive refuses a data directory another process holds instead
	// of joining its server: `ledger serve` runs one server per directory.
	exclusive bool
	log       *zap.Logger
}

// roleConn is one NATS connection as one role, with the log on it.
type roleConn struct {
	closed chan struct{} // closed when nc is
	nc     *nats.Conn
	js     jetstream.JetStream
	store  *events.JetStreamStore
}

func (c *roleConn) close() {
	if c.store != nil {
		c.store.Close()
	}
	if c.nc != nil {
		// Drain lets handlers in progress answer (bounded by the
		// connection's drain timeout); the connection closes when done.
		if c.nc.Drain() == nil {
			select {
			case <-c.closed:
			case <-time.After(drainWait):
			}
		}
		c.nc.Close()
	}
}

// drainWait bounds how long closing a connection waits for its drain.
const drainWait = 5 * time.Second

// node is a connection to the log: an embedded server or a cluster. Its own
// connection (nc, js, store) is the subcommand's role; `as` opens others,
// so that in one process each service still acts as its own NATS user.
type node struct {
	// appendMetrics are fed by every store the node opens.
	appendMetrics *storeMetrics
	srv           *embedded.Server // nil when joining a running serve or with --nats
	lock          *dirLock         // held while srv runs
	url           string
	tlsCA         string // CA file trusted for the server's certificate ("" none)
	// creds is the credentials directory (one <role>.creds file per role),
	// or one .creds file every connection uses; "" means connect without
	// credentials (--nats to a cluster without users).
	creds string
	// breakGlassJWT is the user JWT of the break-glass administrator the
	// embedded server admits for this process's life ("" none).
	breakGlassJWT string
	opts          []nats.Option
	log           *zap.Logger

	role string
	*roleConn

	mu    sync.Mutex
	roles map[string]*roleConn
}

func (n *node) Close() {
	n.mu.Lock()
	for _, c := range n.roles {
		c.close()
	}
	n.roles = nil
	n.mu.Unlock()
	if n.roleConn != nil {
		n.roleConn.close()
	}
	if n.srv != nil {
		n.srv.Shutdown()
	}
	n.lock.Release()
}

// connect opens a connection as role; closed, when not nil, is closed
// when the connection is.
func (n *node) connect(role string, closed chan struct{}) (*nats.Conn, error) {
	opts := append([]nats.Option{nats.Name("ledger-" + role), nats.MaxReconnects(-1)}, n.opts...)
	if closed != nil {
		opts = append(opts, nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	}
	if n.creds == "" {
		nc, err := nats.Connect(n.url, opts...)
		if errors.Is(err, nats.ErrAuthorization) {
			return nil, usagef("connect to %s: the server wants credentials: give --creds DIR (the directory of <role>%s files)", n.url, auth.CredsExt)
		}
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", n.url, err)
		}
		return nc, nil
	}
	creds := filepath.Join(n.creds, role+auth.CredsExt)
	if fi, err := os.Stat(n.creds); err == nil && fi.Mode().IsRegular() {
		creds = n.creds // one .creds file: the one user every connection is
	}
	if _, err := os.Stat(creds); err != nil {
		return nil, usagef("credentials for role %s: %v (the embedded server writes them on first start; 'ledger credentials init --data DATA' writes them from the seeds; for a cluster see docs/operations.md)", role, err)
	}
	nc, err := auth.Connect(n.url, creds, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s as %s (%s): %w", n.url, role, creds, err)
	}
	return nc, nil
}

// open connects as role and opens the log on the connection.
func (n *node) open(ctx context.Context, role string) (*roleConn, error) {
	closed := make(chan struct{})
	nc, err := n.connect(role, closed)
	if err != nil {
		return nil, err
	}
	c := &roleConn{nc: nc, closed: closed}
	if c.js, err = jetstream.New(nc); err != nil {
		c.close()
		return nil, err
	}
	if c.store, err = events.NewJetStreamStore(ctx, nc, events.WithLogger(n.log), events.WithTypeChecker(contracts.Checker{}), contracts.Fence(),
		events.WithObserver(n.appendMetrics)); err != nil {
		c.close()
		return nil, fmt.Errorf("open the log as %s: %w", role, err)
	}
	return c, nil
}

// as returns the connection of role, opening it on first use.
func (n *node) as(ctx context.Context, role string) (*roleConn, error) {
	if role == n.role {
		return n.roleConn, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.roles[role]; ok {
		return c, nil
	}
	c, err := n.open(ctx, role)
	if err != nil {
		return nil, err
	}
	if n.roles == nil {
		n.roles = map[string]*roleConn{}
	}
	n.roles[role] = c
	return c, nil
}

// stores returns the stores of every connection the node opened.
func (n *node) stores() []*events.JetStreamStore {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := []*events.JetStreamStore{n.store}
	for _, c := range n.roles {
		out = append(out, c.store)
	}
	return out
}

// storeOf returns the store of a service's own NATS user.
func (n *node) storeOf(ctx context.Context) func(service string) (*events.JetStreamStore, error) {
	return func(service string) (*events.JetStreamStore, error) {
		c, err := n.as(ctx, service)
		if err != nil {
			return nil, err
		}
		return c.store, nil
	}
}

// credentialsDir is where the embedded server keeps its users' seeds.
func credentialsDir(dataDir string) string { return filepath.Join(dataDir, auth.Dir) }

// openNode starts the embedded server with its least-privilege users (or
// joins the server of a `ledger serve` running on the same data directory,
// or connects to --nats), makes sure the LEDGER stream exists and keeps the
// ledger's guarantees, and connects as cfg.role.
func openNode(ctx context.Context, g *globals, cfg nodeConfig) (*node, error) {
	if cfg.log == nil {
		cfg.log = zap.NewNop()
	}
	if cfg.host == "" {
		cfg.host = "127.0.0.1"
	}
	if cfg.replicas == 0 {
		cfg.replicas = 1
	}
	if cfg.role == "" {
		cfg.role = auth.RoleInvestigator
	}
	n := &node{url: g.natsURL, role: cfg.role, log: cfg.log, tlsCA: g.tlsCA, appendMetrics: newStoreMetrics()}
	if g.natsURL == "" {
		if err := n.startOrJoin(g, cfg); err != nil {
			n.Close()
			return nil, err
		}
	} else if g.credsDir != "" {
		n.creds = g.credsDir
	} else if _, err := os.Stat(filepath.Join(credentialsDir(g.dataDir), auth.RoleOperator+auth.CredsExt)); err == nil {
		n.creds = credentialsDir(g.dataDir)
	}
	if n.tlsCA != "" {
		opt, err := tlsconf.ClientOption(tlsconf.Files{CA: n.tlsCA})
		if err != nil {
			n.Close()
			return nil, usagef("--tls-ca: %v", err)
		}
		n.opts = append(n.opts, opt)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if n.srv != nil || cfg.ensure {
		if err := n.ensureStream(cctx, cfg.replicas, g.dataDir); err != nil {
			n.Close()
			return nil, err
		}
	}
	c, err := n.open(cctx, cfg.role)
	if err != nil {
		n.Close()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("no %s stream at %s: start 'ledger serve' first", events.StreamName, n.url)
		}
		return nil, err
	}
	n.roleConn = c
	return n, nil
}

// startOrJoin starts the embedded server on the data directory, or, when a
// `ledger serve` holds the directory, takes its address from serve.json.
func (n *node) startOrJoin(g *globals, cfg nodeConfig) error {
	if err := os.MkdirAll(g.dataDir, 0o700); err != nil {
		return usagef("data directory %s: %v", g.dataDir, err)
	}
	n.creds = credentialsDir(g.dataDir)
	if g.credsDir != "" {
		n.creds = g.credsDir
	}
	lock, err := lockDataDir(g.dataDir)
	switch {
	case errors.Is(err, errDirBusy) && cfg.exclusive:
		return busyError(g.dataDir)
	case errors.Is(err, errDirBusy):
		info, err := readServeInfo(g.dataDir)
		if err != nil {
			return usagef("%v", err)
		}
		n.url = info.NATS
		if n.tlsCA == "" {
			n.tlsCA = info.TLSCA
		}
		return nil
	case err != nil:
		return usagef("data directory %s: %v", g.dataDir, err)
	}
	n.lock = lock
	set, err := auth.Ensure(g.dataDir)
	if err != nil {
		return usagef("%v", err)
	}
	n.creds = set.Dir()
	configure := set.Configure
	if cfg.breakGlass != "" {
		if configure, n.breakGlassJWT, err = set.BreakGlass(cfg.breakGlass); err != nil {
			return usagef("--break-glass-admin: %v", err)
		}
	}
	// A data directory from before operator mode keeps its streams under
	// the global account; the server now keeps them under the ledger's.
	if moved, err := embedded.AdoptGlobalAccount(g.dataDir, set.Account()); err != nil {
		return usagef("%v", err)
	} else if moved {
		cfg.log.Info("moved the JetStream store to the ledger's NATS account (operator mode)", zap.String("account", set.Account()))
	}
	if cfg.serverTLS != nil {
		configure = tlsconf.Chain(configure, tlsconf.Configure(cfg.serverTLS))
	}
	srv, err := embedded.Start(embedded.Config{DataDir: g.dataDir, Host: cfg.host, Port: cfg.port, LazyFsync: cfg.lazy,
		ServerName: "ledger", Configure: func(o *server.Options) { configure(o) }})
	if err != nil {
		return usagef("%v", err)
	}
	n.srv, n.url = srv, srv.ClientURL()
	return nil
}

// ensureStream creates the LEDGER stream if it is missing, or checks an
// existing one, as the operator: no other role may create streams. A
// missing stream is created only when nothing in dataDir or the read
// models' checkpoints says the log once held events: an empty stream
// created in place of a deleted one would be served as if history had
// never been.
func (n *node) ensureStream(ctx context.Context, replicas int, dataDir string) error {
	nc, err := n.connect(auth.RoleOperator, nil)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := awaitStreamLeader(ctx, js, events.StreamName, n.log); errors.Is(err, jetstream.ErrStreamNotFound) {
		if err := checkHistory(ctx, js, dataDir); err != nil {
			return fmt.Errorf("%w; refusing to create an empty stream in its place", err)
		}
	}
	if _, err = events.EnsureStream(ctx, js, replicas); err != nil {
		return err
	}
	return ensureParkedStream(ctx, js, n.log)
}

// ensureParkedStream creates the subscribers' parking stream with the
// LEDGER stream's replicas, or raises an existing one's to them: a service
// that subscribes as the subscriber role may read the stream's settings
// but not create or change it. On a fresh cluster several serve processes
// create it at once, and a stream another one just created answers nothing
// until it has a leader: it waits for the leader and asks again, within
// events.LeaderWaitMax.
func ensureParkedStream(ctx context.Context, js jetstream.JetStream, log *zap.Logger) error {
	want, err := subscriber.LogReplicas(ctx, js)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(events.LeaderWaitMax)
	for {
		actx, cancel := context.WithTimeout(ctx, parkedAsk)
		st, err := subscriber.EnsureParkedStream(actx, js, want)
		cancel()
		if err == nil {
			if cfg := st.CachedInfo().Config; cfg.Replicas < want {
				cfg.Replicas = want
				if _, err := js.UpdateStream(ctx, cfg); err != nil {
					return fmt.Errorf("raise the replicas of stream %s to %d: %w", subscriber.ParkedStreamName, want, err)
				}
			}
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		if _, werr := awaitStreamLeader(ctx, js, subscriber.ParkedStreamName, log); werr != nil && !errors.Is(werr, jetstream.ErrStreamNotFound) {
			return err
		}
	}
}

// parkedAsk bounds one attempt at creating or reading the parking stream.
const parkedAsk = 5 * time.Second

// checkCredentialsDir reports a --creds directory that does not exist.
func checkCredentialsDir(dir string) error {
	if dir == "" {
		return nil
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		if err == nil {
			err = fs.ErrInvalid
		}
		if err == fs.ErrInvalid {
			return usagef("--creds %s: serve connects each service, the read models and the notary as a NATS user of its own; give the directory holding their <role>%s files", dir, auth.CredsExt)
		}
		return usagef("--creds %s: %v (want the directory holding <role>%s files)", dir, err, auth.CredsExt)
	}
	return nil
}

// awaitStreamLeader waits, bounded by events.LeaderWaitMax, until stream
// name has a leader, saying in the log what it waits for when the first ask
// is not answered at once: on a cluster a stream or bucket another process
// just created answers nothing until it elects one.
func awaitStreamLeader(ctx context.Context, js jetstream.JetStream, name string, log *zap.Logger) (jetstream.Stream, error) {
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	s, err := events.WaitStreamLeader(qctx, js, name)
	cancel()
	if err == nil || errors.Is(err, jetstream.ErrStreamNotFound) || ctx.Err() != nil {
		return s, err
	}
	log.Info("waiting for a stream to elect a leader", zap.String("stream", name), zap.Duration("at_most", events.LeaderWaitMax))
	wctx, cancel := context.WithTimeout(ctx, events.LeaderWaitMax)
	defer cancel()
	return events.WaitStreamLeader(wctx, js, name)
}

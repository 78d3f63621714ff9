// Package embedded runs a nats-server with JetStream inside the ledger's
// process: the default home of the LEDGER stream. It listens on loopback so
// that the stock nats CLI can inspect the log, and fsyncs every write unless
// told otherwise. It must never be configured to acknowledge before fsync
// without the caller asking for it by name.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultPort is the NATS client port the stock CLI expects.
const DefaultPort = 4222

// RandomPort asks for any free port.
const RandomPort = -1

// Config configures an embedded server. The zero value (plus DataDir) is the
// safe default: loopback, port 4222, fsync on every write.
type Config struct {
	// DataDir holds the JetStream store (DataDir/jetstream).
	DataDir string
	// Host to listen on; default 127.0.0.1.
	Host string
	// Port for clients; 0 means DefaultPort, RandomPort any free port.
	Port int
	// LazyFsync turns off fsync on every write. Only benchmarks that compare
	// against it set this: acknowledged writes can be lost on a crash.
	LazyFsync bool
	// ServerName names the node (required in a cluster).
	ServerName string
	// Cluster, when set, joins a cluster of JetStream nodes.
	Cluster *ClusterConfig
	// Configure, when set, may adjust the server options last (TLS,
	// accounts, limits).
	Configure func(*server.Options)
	// ReadyTimeout bounds the wait for the server to accept clients.
	ReadyTimeout time.Duration
}

// ClusterConfig joins the server to a cluster over routes.
type ClusterConfig struct {
	Name   string
	Host   string
	Port   int      // route listen port
	Routes []string // nats-route://host:port of every node (may include self)
}

// Server is a running embedded nats-server.
type Server struct {
	ns  *server.Server
	cfg Config
}

// Options returns the server options a Config stands for.
func (c Config) Options() (*server.Options, error) {
	if c.DataDir == "" {
		return nil, errors.New("embedded: a data directory is required")
	}
	host := c.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := c.Port
	if port == 0 {
		port = DefaultPort
	}
	opts := &server.Options{
		ServerName:         c.ServerName,
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           filepath.Join(c.DataDir, "jetstream"),
		SyncAlways:         !c.LazyFsync,
		JetStreamMaxMemory: 1 << 30,
		JetStreamMaxStore:  -1,
		NoSigs:             true,
		MaxPayload:         8 << 20,
	}
	if c.Cluster != nil {
		opts.Cluster = server.ClusterOpts{Name: c.Cluster.Name, Host: c.Cluster.Host, Port: c.Cluster.Port}
		for _, r := range c.Cluster.Routes {
			opts.Routes = append(opts.Routes, server.RoutesFromStr(r)...)
		}
	}
	if c.Configure != nil {
		c.Configure(opts)
	}
	return opts, nil
}

// Start starts the server and waits until it accepts clients. A port that is
// already taken is reported as such, not as a time-out.
func Start(cfg Config) (*Server, error) {
	opts, err := cfg.Options()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: data directory: %w", err)
	}
	if opts.Port > 0 {
		if err := portFree(opts.Host, opts.Port); err != nil {
			return nil, err
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	go ns.Start()
	timeout := cfg.ReadyTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	if !ns.ReadyForConnections(timeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded: nats-server on %s:%d not ready within %s", opts.Host, opts.Port, timeout)
	}
	return &Server{ns: ns, cfg: cfg}, nil
}

func portFree(host string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("embedded: port %d on %s is in use (another ledger or nats-server?): choose another with --port or stop the other process", port, host)
	}
	return l.Close()
}

// ClientURL is the nats:// URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// NATS returns the underlying server (for cluster helpers and tests).
func (s *Server) NATS() *server.Server { return s.ns }

// Shutdown stops the server gracefully: clients are disconnected, the store
// is flushed and closed.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// globalAccount is the account a server without accounts keeps every
// client in, and its JetStream streams under.
const globalAccount = "$G"

// AdoptGlobalAccount moves the JetStream store of the global account in
// dataDir (a server that ran without accounts: the ledger before operator
// mode) to account's, so that a server that now keeps the same clients in
// account finds their streams. It does nothing when account already has a
// store or there is nothing to move, and reports whether it moved one.
// Call it before Start, while no server runs on dataDir; a clustered
// store is not moved (its replicas agree on account names through Raft).
func AdoptGlobalAccount(dataDir, account string) (bool, error) {
	js := filepath.Join(dataDir, "jetstream", server.JetStreamStoreDir)
	from, to := filepath.Join(js, globalAccount), filepath.Join(js, account)
	if _, err := os.Stat(from); err != nil {
		return false, nil
	}
	if _, err := os.Stat(to); err == nil {
		return false, nil
	}
	if _, err := os.Stat(filepath.Join(js, "_js_")); err == nil {
		return false, fmt.Errorf("embedded: %s holds a clustered JetStream store of the global account: move its streams to account %s with a backup and a restore", js, account)
	}
	if err := os.Rename(from, to); err != nil {
		return false, fmt.Errorf("embedded: move the JetStream store to account %s: %w", account, err)
	}
	return true, nil
}

package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/embedded"
)

// pollInterval is how often a wait re-checks server state that announces no
// event of its own (meta leader, replica catch-up). Every such wait is bounded
// by a context.
const pollInterval = 20 * time.Millisecond

// globalAccount is the account clients use when the server has none
// configured.
const globalAccount = server.DEFAULT_GLOBAL_ACCOUNT

// Cluster is a JetStream cluster of embedded servers in one process, with the
// LEDGER stream replicated on up to three of them. Nodes can be stopped and
// restarted on the same ports and data, and the stream leader can be made to
// step down, so that tests can inject the faults a real cluster sees.
//
// Its methods are safe for concurrent use, so that a fault can be injected
// from one goroutine while others append.
type Cluster struct {
	// Name is the cluster name every node shares.
	Name string
	// Replicas is the LEDGER stream's replica count.
	Replicas int

	mu    sync.Mutex
	nodes []*clusterNode
	admin *nats.Conn
}

type clusterNode struct {
	cfg embedded.Config
	srv *embedded.Server // nil while the node is down
	url string
}

// StartCluster starts n JetStream servers that route to each other on
// loopback, waits for the meta leader, creates the LEDGER stream with
// min(n, 3) replicas and waits until every replica is current. t.Cleanup
// stops every node.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("testkit: a cluster needs at least one node, got %d", n)
	}
	c := &Cluster{Name: "ledger-test", Replicas: min(n, 3)}
	ports := freePorts(t, 2*n)
	var routes []string
	for i := range n {
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(ports[n+i]))
	}
	for i := range n {
		cfg := embedded.Config{
			DataDir:    t.TempDir(),
			Port:       ports[i],
			ServerName: fmt.Sprintf("n%d", i+1),
			Cluster: &embedded.ClusterConfig{
				Name: c.Name, Host: "127.0.0.1", Port: ports[n+i], Routes: routes,
			},
		}
		c.nodes = append(c.nodes, &clusterNode{cfg: cfg, url: "nats://127.0.0.1:" + strconv.Itoa(ports[i])})
	}
	t.Cleanup(c.shutdownAll)
	for i := range c.nodes {
		if err := c.start(i); err != nil {
			t.Fatalf("testkit: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*setupTimeout)
	defer cancel()
	if err := c.waitMetaReady(ctx); err != nil {
		t.Fatalf("testkit: cluster: %v", err)
	}
	c.admin = connect(t, c.URLs())
	if err := c.createStream(ctx); err != nil {
		t.Fatalf("testkit: cluster: %v", err)
	}
	if err := c.WaitStreamReady(ctx); err != nil {
		t.Fatalf("testkit: cluster: %v", err)
	}
	return c
}

// freePorts returns n distinct free loopback ports. They are fixed for the
// cluster's life so that a restarted node comes back where its peers and
// clients expect it.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testkit: free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func (c *Cluster) start(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	nd := c.nodes[i]
	if nd.srv != nil {
		return fmt.Errorf("node %s is already running", nd.cfg.ServerName)
	}
	srv, err := embedded.Start(nd.cfg)
	if err != nil {
		return fmt.Errorf("start node %s: %w", nd.cfg.ServerName, err)
	}
	nd.srv = srv
	return nil
}

func (c *Cluster) shutdownAll() {
	for i := range c.nodes {
		c.ShutdownNode(i)
	}
}

// running returns the servers that are up.
func (c *Cluster) running() []*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*server.Server
	for _, nd := range c.nodes {
		if nd.srv != nil {
			out = append(out, nd.srv.NATS())
		}
	}
	return out
}

// URLs returns the client URLs of every node, comma-separated, as
// nats.Connect takes them: a client given all of them survives any one node
// going away.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		urls[i] = nd.url
	}
	return strings.Join(urls, ",")
}

// NodeName returns the server name of node i (0-based).
func (c *Cluster) NodeName(i int) string { return c.nodes[i].cfg.ServerName }

// NodeIndex returns the index of the node called name, or -1.
func (c *Cluster) NodeIndex(name string) int {
	for i, nd := range c.nodes {
		if nd.cfg.ServerName == name {
			return i
		}
	}
	return -1
}

// Connect opens a connection to every node of the cluster, closed by t's
// cleanup.
func (c *Cluster) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	return connect(t, c.URLs())
}

// NewStore opens a store on its own connection to the cluster, closed by t's
// cleanup.
func (c *Cluster) NewStore(t testing.TB, opts ...events.Option) *events.JetStreamStore {
	t.Helper()
	return openStore(t, c.Connect(t), opts...)
}

// waitMetaReady waits until the cluster has a meta leader and every running
// node's view of the meta group is current.
func (c *Cluster) waitMetaReady(ctx context.Context) error {
	return pollUntil(ctx, "JetStream meta leader", func() bool {
		leader := false
		for _, s := range c.running() {
			if !s.JetStreamIsCurrent() {
				return false
			}
			leader = leader || s.JetStreamIsLeader()
		}
		return leader
	})
}

// createStream creates LEDGER, retrying while the freshly elected meta
// leader still answers "temporarily unavailable".
func (c *Cluster) createStream(ctx context.Context) error {
	js, err := jetstream.New(c.admin)
	if err != nil {
		return err
	}
	var last error
	err = pollUntil(ctx, "stream creation", func() bool {
		_, last = events.EnsureStream(ctx, js, c.Replicas)
		return last == nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("%w: %v", err, last)
	}
	return err
}

// waitStreamCurrent waits until the stream has a leader and every running
// replica has caught up with it. A restarted replica can call itself current
// before it has applied what it missed, so the replicas' last sequences are
// compared as well.
func (c *Cluster) waitStreamCurrent(ctx context.Context) error {
	return pollUntil(ctx, "stream "+events.StreamName+" leader and current replicas", func() bool {
		if c.StreamLeader() == "" {
			return false
		}
		var lastSeqs []uint64
		for _, s := range c.running() {
			if !s.JetStreamIsStreamAssigned(globalAccount, events.StreamName) {
				continue
			}
			last, ok := streamLastSeq(s)
			if !ok || !s.JetStreamIsStreamCurrent(globalAccount, events.StreamName) {
				return false
			}
			lastSeqs = append(lastSeqs, last)
		}
		for _, l := range lastSeqs {
			if l != lastSeqs[0] {
				return false
			}
		}
		return true
	})
}

// streamLastSeq returns the last sequence of the LEDGER stream as server s
// has stored it.
func streamLastSeq(s *server.Server) (uint64, bool) {
	info, err := s.Jsz(&server.JSzOptions{Account: globalAccount, Streams: true})
	if err != nil {
		return 0, false
	}
	for _, acc := range info.AccountDetails {
		for _, st := range acc.Streams {
			if st.Name == events.StreamName {
				return st.State.LastSeq, true
			}
		}
	}
	return 0, false
}

// StreamLeader returns the server name of the node that leads the LEDGER
// stream, or "" while there is none. During an election two nodes may both
// believe they lead for a moment; the first one found is returned.
func (c *Cluster) StreamLeader() string {
	for _, s := range c.running() {
		if s.JetStreamIsStreamLeader(globalAccount, events.StreamName) {
			return s.Name()
		}
	}
	return ""
}

// StepDownStreamLeader asks the LEDGER stream leader to step down through the
// JetStream API and waits until another node has been elected and leads. It
// returns the new leader's name.
func (c *Cluster) StepDownStreamLeader(ctx context.Context) (string, error) {
	leader, err := replaceStreamLeader(ctx, c.admin, c.StreamLeader(), func() error { return requestStepDown(ctx, c.admin) }, c.StreamLeader)
	if err != nil {
		return "", err
	}
	return leader, c.waitStreamInterest(ctx)
}

// replaceStreamLeader does what removes the stream leader old (a stepdown,
// a killed node) and waits until the stream's leader-elected advisory names
// another node and current, the cluster's view of the leader, names it too,
// so that callers can rely on it. It returns the new leader's name.
func replaceStreamLeader(ctx context.Context, admin *nats.Conn, old string, do func() error, current func() string) (string, error) {
	elected := make(chan string, 8)
	sub, err := admin.Subscribe(server.JSAdvisoryStreamLeaderElectedPre+"."+events.StreamName, func(m *nats.Msg) {
		var adv server.JSStreamLeaderElectedAdvisory
		if json.Unmarshal(m.Data, &adv) == nil && adv.Leader != "" && adv.Leader != old {
			select {
			case elected <- adv.Leader:
			default:
			}
		}
	})
	if err != nil {
		return "", err
	}
	defer sub.Unsubscribe()
	if err := admin.FlushWithContext(ctx); err != nil {
		return "", err
	}
	if err := do(); err != nil {
		return "", err
	}
	var leader string
	select {
	case leader = <-elected:
	case <-ctx.Done():
		return "", fmt.Errorf("testkit: no new stream leader after %s: %w", old, ctx.Err())
	}
	// The advisory is sent by the new leader as it takes over.
	err = pollUntil(ctx, "new stream leader "+leader, func() bool { return current() == leader })
	return leader, err
}

// waitStreamInterest waits until every running node routes the stream's
// subjects somewhere. Only the leader subscribes to them, so right after an
// election a publish can meet "no responders" until the new leader's
// interest has reached every node over the routes.
func (c *Cluster) waitStreamInterest(ctx context.Context) error {
	const probe = events.SubjectPrefix + "testkit.probe.interest"
	return pollUntil(ctx, "stream subject interest on every node", func() bool {
		for _, s := range c.running() {
			if !s.GlobalAccount().SubscriptionInterest(probe) {
				return false
			}
		}
		return true
	})
}

// requestStepDown asks the LEDGER stream's leader to step down, through the
// JetStream API on nc.
func requestStepDown(ctx context.Context, nc *nats.Conn) error {
	resp, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+events.StreamName, nil)
	if err != nil {
		return fmt.Errorf("testkit: stream leader stepdown: %w", err)
	}
	var r struct {
		Success bool                `json:"success"`
		Error   *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return fmt.Errorf("testkit: stream leader stepdown: %w", err)
	}
	if r.Error != nil || !r.Success {
		return fmt.Errorf("testkit: stream leader stepdown refused: %v", r.Error)
	}
	return nil
}

// WaitStreamReady waits until the LEDGER stream has a leader among the
// running nodes, its running replicas are current, and every running node
// routes the stream's subjects to it: after a node was shut down, appends
// fail as unavailable until then.
func (c *Cluster) WaitStreamReady(ctx context.Context) error {
	if err := c.waitStreamCurrent(ctx); err != nil {
		return err
	}
	return c.waitStreamInterest(ctx)
}

// ShutdownNode stops node i (0-based) gracefully. Its data stays, so
// RestartNode brings it back with its log. Stopping a stopped node does
// nothing.
func (c *Cluster) ShutdownNode(i int) {
	c.mu.Lock()
	srv := c.nodes[i].srv
	c.nodes[i].srv = nil
	c.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
	}
}

// RestartNode starts node i again on its ports and data directory and waits
// until it has rejoined the meta group and caught up with the stream.
func (c *Cluster) RestartNode(ctx context.Context, i int) error {
	if err := c.start(i); err != nil {
		return err
	}
	if err := c.waitMetaReady(ctx); err != nil {
		return err
	}
	return c.WaitStreamReady(ctx)
}

// pollUntil re-checks cond every pollInterval until it holds or ctx ends. It
// is only for conditions that announce no event of their own.
func pollUntil(ctx context.Context, what string, cond func() bool) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
		case <-tick.C:
		}
	}
	return nil
}

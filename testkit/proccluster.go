package testkit

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
)

// streamInfoTimeout bounds one stream-info request: during an election it
// may go unanswered, and the wait that issued it asks again.
const streamInfoTimeout = time.Second

// ProcCluster is a JetStream cluster of nats-server processes (fsync on
// every write) with the LEDGER stream on three replicas: the deployment the
// ledger runs on, with the faults only processes have. A node can be killed
// with SIGKILL, by the pid the cluster started, and restarted on its store,
// and the stream leader can be made to step down.
//
// Unlike Cluster, it sees the servers only as a client does: through the
// JetStream API of the global account. Its methods are safe for concurrent
// use, so that a fault can be injected from one goroutine while others
// append.
type ProcCluster struct {
	// Nodes are the servers, in the order of their names (n1, n2, ...).
	Nodes []*NATSProcess
	// Replicas is the LEDGER stream's replica count.
	Replicas int

	admin *nats.Conn
	js    jetstream.JetStream
}

// StartProcCluster builds nats-server (BuildNATSServer), starts n servers as
// child processes routed to each other on loopback, creates the LEDGER
// stream with min(n, 3) replicas and waits until every replica is current.
// Cleanup kills every server.
func StartProcCluster(t testing.TB, n int) *ProcCluster {
	t.Helper()
	bin := BuildNATSServer(t)
	c := &ProcCluster{Replicas: min(n, 3)}
	c.Nodes = StartNATSProcesses(t, bin, NATSProcessesConfig{Nodes: n, ClusterName: "ledger-procs"})
	c.admin = connect(t, c.URLs())
	var err error
	if c.js, err = jetstream.New(c.admin); err != nil {
		t.Fatalf("testkit: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*setupTimeout)
	defer cancel()
	// Until the routes form and the meta group elects a leader, stream
	// creation answers "unavailable": it is asked again within the bound.
	var last error
	err = pollUntil(ctx, "stream creation", func() bool {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		defer ccancel()
		_, last = events.EnsureStream(cctx, c.js, c.Replicas)
		return last == nil
	})
	if err != nil {
		t.Fatalf("testkit: processes: %v (last: %v)", err, last)
	}
	if err := c.WaitStreamReady(ctx); err != nil {
		t.Fatalf("testkit: processes: %v", err)
	}
	return c
}

// URLs returns every node's client URL, comma-separated, as nats.Connect
// takes them.
func (c *ProcCluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		urls[i] = nd.URL
	}
	return strings.Join(urls, ",")
}

// Connect opens a connection to every node, closed by t's cleanup.
func (c *ProcCluster) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	return connect(t, c.URLs())
}

// NewStore opens a store on its own connection to the cluster, closed by t's
// cleanup.
func (c *ProcCluster) NewStore(t testing.TB, opts ...events.Option) *events.JetStreamStore {
	t.Helper()
	return openStore(t, c.Connect(t), opts...)
}

// NodeIndex returns the index of the node called name, or -1.
func (c *ProcCluster) NodeIndex(name string) int {
	for i, nd := range c.Nodes {
		if nd.Name == name {
			return i
		}
	}
	return -1
}

func (c *ProcCluster) running(name string) bool {
	i := c.NodeIndex(name)
	return i >= 0 && c.Nodes[i].Running()
}

// streamInfo asks the stream's leader for the stream's state.
func (c *ProcCluster) streamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, streamInfoTimeout)
	defer cancel()
	s, err := c.js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, err
	}
	return s.CachedInfo(), nil
}

// StreamLeader returns the name of the LEDGER stream's leader as the stream
// reports it, or "" while it answers with none or not at all.
func (c *ProcCluster) StreamLeader(ctx context.Context) string {
	info, err := c.streamInfo(ctx)
	if err != nil || info.Cluster == nil {
		return ""
	}
	return info.Cluster.Leader
}

// WaitStreamReady waits until the JetStream meta group answers (it creates
// consumers), the LEDGER stream answers with a leader among the running
// nodes, and every running replica is current: the leader has seen it
// persist everything committed.
func (c *ProcCluster) WaitStreamReady(ctx context.Context) error {
	return pollUntil(ctx, "meta leader, stream "+events.StreamName+" leader and current replicas", func() bool {
		actx, cancel := context.WithTimeout(ctx, streamInfoTimeout)
		_, err := c.js.AccountInfo(actx) // answered by the meta leader
		cancel()
		if err != nil {
			return false
		}
		info, err := c.streamInfo(ctx)
		if err != nil || info.Cluster == nil || !c.running(info.Cluster.Leader) {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if c.running(r.Name) && (!r.Current || r.Offline) {
				return false
			}
		}
		return len(info.Cluster.Replicas) == c.Replicas-1
	})
}

// StepDownStreamLeader asks the LEDGER stream leader to step down through the
// JetStream API and waits until another node has been elected and the
// stream answers with it as leader. It returns the new leader's name.
func (c *ProcCluster) StepDownStreamLeader(ctx context.Context) (string, error) {
	old := c.StreamLeader(ctx)
	return c.replaceLeader(ctx, old, func() error { return requestStepDown(ctx, c.admin) })
}

// KillStreamLeader sends SIGKILL to the process of the LEDGER stream
// leader's node and waits until another node has been elected and the
// stream answers with it as leader. It returns the killed node's index and
// the new leader's name. The election takes the servers' Raft election
// time-out (4 to 9 s in nats-server v2.15.2): nothing told the followers
// that the leader is gone.
func (c *ProcCluster) KillStreamLeader(ctx context.Context) (killed int, leader string, err error) {
	old := c.StreamLeader(ctx)
	killed = c.NodeIndex(old)
	if killed < 0 {
		return -1, "", fmt.Errorf("testkit: no stream leader to kill (the stream answers %q)", old)
	}
	leader, err = c.replaceLeader(ctx, old, func() error { return c.KillNode(killed) })
	return killed, leader, err
}

func (c *ProcCluster) replaceLeader(ctx context.Context, old string, do func() error) (string, error) {
	return replaceStreamLeader(ctx, c.admin, old, do, func() string { return c.StreamLeader(ctx) })
}

// KillNode sends SIGKILL to node i's process (0-based), by its pid: no
// shutdown, no flush, as a crash or an OOM kill ends it. Its store stays for
// RestartNode.
func (c *ProcCluster) KillNode(i int) error { return c.Nodes[i].Kill() }

// RestartNode starts node i again on its ports and store and waits until
// the stream answers with a leader and every running replica, the restarted
// one included, has caught up.
func (c *ProcCluster) RestartNode(ctx context.Context, i int) error {
	if err := c.Nodes[i].Start(ctx); err != nil {
		return err
	}
	return c.WaitStreamReady(ctx)
}

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/marketledger/ledger/node/embedded"
)

// startBareCluster starts three JetStream servers routed to each other on
// loopback, with no stream and no bucket yet, and returns their client URLs
// comma-separated. It returns once every node sees a meta leader.
func startBareCluster(t *testing.T) string {
	t.Helper()
	ports := make([]int, 6)
	var ls []net.Listener
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		l.Close()
	}
	var routes, urls []string
	for i := range 3 {
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(ports[3+i]))
		urls = append(urls, "nats://127.0.0.1:"+strconv.Itoa(ports[i]))
	}
	var srvs []*server.Server
	for i := range 3 {
		s, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), Port: ports[i], ServerName: fmt.Sprintf("n%d", i+1),
			Cluster: &embedded.ClusterConfig{Name: "start", Host: "127.0.0.1", Port: ports[3+i], Routes: routes}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		srvs = append(srvs, s.NATS())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := false
		for _, s := range srvs {
			ready = ready || s.JetStreamIsLeader()
		}
		for _, s := range srvs {
			ready = ready && s.JetStreamIsCurrent()
		}
		if ready {
			return strings.Join(urls, ",")
		}
		if time.Now().After(deadline) {
			t.Fatal("no JetStream meta leader within 30 s")
		}
		time.Sleep(20 * time.Millisecond) // the meta group announces nothing to await
	}
}

// serveOnCluster starts `ledger serve` with every service on the cluster
// at urls, with the read models if projections (one process of a
// deployment runs them), and returns its process, its HTTP address and its
// output.
func serveOnCluster(t *testing.T, bin, urls string, projections bool) (*exec.Cmd, string, *procOutput) {
	t.Helper()
	addr := freeAddr(t)
	out := &procOutput{}
	cmd := exec.Command(bin, "serve", "--nats", urls, "--replicas", "3", "--data", t.TempDir(),
		"--http", addr, "--projections="+strconv.FormatBool(projections))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, addr, out
}

// TestServesStartOnAFreshClusterWithoutARace: three `ledger serve
// --replicas 3` processes (one with the read models) started at once on a
// fresh three-node cluster create the stream and the buckets between them
// and all become ready;
// none exits because a stream or bucket it needs has no leader yet. Three
// fresh clusters in a row.
func TestServesStartOnAFreshClusterWithoutARace(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node clusters and serve processes")
	}
	bin := buildLedger(t)
	for round := range 3 {
		t.Run(fmt.Sprintf("round-%d", round), func(t *testing.T) {
			urls := startBareCluster(t)
			var wg sync.WaitGroup
			for i := range 3 {
				cmd, addr, out := serveOnCluster(t, bin, urls, i == 0)
				exited := make(chan struct{})
				var waitErr error
				go func() { waitErr = cmd.Wait(); close(exited) }()
				t.Cleanup(func() {
					_ = cmd.Process.Signal(syscall.SIGTERM)
					select {
					case <-exited:
					case <-time.After(15 * time.Second):
						_ = cmd.Process.Kill()
						<-exited
					}
				})
				wg.Go(func() {
					if err := awaitReady(addr, exited, &waitErr, 60*time.Second); err != nil {
						out.mu.Lock()
						t.Errorf("serve %d: %v\n%s", i, err, out.String())
						out.mu.Unlock()
					}
				})
			}
			wg.Wait()
		})
	}
}

// awaitReady polls /readyz until it answers 200, the process exits, or
// limit passes.
func awaitReady(addr string, exited <-chan struct{}, waitErr *error, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	last := ""
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var b strings.Builder
			buf := make([]byte, 512)
			n, _ := resp.Body.Read(buf)
			b.Write(buf[:n])
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = b.String()
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before it was ready: %v", *waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready within %s; last /readyz: %s", limit, last)
		case <-time.After(50 * time.Millisecond): // the process is starting: nothing to await but its socket
		}
	}
}

package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildTimeout bounds one `go build`: cached after the first run, but a
// cold build on a shared machine takes a while.
const buildTimeout = 4 * time.Minute

// goBuild builds pkg (run in dir) into a temporary directory.
func goBuild(t *testing.T, dir, pkg, name string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is needed to build %s: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	bin := filepath.Join(t.TempDir(), name)
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// freePorts returns n distinct free loopback ports, fixed for the test so
// that a restarted process comes back where its peers expect it.
func freePorts(t *testing.T, n int) []int {
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
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// syncBuffer collects a child's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.b.Bytes()
	return string(b[max(0, len(b)-n):])
}

// child is a process the test started; it is only ever signalled by its own
// pid.
type child struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	out    *syncBuffer
}

func startChild(t *testing.T, name string, out *syncBuffer, bin string, args ...string) *child {
	t.Helper()
	c := &child{name: name, cmd: exec.Command(bin, args...), exited: make(chan struct{}), out: out}
	c.cmd.Stdout, c.cmd.Stderr = out, out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { c.cmd.Wait(); close(c.exited) }()
	return c
}

func (c *child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and reaps the process.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill %s: %v", c.name, err)
	}
	<-c.exited
}

// stop sends SIGTERM, then SIGKILL if the process has not exited in time.
func (c *child) stop(t *testing.T) {
	t.Helper()
	_ = syscall.Kill(c.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		t.Errorf("%s did not stop within 15 s of SIGTERM", c.name)
		c.kill(t)
	}
}

// ledgerAccess is the ledger's NATS users and an operator's API token, made
// with the ledger binary as docs/operations.md tells an operator to.
type ledgerAccess struct {
	creds    string // directory of the users' seeds
	tokens   string // the API tokens file
	accounts string // the nats-server accounts block with the users
	token    string // an operator's API token
}

func makeLedgerAccess(t *testing.T, ledgerBin string) ledgerAccess {
	t.Helper()
	data := t.TempDir()
	run := func(args ...string) []byte {
		out, err := exec.Command(ledgerBin, append([]string{"--data", data}, args...)...).Output()
		if err != nil {
			t.Fatalf("ledger %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	run("credentials", "init")
	a := ledgerAccess{creds: filepath.Join(data, "credentials"), tokens: filepath.Join(data, "credentials", "tokens.json"),
		accounts: string(run("credentials", "server-config", "--account", "LEDGER"))}
	var issued struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(run("token", "issue", "--role", "operator", "--subject", "fault-test", "--json"), &issued); err != nil || issued.Token == "" {
		t.Fatalf("ledger token issue: %v", err)
	}
	a.token = issued.Token
	return a
}

// seed is role's seed file.
func (a ledgerAccess) seed(role string) string { return filepath.Join(a.creds, role+".nk") }

// bearer adds a bearer token to every request.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// natsNode is one nats-server process of the cluster.
type natsNode struct {
	name, conf, url string
	out             *syncBuffer
	proc            *child
}

// startNATSCluster starts three nats-server processes routed to each other
// on loopback, each with JetStream, fsync on every write and the ledger's
// users (accounts, from `ledger credentials server-config`). Cleanup kills
// those still running.
func startNATSCluster(t *testing.T, bin, accounts string) []*natsNode {
	t.Helper()
	const n = 3
	ports := freePorts(t, 2*n)
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("%q", "nats-route://127.0.0.1:"+strconv.Itoa(ports[n+i])))
	}
	var nodes []*natsNode
	for i := range n {
		dir := t.TempDir()
		nd := &natsNode{name: fmt.Sprintf("n%d", i+1), conf: filepath.Join(dir, "nats.conf"),
			url: "nats://127.0.0.1:" + strconv.Itoa(ports[i]), out: &syncBuffer{}}
		conf := fmt.Sprintf(`server_name: %s
listen: "127.0.0.1:%d"
jetstream {
  store_dir: %q
  sync_interval: always
}
cluster {
  name: fault
  listen: "127.0.0.1:%d"
  routes: [%s]
}
%s
`, nd.name, ports[i], filepath.Join(dir, "store"), ports[n+i], strings.Join(routes, ", "), accounts)
		if err := os.WriteFile(nd.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			if nd.proc != nil && nd.proc.running() {
				nd.proc.kill(t)
			}
			if t.Failed() {
				t.Logf("nats-server %s log (tail):\n%s", nd.name, nd.out.tail(3000))
			}
		}
	})
	for _, nd := range nodes {
		nd.start(t, bin)
	}
	return nodes
}

func (nd *natsNode) start(t *testing.T, bin string) {
	t.Helper()
	nd.proc = startChild(t, "nats-server "+nd.name, nd.out, bin, "-c", nd.conf)
	addr := strings.TrimPrefix(nd.url, "nats://")
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if !nd.proc.running() || time.Now().After(deadline) {
			t.Fatalf("nats-server %s does not accept connections on %s: %v\n%s", nd.name, addr, err, nd.out.tail(3000))
		}
		time.Sleep(20 * time.Millisecond) // starting: nothing to await but its socket
	}
}

// ledgerServe is one `ledger serve --nats` process running some services.
type ledgerServe struct {
	services, http string
	out            *syncBuffer
	proc           *child
}

// startLedgerServe starts `ledger serve --nats urls --services services`
// and waits until its /readyz answers 200. Cleanup stops it.
func startLedgerServe(ctx context.Context, t *testing.T, bin, urls, services string, access ledgerAccess) *ledgerServe {
	t.Helper()
	s := &ledgerServe{services: services, http: "127.0.0.1:" + strconv.Itoa(freePorts(t, 1)[0]), out: &syncBuffer{}}
	s.proc = startChild(t, "ledger serve "+services, s.out, bin, "serve", "--nats", urls, "--replicas", "3",
		"--creds", access.creds, "--tokens", access.tokens,
		"--data", t.TempDir(), "--services", services, "--http", s.http,
		// One process of a deployment runs the read models: their durable
		// consumers are shared by name.
		"--projections="+strconv.FormatBool(strings.Contains(services, "listing")))
	t.Cleanup(func() {
		if s.proc.running() {
			s.proc.stop(t)
		}
		if t.Failed() {
			t.Logf("ledger serve --services %s output (tail):\n%s", services, s.out.tail(4000))
		}
	})
	rctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+s.http+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if !s.proc.running() {
			t.Fatalf("ledger serve --services %s exited before it was ready\n%s", services, s.out.tail(4000))
		}
		select {
		case <-rctx.Done():
			t.Fatalf("ledger serve --services %s not ready: %v\n%s", services, err, s.out.tail(4000))
		case <-time.After(50 * time.Millisecond): // starting: nothing to await but its socket
		}
	}
}

package testkit

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
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

// BuildTimeout bounds one `go build` of a test's child binary: cached after
// the first run, but a cold build on a shared machine takes a while.
const BuildTimeout = 4 * time.Minute

// natsStartTimeout bounds how long a nats-server process may take to accept
// connections, restarts on a full store included.
const natsStartTimeout = 30 * time.Second

// GoBuild builds the package pkg, resolved from dir, into a temporary
// directory and returns the binary's path. It skips t when the go command is
// missing and fails it when the build does.
func GoBuild(t testing.TB, dir, pkg, name string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("testkit: the go command is needed to build %s: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
	defer cancel()
	bin := filepath.Join(t.TempDir(), name)
	start := time.Now()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testkit: go build %s: %v\n%s", pkg, err, out)
	}
	t.Logf("built %s in %s", name, time.Since(start).Round(time.Millisecond))
	return bin
}

// BuildNATSServer builds nats-server at the version the testkit module
// requires (its go.mod's tool directive keeps it there), from the calling
// test's package directory, which must be inside the testkit module.
func BuildNATSServer(t testing.TB) string {
	t.Helper()
	return GoBuild(t, ".", "github.com/nats-io/nats-server/v2", "nats-server")
}

// FreePorts returns n distinct free loopback ports. A test fixes them for
// its life so that a restarted process comes back where its peers and
// clients expect it.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	return freePorts(t, n)
}

// Output collects a child process's output for failure messages. It is safe
// for concurrent writes.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// Tail returns the last n bytes written.
func (o *Output) Tail(n int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.b.Bytes()
	return string(b[max(0, len(b)-n):])
}

// Process is a child process a test started. It is only ever signalled by
// its own pid, never by name, so that nothing else on the machine is hit.
type Process struct {
	// Name names the process in messages.
	Name   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartProcess starts bin with args, its output going to out, and reaps it
// when it exits.
func StartProcess(name string, out *Output, bin string, args ...string) (*Process, error) {
	p := &Process{Name: name, cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited returns a channel closed once the process has exited and been
// reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL to the process (by its pid) and waits until it is
// reaped.
func (p *Process) Kill() error {
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.Name, p.Pid(), err)
	}
	<-p.exited
	return nil
}

// Stop sends SIGTERM, then SIGKILL if the process has not exited within
// grace. It reports an error when SIGKILL was needed.
func (p *Process) Stop(grace time.Duration) error {
	_ = syscall.Kill(p.Pid(), syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(grace):
	}
	if err := p.Kill(); err != nil {
		return err
	}
	return fmt.Errorf("%s did not stop within %s of SIGTERM", p.Name, grace)
}

// NATSProcess is one nats-server child process with JetStream and fsync on
// every write, on a fixed client port and store directory, so that a restart
// after a SIGKILL finds its data, its peers and its clients.
type NATSProcess struct {
	// Name is the server name (n1, n2, ...).
	Name string
	// URL is the client URL.
	URL string
	// Out is the output of every run of the process.
	Out *Output

	bin, conf string
	mu        sync.Mutex
	proc      *Process // the current run; nil before the first start
}

// NATSProcessesConfig says what StartNATSProcesses starts.
type NATSProcessesConfig struct {
	// Nodes is how many servers to start; with more than one they route to
	// each other as one cluster.
	Nodes int
	// ClusterName is the cluster's name (a default when empty).
	ClusterName string
	// Extra is appended to every server's configuration, for example an
	// accounts block with users.
	Extra string
}

// StartNATSProcesses writes a configuration for each server, starts them
// and waits until each accepts connections. Cleanup kills those still
// running and, when t failed, logs the tail of each one's output.
func StartNATSProcesses(t testing.TB, bin string, cfg NATSProcessesConfig) []*NATSProcess {
	t.Helper()
	n := max(cfg.Nodes, 1)
	name := cmp.Or(cfg.ClusterName, "ledger-procs")
	ports := freePorts(t, 2*n)
	var routes []string
	for i := range n {
		routes = append(routes, strconv.Quote("nats-route://127.0.0.1:"+strconv.Itoa(ports[n+i])))
	}
	var nodes []*NATSProcess
	for i := range n {
		dir := t.TempDir()
		nd := &NATSProcess{Name: fmt.Sprintf("n%d", i+1), URL: "nats://127.0.0.1:" + strconv.Itoa(ports[i]),
			Out: &Output{}, bin: bin, conf: filepath.Join(dir, "nats.conf")}
		cluster := ""
		if n > 1 {
			cluster = fmt.Sprintf("cluster {\n  name: %s\n  listen: \"127.0.0.1:%d\"\n  routes: [%s]\n}\n",
				name, ports[n+i], strings.Join(routes, ", "))
		}
		conf := fmt.Sprintf("server_name: %s\nlisten: \"127.0.0.1:%d\"\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n%s%s\n",
			nd.Name, ports[i], filepath.Join(dir, "store"), cluster, cfg.Extra)
		if err := os.WriteFile(nd.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			if err := nd.Kill(); err != nil {
				t.Error(err)
			}
			if t.Failed() {
				t.Logf("nats-server %s output (tail):\n%s", nd.Name, nd.Out.Tail(3000))
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), natsStartTimeout)
	defer cancel()
	for _, nd := range nodes {
		if err := nd.Start(ctx); err != nil {
			t.Fatalf("testkit: %v", err)
		}
	}
	return nodes
}

// Start runs the server (again, on the same ports and store) and waits,
// bounded by ctx, until it accepts connections.
func (nd *NATSProcess) Start(ctx context.Context) error {
	nd.mu.Lock()
	if nd.proc != nil && nd.proc.Running() {
		nd.mu.Unlock()
		return fmt.Errorf("nats-server %s is already running", nd.Name)
	}
	p, err := StartProcess("nats-server "+nd.Name, nd.Out, nd.bin, "-c", nd.conf)
	if err != nil {
		nd.mu.Unlock()
		return err
	}
	nd.proc = p
	nd.mu.Unlock()
	addr := strings.TrimPrefix(nd.URL, "nats://")
	err = pollUntil(ctx, "nats-server "+nd.Name+" to accept connections on "+addr, func() bool {
		if !p.Running() {
			return true
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if err == nil && !p.Running() {
		err = fmt.Errorf("nats-server %s exited at start", nd.Name)
	}
	if err != nil {
		return fmt.Errorf("%w\n%s", err, nd.Out.Tail(3000))
	}
	return nil
}

// Kill sends SIGKILL to the server's process, by its pid, and reaps it.
// Killing a server that is not running does nothing.
func (nd *NATSProcess) Kill() error {
	nd.mu.Lock()
	p := nd.proc
	nd.mu.Unlock()
	if p == nil || !p.Running() {
		return nil
	}
	return p.Kill()
}

// Running reports whether the server's process runs.
func (nd *NATSProcess) Running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.proc != nil && nd.proc.Running()
}

// Pid returns the pid of the server's current process, or 0 before the
// first start.
func (nd *NATSProcess) Pid() int {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc == nil {
		return 0
	}
	return nd.proc.Pid()
}

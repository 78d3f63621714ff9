package fault

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/testkit"
)

// simSteps is how many steps one seeded run takes; each is followed by a
// full rebuild of the read models, so a run costs about steps² events read.
const simSteps = 60

// simSeeds are the seeds run by default; LEDGER_SIM_SEED runs one seed
// instead, to replay a failure. Each run checks after every step, once the
// serve process's checkout has settled, that no ended order strands stock
// or money (invariant.NothingStranded) and that money sums to zero.
var simSeeds = []uint64{1, 2, 3, 4}

// simTimeout bounds one seeded run.
const simTimeout = 90 * time.Second

// TestSimulationKeepsInvariantsUnderFaults runs the seeded simulation
// against a `ledger serve` child process per seed, on a fresh JetStream
// server with the ledger's users. A failure prints the seed and the
// history of steps; LEDGER_SIM_SEED=<seed> replays that run alone.
func TestSimulationKeepsInvariantsUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs ledger processes")
	}
	seeds := simSeeds
	if v := os.Getenv("LEDGER_SIM_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("LEDGER_SIM_SEED=%q: %v", v, err)
		}
		seeds = []uint64{seed}
	}
	ledgerBin := testkit.GoBuild(t, "../../cmd/ledger", ".", "ledger")
	for _, seed := range seeds {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			cfg := startSimLedger(t, ledgerBin)
			ctx, cancel := context.WithTimeout(context.Background(), simTimeout)
			defer cancel()
			sim := NewSim(cfg, seed)
			start := time.Now()
			if err := sim.Run(ctx, simSteps); err != nil {
				t.Fatal(err)
			}
			t.Logf("seed %d: %d steps, %d kills and restarts of the serve process, in %s", seed, len(sim.History()),
				sim.Restarts(), time.Since(start).Round(time.Millisecond))
		})
	}
}

// startSimLedger starts a JetStream server with the ledger's users and the
// LEDGER stream, and `ledger serve --nats` on it with every service, and
// returns the simulation's configuration; its Restart kills the serve
// process with SIGKILL and starts it again.
func startSimLedger(t *testing.T, bin string) SimConfig {
	t.Helper()
	access := makeLedgerAccess(t, bin)
	data := filepath.Dir(access.creds)
	set, err := auth.Ensure(data)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), Port: embedded.RandomPort, Configure: set.Configure})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := auth.Connect(srv.ClientURL(), access.credsFile(auth.RoleOperator))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := events.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--data", data, "token", "issue", "--role", "policy_issuer", "--subject", SimIssuer, "--json").Output()
	var issued struct {
		Token string `json:"token"`
	}
	if err != nil || json.Unmarshal(out, &issued) != nil || issued.Token == "" {
		t.Fatalf("ledger token issue --role policy_issuer: %v", err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(testkit.FreePorts(t, 1)[0])
	serveData := t.TempDir()
	logs := &testkit.Output{}
	start := func(ctx context.Context) (*testkit.Process, error) {
		c, err := testkit.StartProcess("ledger serve", logs, bin, "serve", "--nats", srv.ClientURL(), "--creds", access.creds,
			"--tokens", access.tokens, "--data", serveData, "--http", addr)
		if err != nil {
			return nil, err
		}
		return c, awaitReady(ctx, c, "http://"+addr)
	}
	proc, err := start(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.Tail(4000))
	}
	t.Cleanup(func() {
		if proc != nil && proc.Running() {
			if err := proc.Stop(ledgerServeStopGrace); err != nil {
				t.Error(err)
			}
		}
		if t.Failed() {
			t.Logf("ledger serve output (tail):\n%s", logs.Tail(4000))
		}
	})
	return SimConfig{NATS: srv.ClientURL(), OperatorCreds: access.credsFile(auth.RoleOperator), HTTP: "http://" + addr,
		Operator: access.token, Issuer: issued.Token,
		Restart: func(ctx context.Context) error {
			if err := proc.Kill(); err != nil {
				return err
			}
			proc, err = start(ctx)
			return err
		}}
}

// awaitReady waits until the serve process at base answers /readyz 200,
// within 45 s.
func awaitReady(ctx context.Context, c *testkit.Process, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !c.Running() {
			return errExited
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond): // starting: nothing to await but its socket
		}
	}
}

var errExited = &exitedError{}

type exitedError struct{}

func (*exitedError) Error() string { return "ledger serve exited before it was ready" }

package fault

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/testkit"
)

// ledgerAccess is the ledger's NATS users and an operator's API token, made
// with the ledger binary as docs/operations.md tells an operator to.
type ledgerAccess struct {
	creds    string // directory of the users' .creds files
	tokens   string // the API tokens file
	accounts string // the nats-server operator, accounts and resolver that admit the users
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
		accounts: string(run("credentials", "server-config"))}
	var issued struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(run("token", "issue", "--role", "operator", "--subject", "fault-test", "--json"), &issued); err != nil || issued.Token == "" {
		t.Fatalf("ledger token issue: %v", err)
	}
	a.token = issued.Token
	return a
}

// credsFile is role's .creds file.
func (a ledgerAccess) credsFile(role string) string { return filepath.Join(a.creds, role+".creds") }

// bearer adds a bearer token to every request.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// ledgerServeStopGrace is how long `ledger serve` gets to stop on SIGTERM.
const ledgerServeStopGrace = 15 * time.Second

// ledgerServe is one `ledger serve --nats` process running some services.
type ledgerServe struct {
	services, http string
	out            *testkit.Output
	proc           *testkit.Process
}

// startLedgerServe starts `ledger serve --nats urls --services services`
// and waits until its /readyz answers 200. Cleanup stops it.
func startLedgerServe(ctx context.Context, t *testing.T, bin, urls, services string, access ledgerAccess) *ledgerServe {
	t.Helper()
	s := &ledgerServe{services: services, http: "127.0.0.1:" + strconv.Itoa(testkit.FreePorts(t, 1)[0]), out: &testkit.Output{}}
	var err error
	s.proc, err = testkit.StartProcess("ledger serve "+services, s.out, bin, "serve", "--nats", urls, "--replicas", "3",
		"--creds", access.creds, "--tokens", access.tokens,
		"--data", t.TempDir(), "--services", services, "--http", s.http,
		// One process of a deployment runs the read models: their durable
		// consumers are shared by name.
		"--projections="+strconv.FormatBool(strings.Contains(services, "listing")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.proc.Running() {
			if err := s.proc.Stop(ledgerServeStopGrace); err != nil {
				t.Error(err)
			}
		}
		if t.Failed() {
			t.Logf("ledger serve --services %s output (tail):\n%s", services, s.out.Tail(4000))
		}
	})
	if err := awaitReady(ctx, s.proc, "http://"+s.http); err != nil {
		t.Fatalf("ledger serve --services %s not ready: %v\n%s", services, err, s.out.Tail(4000))
	}
	return s
}

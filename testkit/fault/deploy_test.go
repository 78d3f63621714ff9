package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/subscriber"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/testkit"
)

// deployNATS is where the shipped nats-server configurations are.
const deployNATS = "../../deploy/nats"

// deployTimeout bounds the whole deployment test.
const deployTimeout = 2 * time.Minute

// startDeployCluster starts three stock nats-server processes from the
// configurations in deploy/nats, as deploy/run-local.sh does: copied beside
// the accounts block `ledger credentials server-config` printed, with the
// ports and store directories in the environment. It returns the client
// URLs, comma-separated.
func startDeployCluster(ctx context.Context, t *testing.T, natsBin, accounts string) string {
	t.Helper()
	dir := t.TempDir()
	for i := 1; i <= 3; i++ {
		b, err := os.ReadFile(filepath.Join(deployNATS, fmt.Sprintf("n%d.conf", i)))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "sync_interval: always") {
			t.Errorf("deploy/nats/n%d.conf does not fsync every write (sync_interval: always)", i)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("n%d.conf", i)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ledger-accounts.conf"), []byte(accounts), 0o600); err != nil {
		t.Fatal(err)
	}
	ports := testkit.FreePorts(t, 6)
	t.Setenv("LEDGER_NATS_HOST", "127.0.0.1")
	var urls []string
	for i := 1; i <= 3; i++ {
		n := strconv.Itoa(i)
		t.Setenv("LEDGER_N"+n+"_PORT", strconv.Itoa(ports[i-1]))
		t.Setenv("LEDGER_N"+n+"_ROUTE_PORT", strconv.Itoa(ports[2+i]))
		t.Setenv("LEDGER_N"+n+"_STORE", filepath.Join(dir, "n"+n))
		t.Setenv("LEDGER_ROUTE_"+n, "nats-route://127.0.0.1:"+strconv.Itoa(ports[2+i]))
		urls = append(urls, "nats://127.0.0.1:"+strconv.Itoa(ports[i-1]))
	}
	for i := 1; i <= 3; i++ {
		out := &testkit.Output{}
		p, err := testkit.StartProcess(fmt.Sprintf("nats-server n%d", i), out, natsBin, "-c", filepath.Join(dir, fmt.Sprintf("n%d.conf", i)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := p.Kill(); err != nil {
				t.Error(err)
			}
			if t.Failed() {
				t.Logf("nats-server n%d output (tail):\n%s", i, out.Tail(3000))
			}
		})
		addr := strings.TrimPrefix(urls[i-1], "nats://")
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if !p.Running() || ctx.Err() != nil {
				t.Fatalf("nats-server n%d from deploy/nats does not accept connections: %v\n%s", i, err, out.Tail(3000))
			}
			time.Sleep(20 * time.Millisecond) // a starting process announces nothing to await
		}
	}
	return strings.Join(urls, ",")
}

// TestDeployClusterRunsACheckoutAndAFreezeOnThreeReplicas starts the three
// nats-server configurations shipped in deploy/ as stock server processes
// and `ledger serve --nats ... --replicas 3` on them, as
// deploy/run-local.sh does, and runs a checkout to its capture and a
// freeze that then refuses an order in its scope. Every stream the ledger
// created (the log, the checkout's checkpoint, the read models' buckets,
// the subscribers' parking stream, a subscriber's dedupe bucket) has the
// log's three replicas, and serve does not claim an fsync setting it
// cannot see.
func TestDeployClusterRunsACheckoutAndAFreezeOnThreeReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs nats-server and ledger processes")
	}
	natsBin := testkit.BuildNATSServer(t)
	ledgerBin := testkit.GoBuild(t, "../../cmd/ledger", ".", "ledger")
	ctx, cancel := context.WithTimeout(context.Background(), deployTimeout)
	defer cancel()
	access := makeLedgerAccess(t, ledgerBin)
	urls := startDeployCluster(ctx, t, natsBin, access.accounts)
	// The regulator's own token (only a policy issuer may impose a freeze),
	// issued before serve reads the tokens file.
	out, err := exec.Command(ledgerBin, "--data", filepath.Dir(access.creds), "token", "issue", "--role", "policy_issuer",
		"--subject", SimIssuer, "--json").Output()
	var issued struct {
		Token string `json:"token"`
	}
	if err != nil || json.Unmarshal(out, &issued) != nil || issued.Token == "" {
		t.Fatalf("ledger token issue --role policy_issuer: %v %s", err, out)
	}
	srv := startLedgerServe(ctx, t, ledgerBin, urls, "listing,order,payment,policy", access)

	c := &httpClient{hc: &http.Client{Timeout: 10 * time.Second, Transport: bearer{access.token}}, base: map[string]string{}}
	for _, svc := range []string{"listing", "order", "payment", "policy"} {
		c.base[svc] = "http://" + srv.http
	}
	mustSend := func(name, aggregate string, cmd any) {
		t.Helper()
		code, b, err := c.send(ctx, name, aggregate, "", cmd)
		if err != nil || code != http.StatusOK {
			t.Fatalf("%s %s: %d %s %v", name, aggregate, code, b, err)
		}
	}
	mustSend("listing.create", "dl-1", contracts.CreateListing{ListingID: "dl-1", SellerID: "seller-1", Title: "Batik scarf",
		Category: "fashion", Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID", Origin: contracts.OriginDomestic,
		Price: contracts.Money{AmountMinor: 150_000_00, Currency: "IDR"}, Stock: 10, IdempotencyKey: "create-dl-1"})
	mustSend("order.place", "do-1", contracts.PlaceOrder{OrderID: "do-1", BuyerID: "buyer-1", ListingID: "dl-1", Quantity: 1,
		IdempotencyKey: checkout.StepKey("do-1", "place")})
	// The checkout runner takes the order to its capture.
	awaitState(ctx, t, c, "http://"+srv.http+"/v1/payments/"+contracts.PaymentID("do-1"), "captured")

	regulator := &httpClient{hc: &http.Client{Timeout: 10 * time.Second, Transport: bearer{issued.Token}}, base: c.base}
	code, b, err := regulator.send(ctx, "policy.impose_freeze", "", "", contracts.ImposeFreeze{RuleID: "deploy-freeze",
		Scope:      contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{contracts.ChannelSocialCommerce}},
		LegalBasis: "Permendag 31/2023", Issuer: SimIssuer, IdempotencyKey: "impose-deploy-freeze"})
	if err != nil || code != http.StatusOK {
		t.Fatalf("policy.impose_freeze: %d %s %v", code, b, err)
	}
	code, b, err = c.send(ctx, "order.place", "do-2", "", contracts.PlaceOrder{OrderID: "do-2", BuyerID: "buyer-2", ListingID: "dl-1",
		Quantity: 1, IdempotencyKey: checkout.StepKey("do-2", "place")})
	if err != nil || code != http.StatusLocked {
		t.Errorf("order.place under the freeze: %d %s %v; want 423", code, b, err)
	}

	// A service's subscriber with a dedupe bucket, as docs/subscriber.md.
	operator := nats.UserCredentials(access.credsFile("operator"))
	nc, err := nats.Connect(urls, operator)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := subscriber.DedupeBucket(ctx, js, "deploy-emails", time.Hour); err != nil {
		t.Fatal(err)
	}
	names := js.StreamNames(ctx)
	seen := map[string]bool{}
	for name := range names.Name() {
		seen[name] = true
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Errorf("stream %s: %v", name, err)
			continue
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want the log's 3", name, r)
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{events.StreamName, "KV_ledger_checkout", "KV_LEDGER_PROJECTIONS", "OBJ_LEDGER_SNAPSHOTS",
		subscriber.ParkedStreamName, "KV_" + subscriber.DedupeBucketPrefix + "deploy-emails"} {
		if !seen[want] {
			t.Errorf("stream %s was not created (streams: %v)", want, seen)
		}
	}
	log := srv.out.Tail(1 << 20)
	if strings.Contains(log, `"fsync_always":true`) || !strings.Contains(log, `"fsync":"unverified"`) {
		t.Errorf("serve --nats claims an fsync setting it cannot read, or does not say so:\n%s", log)
	}
}

// awaitState polls a GET /v1/<aggregates>/{id} URL until the state's status
// is want, bounded by ctx.
func awaitState(ctx context.Context, t *testing.T, c *httpClient, url, want string) {
	t.Helper()
	last := ""
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := c.hc.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
			var r struct {
				State struct {
					Status string `json:"status"`
				} `json:"state"`
			}
			if resp.StatusCode == http.StatusOK && json.Unmarshal(b, &r) == nil && r.State.Status == want {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: status not %q before the deadline; last answer: %s", url, want, last)
		case <-time.After(50 * time.Millisecond): // the checkout runs in the serve process: nothing to await here
		}
	}
}

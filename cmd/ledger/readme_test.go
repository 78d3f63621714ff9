package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/cmd/ledger/internal/eventhttp"
	"github.com/marketledger/ledger/runtime/service"
)

// readmePath is the README the examples are read from.
var readmePath = filepath.Join("..", "..", "README.md")

// walkthroughVars is the walkthrough's first line: the only line the test
// changes (the binary, the data directory and the base URL).
var walkthroughVars = regexp.MustCompile(`\ALEDGER=\S+; DATA=\S+; BASE=\S+`)

// readmeWalkthrough returns the bash block of the README between the
// walkthrough markers, without its fences.
func readmeWalkthrough(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- walkthrough:begin")
	block, _, ok2 := strings.Cut(rest, "<!-- walkthrough:end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no block between <!-- walkthrough:begin ... --> and <!-- walkthrough:end -->")
	}
	_, block, _ = strings.Cut(block, "```bash\n")
	block, _, ok = strings.Cut(block, "```")
	if !ok || block == "" {
		t.Fatal("the README's walkthrough markers hold no ```bash block")
	}
	return block
}

// needTool returns the path of a program the README's examples use. The
// test fails rather than skips without it: .ci/run installs curl.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed to run the README's examples (.ci/run installs it): %v", name, err)
	}
	return p
}

// TestREADMEWalkthrough runs the README's curl walkthrough of one checkout,
// as written, against a fresh `ledger serve` on random ports; only the
// binary, the data directory and the base URL are changed. The output must
// show the order confirmed by the checkout, the flow's events by its
// correlation id, the next social-commerce order refused under the freeze
// (423, problem+json naming the rule) and the refund.
func TestREADMEWalkthrough(t *testing.T) {
	bash, _ := needTool(t, "bash"), needTool(t, "curl")
	script := readmeWalkthrough(t)
	bin := buildLedger(t)
	g := &globals{dataDir: t.TempDir()}
	s := startServed(t, g, &serveOpts{}, http.DefaultClient)
	if !walkthroughVars.MatchString(script) {
		t.Fatalf("the walkthrough does not start with LEDGER=...; DATA=...; BASE=...:\n%s", script)
	}
	script = walkthroughVars.ReplaceAllLiteralString(script,
		"LEDGER='"+bin+"'; DATA='"+g.dataDir+"'; BASE='"+s.base+"'")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "-c", script)
	cmd.Dir = t.TempDir()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Errorf("the walkthrough: %v", err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("the walkthrough printed:\n%s\nstderr:\n%s", out.String(), errOut.String())
		}
	}()
	if errOut.Len() > 0 {
		t.Errorf("the walkthrough wrote to stderr: %s", errOut.String())
	}
	checkWalkthrough(t, out.String())
}

// checkWalkthrough checks what the walkthrough printed, line by line.
func checkWalkthrough(t *testing.T, out string) {
	t.Helper()
	var confirmed, followed, streamed, placedHeader, refused, problem, refunded bool
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 1<<20), 1<<22)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case line == "Ledger-Correlation-Id: my-checkout-1":
			placedHeader = true
		case strings.HasPrefix(line, `{"id":"ord-1"`):
			confirmed = confirmed || strings.Contains(line, `"status":"confirmed"`) && strings.Contains(line, `"payment_id":"pay-ord-1"`)
		case strings.HasPrefix(line, `{"events":`):
			followed = followed || checkFlowPage(t, line)
		case line == "event: order.confirmed":
			streamed = true
		case line == "HTTP/1.1 423 Locked":
			refused = true
		case strings.HasPrefix(line, `{"type":"urn:marketledger:problem:`):
			var p service.Problem
			if err := json.Unmarshal([]byte(line), &p); err != nil {
				t.Errorf("the refusal is not problem+json: %v: %s", err, line)
			}
			problem = problem || p.Status == http.StatusLocked && strings.Contains(p.Rule, "permendag-31-2023")
		case strings.HasPrefix(line, `{"payment_id":"pay-ord-1"`):
			refunded = refunded || strings.Contains(line, `"type":"payment.refunded"`) && strings.Contains(line, `"refunded_minor":15000000`)
		}
	}
	for what, ok := range map[string]bool{
		"the order placed, answered with the correlation id sent (Ledger-Correlation-Id: my-checkout-1)": placedHeader,
		"GET /v1/orders/ord-1 answering confirmed, with payment pay-ord-1":                               confirmed,
		"the flow's events by correlation_id":                                                            followed,
		"the order's confirmation in /v1/subscribe":                                                      streamed,
		"HTTP/1.1 423 Locked for the order under the freeze":                                             refused,
		"a 423 problem+json naming rule permendag-31-2023":                                               problem,
		"the refund: payment.refunded, refunded_minor 15000000":                                          refunded,
	} {
		if !ok {
			t.Errorf("the walkthrough did not show %s", what)
		}
	}
}

// checkFlowPage checks the page of the flow's events: the checkout's steps,
// all of them of the flow.
func checkFlowPage(t *testing.T, line string) bool {
	t.Helper()
	var p eventhttp.Page
	if err := json.Unmarshal([]byte(line), &p); err != nil {
		t.Errorf("the flow's events are not a page: %v", err)
		return false
	}
	seen := map[string]bool{}
	for _, e := range p.Events {
		if e.CorrelationID != "my-checkout-1" {
			t.Errorf("the flow's page holds %s of correlation %q", e.Type, e.CorrelationID)
		}
		seen[e.Type] = true
	}
	for _, want := range []string{"order.placed", "listing.stock_reserved", "payment.authorized", "order.confirmed", "payment.captured"} {
		if !seen[want] {
			t.Errorf("the flow's events lack %s", want)
			return false
		}
	}
	return true
}

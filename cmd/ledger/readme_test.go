package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/cmd/ledger/internal/eventhttp"
	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
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
	runREADMECurlLines(t, ctx, bash, s)
}

// runREADMECurlLines runs the curl lines of the README's ```sh blocks
// against s, with a regulator's token for "mlt_…" and s's address for
// the default one: each must answer a page of the log.
func runREADMECurlLines(t *testing.T, ctx context.Context, bash string, s *servedLedger) {
	t.Helper()
	token := issueTestToken(t, s.g.dataDir, "regulator")
	waitStatusFor(t, s, token, "/v1/events?from=1", http.StatusOK)
	for _, c := range readmeCommands(t) {
		if !strings.HasPrefix(c.cmd, "curl ") {
			continue
		}
		line := strings.NewReplacer("mlt_…", token, "http://127.0.0.1:8080", s.base).Replace(c.cmd)
		out, err := exec.CommandContext(ctx, bash, "-c", line).Output()
		if err != nil || !bytes.HasPrefix(out, []byte(`{"events":[{`)) {
			t.Errorf("%s: %v: %.500s; want a page of events", c.cmd, err, out)
		}
	}
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

// readmeCommand is one command of the README's ```sh blocks, with its
// continuation lines joined and its trailing comment dropped.
type readmeCommand struct {
	line string // as written (joined)
	cmd  string // without the comment
}

// readmeCommands returns the commands of the README's ```sh blocks in order.
func readmeCommands(t *testing.T) []readmeCommand {
	t.Helper()
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	var out []readmeCommand
	in, pending := false, ""
	for line := range strings.SplitSeq(string(b), "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```sh":
			in = true
			continue
		case in && strings.TrimSpace(line) == "```":
			in = false
			continue
		case !in:
			continue
		}
		line = strings.TrimSpace(line)
		if body, ok := strings.CutSuffix(line, `\`); ok {
			pending += body
			continue
		}
		line, pending = pending+line, ""
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cmd, _, _ := strings.Cut(line, " #")
		out = append(out, readmeCommand{line: line, cmd: strings.TrimSpace(cmd)})
	}
	return out
}

// readmeParseOnly names the README commands that need what a test on one
// machine does not have, each with why: they are checked for parsing only
// (--help exits 0 and names every flag they use).
var readmeParseOnly = map[string]string{
	"bin/ledger serve --data ./data": "serves on the fixed ports 4222 and 8080 until stopped; TestREADMEWalkthrough runs serve on random ports",
	"bin/ledger serve --nats nats://a:4222,nats://b:4222 --replicas 3 --creds ./data/credentials": "an existing NATS cluster",
	"bin/ledger serve --data ./data --tls-cert cert.pem --tls-key key.pem --tls-ca ca.pem":        "TLS certificates",
	"bin/ledger mirror esdb --data DIR --url esdb://127.0.0.1:2113?tls=false":                     "EventStoreDB",
}

// optionalGroup is one "[--flag ...]" of a README command.
var optionalGroup = regexp.MustCompile(`\s*\[([^\]]+)\]`)

// TestREADMEExamples runs the README's examples as written: the ledger's
// commands on a data directory run on the demo's day (a test-sized day,
// with the freeze at 17:00 WIB, at DATA=data, the placeholders DIR, HEX,
// BACKUP and NEWDIR standing for it, the notary key and fresh directories;
// "[...]" run without and with); the ones that need an external system
// (readmeParseOnly) parse; the nats CLI lines (natscli is not ours to
// install) name .creds files a data directory holds; make lines dry-run
// (make test would run this test again); the curl lines run in
// TestREADMEWalkthrough, which has a ledger serving. A command the
// README gains fails here until it is run or classified.
func TestREADMEExamples(t *testing.T) {
	bash := needTool(t, "bash")
	cmds := readmeCommands(t)
	bin := buildLedger(t)
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var demoOut, demoErr bytes.Buffer
	if err := runDemo(ctx, &demoOut, &demoErr, filepath.Join(root, "data"), 7, testScale, true); err != nil {
		t.Fatalf("demo: %v\n%s", err, demoErr.String())
	}
	vars := map[string]string{"DIR": "data", "BACKUP": "backup", "NEWDIR": "newdir"}
	seen := map[string]bool{}
	for _, c := range cmds {
		t.Logf("checking %s", c.cmd)
		switch {
		case strings.HasPrefix(c.cmd, "make "):
			mk := exec.CommandContext(ctx, "make", "-n", strings.TrimPrefix(c.cmd, "make "))
			mk.Dir = filepath.Dir(readmePath)
			if out, err := mk.CombinedOutput(); err != nil {
				t.Errorf("%s: make -n: %v\n%s", c.cmd, err, out)
			}
		case strings.HasPrefix(c.cmd, "nats "):
			checkNATSLine(t, root, c.cmd)
		case strings.HasPrefix(c.cmd, "curl "):
			// TestREADMEWalkthrough runs it against its ledger.
		case readmeParseOnly[c.cmd] != "":
			seen[c.cmd] = true
			checkParses(t, ctx, bin, c.cmd)
		case strings.HasPrefix(c.cmd, "bin/ledger "):
			for i, variant := range []string{optionalGroup.ReplaceAllString(c.cmd, ""), optionalGroup.ReplaceAllString(c.cmd, " $1")} {
				if i == 1 && variant == c.cmd {
					break // no optional part
				}
				runREADMELine(t, ctx, bash, bin, root, variant, vars, i)
			}
		default:
			t.Errorf("README example %q is neither run nor classified in %s", c.line, t.Name())
		}
	}
	for cmd := range readmeParseOnly {
		if !seen[cmd] {
			t.Errorf("readmeParseOnly names %q, which the README no longer shows", cmd)
		}
	}
}

// runREADMELine runs one ledger command line with bash in root, its
// placeholders filled: a variant with its optional part (variant 1)
// writes to directories of its own. The notary key command fills HEX.
func runREADMELine(t *testing.T, ctx context.Context, bash, bin, root, line string, vars map[string]string, variant int) {
	t.Helper()
	words := strings.Fields(line)
	for i, w := range words {
		if w == "bin/ledger" {
			words[i] = bin
		}
		if v, ok := vars[w]; ok {
			if variant == 1 && (w == "BACKUP" || w == "NEWDIR") {
				v += "-2"
			}
			words[i] = v
		}
	}
	script := strings.Join(words, " ")
	if strings.HasPrefix(line, "bin/ledger tail ") {
		checkRunsUntilInterrupted(t, ctx, bash, root, script)
		return
	}
	cmd := exec.CommandContext(ctx, bash, "-c", script)
	cmd.Dir = root
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Errorf("%s: %v\nstdout:\n%.2000s\nstderr:\n%s", line, err, out.String(), errOut.String())
		return
	}
	if strings.HasPrefix(line, "bin/ledger notary key ") {
		vars["HEX"] = strings.TrimSpace(out.String())
	}
}

// checkRunsUntilInterrupted runs a command that follows the log until
// interrupted: it must still run after a second, and exit 0 on SIGINT.
func checkRunsUntilInterrupted(t *testing.T, ctx context.Context, bash, root, script string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bash, "-c", "exec "+script)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Errorf("%s: exited (%v) instead of following the log:\n%s", script, err, out.String())
		return
	case <-time.After(time.Second): // a follower has nothing to say until an event comes: a bounded look
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: on SIGINT: %v\n%s", script, err, out.String())
		}
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		t.Errorf("%s: still running 15 s after SIGINT", script)
	}
}

// subcommandWord is a word of a subcommand's path ("mirror esdb").
var subcommandWord = regexp.MustCompile(`^[a-z]+$`)

// checkParses runs the command's --help and checks that it names every
// flag the command uses.
func checkParses(t *testing.T, ctx context.Context, bin, line string) {
	t.Helper()
	var sub, flags []string
	for _, w := range strings.Fields(line)[1:] {
		if name, ok := strings.CutPrefix(w, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			flags = append(flags, name)
		} else if len(flags) == 0 && subcommandWord.MatchString(w) {
			sub = append(sub, w)
		}
	}
	out, err := exec.CommandContext(ctx, bin, append(sub, "--help")...).CombinedOutput()
	if err != nil {
		t.Errorf("%s: ledger %s --help: %v\n%s", line, strings.Join(sub, " "), err, out)
		return
	}
	for _, f := range flags {
		if !strings.Contains(string(out), "--"+f+" ") {
			t.Errorf("%s: ledger %s --help has no --%s", line, strings.Join(sub, " "), f)
		}
	}
}

// checkNATSLine checks a line for the stock nats CLI: the .creds file it
// names is where a data directory keeps it.
func checkNATSLine(t *testing.T, root, line string) {
	t.Helper()
	words := strings.Fields(line)
	for i, w := range words {
		if w == "--creds" && i+1 < len(words) {
			if _, err := os.Stat(filepath.Join(root, words[i+1])); err != nil {
				t.Errorf("%s: a data directory has no %s: %v", line, words[i+1], err)
			}
			return
		}
	}
	t.Errorf("%s: names no --creds file", line)
}

// TestTokenIssueQuiet: --quiet prints the token alone on one line, which
// the token file then admits for its role.
func TestTokenIssueQuiet(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	root := newRoot()
	root.SetArgs([]string{"token", "issue", "--data", dir, "--role", "buyer", "--subject", "buyer-1", "--quiet"})
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	token, ok := strings.CutSuffix(out.String(), "\n")
	if !ok || !strings.HasPrefix(token, "mlt_") || strings.ContainsAny(token, " \n") {
		t.Fatalf("token issue --quiet printed %q; want the token alone on one line", out.String())
	}
	entries, err := httpauth.ReadEntries(filepath.Join(credentialsDir(dir), tokensFile))
	if err != nil || len(entries) != 1 || entries[0].TokenSHA256 != fmt.Sprintf("%x", sha256.Sum256([]byte(token))) {
		t.Errorf("tokens file %+v (%v); want the printed token's hash", entries, err)
	}
}

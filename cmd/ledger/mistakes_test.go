package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
)

// runLedger runs the command line args in this process and returns what
// it printed and its exit status, as main would set it.
func runLedger(ctx context.Context, args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	if err := root.ExecuteContext(ctx); err != nil {
		errOut.WriteString("ledger: " + describe(err) + "\n")
		return out.String(), errOut.String(), exitCode(err)
	}
	return out.String(), errOut.String(), 0
}

// A read command on a missing or mistyped --data is refused with exit 2,
// names the flag, and leaves no ledger behind: it never answers from an
// empty ledger it made itself.
func TestCommandsRefuseADataDirWithoutALedger(t *testing.T) {
	parent := t.TempDir()
	empty := filepath.Join(parent, "empty") // exists, holds no ledger
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(parent, "b.zip")
	os.WriteFile(bundle, []byte("not a zip"), 0o600)
	for _, dir := range []string{filepath.Join(parent, "mistyped"), empty} {
		for _, args := range [][]string{
			{"policy", "list"},
			{"policy", "list", "--as-of", "2023-10-04T16:59:59+07:00"},
			{"policy", "freeze", "--all", "--basis", "b", "--issuer", "i"},
			{"policy", "lift", "--rule-id", "r", "--basis", "b", "--issuer", "i"},
			{"stream"},
			{"diff", "--at", "1", "--at", "2"},
			{"snapshot", "--as-of", "1", "--out", filepath.Join(parent, "s.zip")},
			{"replay"},
			{"replay", "--model", "catalogue", "--to", "1", "--out", filepath.Join(parent, "m")},
			{"trace", "o-1"},
			{"tail", "--count", "1"},
			{"mirror", "esdb", "--url", "esdb://127.0.0.1:1?tls=false"},
		} {
			args := append(args, "--data", dir)
			_, stderr, code := runLedger(context.Background(), args...)
			if code != exitUsage || !strings.Contains(stderr, "--data "+dir+": no ledger in this directory") {
				t.Errorf("ledger %s: exit %d, stderr %q; want exit 2 naming --data", strings.Join(args, " "), code, stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "jetstream")); err == nil {
				t.Fatalf("ledger %s made a ledger in %s", strings.Join(args, " "), dir)
			}
		}
	}
	_, stderr, code := runLedger(context.Background(), "verify", bundle, "--against", filepath.Join(parent, "mistyped"))
	if code != exitUsage || !strings.Contains(stderr, "no ledger in this directory") {
		t.Errorf("verify --against a mistyped directory: exit %d, stderr %q; want exit 2", code, stderr)
	}
}

// A second `ledger serve` on a directory that one already serves refuses,
// saying which process serves it, instead of joining its server.
func TestSecondServeOnADataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	g := &globals{dataDir: dir}
	first, err := openNode(context.Background(), g, nodeConfig{role: auth.RoleInvestigator, port: embedded.RandomPort, exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := writeServeInfo(dir, serveInfo{NATS: first.url, PID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, stderr, code := runLedger(ctx, "serve", "--data", dir, "--port", "-1", "--http", freeAddr(t))
	want := "--data " + dir + " is already served by ledger serve (pid " + strconv.Itoa(os.Getpid())
	if code != exitUsage || !strings.Contains(stderr, want) {
		t.Errorf("second serve: exit %d, stderr %q; want exit 2 and %q", code, stderr, want)
	}
}

// A lock file left by a process that died (its pid in the file, its
// serve.json still there) does not block the next serve: the lock is the
// kernel's, released with the process.
func TestStaleLockOfACrashedServeDoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip("no true(1):", err)
	}
	os.WriteFile(filepath.Join(dir, lockFile), []byte(strconv.Itoa(dead.Process.Pid)+"\n"), 0o600)
	if err := writeServeInfo(dir, serveInfo{NATS: "nats://127.0.0.1:1", PID: dead.Process.Pid}); err != nil {
		t.Fatal(err)
	}
	n, err := openNode(context.Background(), &globals{dataDir: dir}, nodeConfig{role: auth.RoleInvestigator, port: embedded.RandomPort, exclusive: true})
	if err != nil {
		t.Fatalf("a stale lock blocked the data directory: %v", err)
	}
	defer n.Close()
	if got := lockHolder(dir); got != os.Getpid() {
		t.Errorf("lock file names pid %d, want this process %d", got, os.Getpid())
	}
}

// Every refusal of what was typed exits 2, as the README says; `ledger
// version` answers.
func TestExitCodesFollowTheReadme(t *testing.T) {
	for _, args := range [][]string{
		{"nope"},
		{"verify"},
		{"verify", "a.zip", "b.zip"},
		{"stream", "extra"},
		{"policy", "nope"},
		{"credentials", "nope"},
		{"--bogus"},
		{"version", "extra"},
	} {
		_, stderr, code := runLedger(context.Background(), args...)
		if code != exitUsage || strings.Count(stderr, "\n") != 1 {
			t.Errorf("ledger %s: exit %d, stderr %q; want exit 2 and one line", strings.Join(args, " "), code, stderr)
		}
	}
	stdout, _, code := runLedger(context.Background(), "version")
	if code != 0 || !strings.HasPrefix(stdout, "ledger ") || !strings.Contains(stdout, "go1.") {
		t.Errorf("ledger version: exit %d, %q", code, stdout)
	}
	if _, _, code := runLedger(context.Background(), "policy"); code != 0 {
		t.Errorf("ledger policy (its help): exit %d, want 0", code)
	}
}

// TestPolicyRefusalsNameTheFlag: a policy command the ledger refuses says
// which flag to fix, in the flag's words, not the command field's JSON
// pointer or the contract schema's keyword.
func TestPolicyRefusalsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "jetstream"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "freeze", "--all", "--basis", "", "--issuer", "kemendag"}, "ledger: --basis: required, must not be empty\n"},
		{[]string{"policy", "freeze", "--all", "--channel", "bogus", "--basis", "b", "--issuer", "kemendag"}, "ledger: --channel: must be one of marketplace, social_commerce\n"},
		{[]string{"policy", "freeze", "--all", "--basis", "b", "--issuer", "kemendag", "--effective", "2020-01-01T00:00:00+07:00"}, "ledger: --effective: not earlier than the decision instant "},
		{[]string{"policy", "lift", "--rule-id", "nope", "--basis", "b", "--issuer", "kemendag"}, "ledger: --rule-id: no freeze rule \"nope\"\n"},
	} {
		args := append(tc.args, "--data", dir)
		_, stderr, code := runLedger(t.Context(), args...)
		if code != exitUsage || !strings.HasPrefix(stderr, tc.want) {
			t.Errorf("ledger %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(args, " "), code, stderr, tc.want)
		}
	}
}

// TestCredsTakesOneCredsFile: --creds names a standard .creds file, as it
// does for every NATS client, and the command connects as that user; serve,
// which connects each service as a user of its own, asks for the directory.
func TestCredsTakesOneCredsFile(t *testing.T) {
	node := startLogNode(t)
	file := filepath.Join(node.creds, auth.RoleInvestigator+auth.CredsExt)
	if _, stderr, code := runLedger(t.Context(), "stream", "--nats", node.url, "--creds", file); code != 0 {
		t.Fatalf("stream --creds %s: exit %d, %s", file, code, stderr)
	}
	// A user without the investigator's reads is refused as that user.
	sub := filepath.Join(node.creds, auth.RoleListing+auth.CredsExt)
	if _, stderr, code := runLedger(t.Context(), "stream", "--nats", node.url, "--creds", sub); code == 0 || !strings.Contains(strings.ToLower(stderr), "permission") {
		t.Errorf("stream as the listing service's user: exit %d, %q; want a permission refusal", code, stderr)
	}
	_, stderr, code := runLedger(t.Context(), "serve", "--nats", node.url, "--creds", file)
	if code != exitUsage || !strings.Contains(stderr, "give the directory holding their <role>.creds files") {
		t.Errorf("serve --creds FILE: exit %d, %q; want exit 2 asking for the directory", code, stderr)
	}
}

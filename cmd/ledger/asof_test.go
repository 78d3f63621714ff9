package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/projections/bundle"
	"github.com/marketledger/ledger/projections/notary"
)

// checkpointFixture appends a signed notary checkpoint to the ledger in dir.
func checkpointFixture(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	n, err := openNode(ctx, &globals{dataDir: dir}, nodeConfig{role: auth.RoleOperator, port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	key, err := notary.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := notary.New(n.store, key).Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStateAsOfWithProofVerifiesOffline: `ledger state` answers one order
// as of a business instant and as of a position from the index, and its
// answer with --proof --json verifies offline with the notary's key, and is
// intact but not trusted without it.
func TestStateAsOfWithProofVerifiesOffline(t *testing.T) {
	ctx := context.Background()
	dir := fixtureDir(t)
	checkpointFixture(t, dir)
	g := &globals{dataDir: dir, json: true}
	var out bytes.Buffer
	// At 10:00 WIB o-2001 was placed; its payment came at 10:01.
	if err := runState(ctx, g, &out, rowQuery{model: "orders", key: "o-2001", asOf: "2023-10-04T10:00:30+07:00", clock: "business"}); err != nil {
		t.Fatal(err)
	}
	var a bundle.RowAnswer
	var o struct{ Status string }
	if err := json.Unmarshal(out.Bytes(), &a); err != nil || len(a.Rows) != 1 || json.Unmarshal(a.Rows[0].State, &o) != nil || o.Status != "placed" {
		t.Fatalf("o-2001 at 10:00:30: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := runState(ctx, g, &out, rowQuery{model: "orders", key: "o-2001", proof: true}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "answer.json")
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var vout bytes.Buffer
	if err := runVerify(ctx, &globals{dataDir: t.TempDir()}, &vout, path, "", notaryKeyHex(t, dir)); err != nil {
		t.Fatalf("verify: %v\n%s", err, vout.String())
	}
	vout.Reset()
	if err := runVerify(ctx, &globals{dataDir: t.TempDir()}, &vout, path, "", ""); exitCode(err) != exitUntrusted {
		t.Errorf("verify without --key: %v (exit %d), want exit %d", err, exitCode(err), exitUntrusted)
	}
	tampered := bytes.Replace(out.Bytes(), []byte(`"o-2001"`), []byte(`"o-2009"`), 1)
	if err := os.WriteFile(path, tampered, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := runVerify(ctx, &globals{dataDir: t.TempDir()}, &vout, path, "", notaryKeyHex(t, dir)); err == nil {
		t.Errorf("a changed event verified:\n%s", vout.String())
	}
}

// TestModelsEndpointAnswersAndRefusesBadInput: GET /v1/models/{model}/{key}
// answers from the index; each bad parameter is a 400 naming it.
func TestModelsEndpointAnswersAndRefusesBadInput(t *testing.T) {
	dir := fixtureDir(t)
	g := &globals{dataDir: dir}
	token := issueTestToken(t, dir, "investigator")
	s := startServed(t, g, &serveOpts{services: " "}, http.DefaultClient)
	code, body := s.call(t, "GET", "/v1/models/orders/o-2002?as_of=2023-10-04T17:00:00%2B07:00&clock=business", token, nil)
	if code != 200 || !strings.Contains(string(body), `"status":"rejected"`) {
		t.Errorf("o-2002 at 17:00 WIB = %d %s", code, body)
	}
	code, body = s.call(t, "GET", "/v1/models/balances?prefix=account/&limit=2", token, nil)
	var page bundle.RowAnswer
	if code != 200 || json.Unmarshal(body, &page) != nil || len(page.Rows) == 0 || !strings.HasPrefix(page.Rows[0].Key, "account/") {
		t.Errorf("balances page = %d %s", code, body)
	}
	for _, tc := range []struct{ path, param string }{
		{"/v1/models/orders/o-2001?as_of=2023-10-04T16:59:59&clock=business", "as_of"},
		{"/v1/models/orders/o-2001?as_of=3&clock=wall", "clock"},
		{"/v1/models/nope/o-2001", "model"},
		{"/v1/models/orders/o-9999", "key"},
		{"/v1/models/orders/o-2001?as_of=99999&clock=position", "as_of"},
		{"/v1/models/orders/o-2001?as_of=2023-10-04T16:59:59%2B07:00&clock=business&known_at=x", "known_at"},
		{"/v1/models/orders?limit=0", "limit"},
	} {
		code, body := s.call(t, "GET", tc.path, token, nil)
		if code != 400 || !strings.Contains(string(body), tc.param) {
			t.Errorf("%s = %d %s; want 400 naming %s", tc.path, code, body, tc.param)
		}
	}
}

// TestSnapshotStreamsFromTheIndex writes a bundle with `ledger snapshot` on
// a demo data directory: it is the v2 format, streamed from the as-of
// index, and `ledger verify --key --against` checks it against the log.
func TestSnapshotStreamsFromTheIndex(t *testing.T) {
	ctx := context.Background()
	dir := fixtureDir(t)
	out := filepath.Join(t.TempDir(), "snapshot.zip")
	stdout, stderr, code := runLedger(ctx, "snapshot", "--data", dir, "--as-of", "2023-10-04T16:59:59+07:00", "--out", out)
	if code != 0 || !strings.Contains(stdout, "format v2, streamed from the as-of index") {
		t.Fatalf("snapshot: exit %d: %s%s", code, stdout, stderr)
	}
	key, _, code := runLedger(ctx, "notary", "key", "--data", dir)
	if code != 0 {
		t.Fatalf("notary key: exit %d", code)
	}
	stdout, stderr, code = runLedger(ctx, "verify", out, "--key", strings.TrimSpace(key), "--against", dir)
	if code != 0 || !strings.Contains(stdout, "verified") {
		t.Fatalf("verify: exit %d: %s%s", code, stdout, stderr)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 1 {
		t.Errorf("snapshot left %d files beside the bundle", len(entries)-1)
	}
}

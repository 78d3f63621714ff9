package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/tlsconf"
	"github.com/marketledger/ledger/node/tlsconf/tlstest"
	"github.com/marketledger/ledger/services/checkout"
)

// servedLedger is an in-process `ledger serve` on the embedded default.
type servedLedger struct {
	g      *globals
	base   string // http:// or https:// and the address
	info   serveInfo
	client *http.Client // trusts the server's certificate, sends no token
}

// startServed runs serve (all four services unless o says otherwise, the
// embedded server, random ports) until t ends and waits until /readyz
// answers.
func startServed(t testing.TB, g *globals, o *serveOpts, client *http.Client) *servedLedger {
	t.Helper()
	s, stop := launchServed(t, g, o, client)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s
}

// launchServed is startServed with the stop left to the caller: stop
// cancels serve and returns what it returned (an error if it did not stop
// within 30 s).
func launchServed(t testing.TB, g *globals, o *serveOpts, client *http.Client) (*servedLedger, func() error) {
	t.Helper()
	addr := freeAddr(t)
	o.http, o.host, o.port, o.replicas = addr, "127.0.0.1", -1, 1
	if o.services == "" {
		o.services = strings.Join(allServices, ",")
	}
	scheme := "http://"
	if o.tlsCert != "" {
		scheme = "https://"
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, g, o) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(30 * time.Second):
				stopErr = errors.New("serve did not stop within 30 s")
			}
		})
		return stopErr
	}
	s := &servedLedger{g: g, base: scheme + addr, client: client}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve exited before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("serve not ready within 30 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // starting: nothing to await but its socket
	}
	info, err := readServeInfo(g.dataDir)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	s.info = info
	return s, stop
}

// call sends one request with token ("" for none) and returns the status
// and body.
func (s *servedLedger) call(t *testing.T, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.base+path, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestServeEnforcesLeastPrivilegeByDefault runs `ledger serve` with no
// security flags and shows that the embedded server admits only the
// ledger's users, that each user is held to its role on the server side,
// that the HTTP API needs a token of the right role for every endpoint
// group, and that the other subcommands find the credentials themselves.
func TestServeEnforcesLeastPrivilegeByDefault(t *testing.T) {
	g := &globals{dataDir: t.TempDir()}
	tokens := map[string]string{}
	for _, role := range httpauth.Roles() {
		tokens[role] = issueTestToken(t, g.dataDir, role)
	}
	s := startServed(t, g, &serveOpts{projections: true}, http.DefaultClient)

	// Credentials: one seed and one .creds file per role, and the
	// operator's, the account's and the system account's keys, private
	// to the user.
	dir := credentialsDir(g.dataDir)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("credentials directory: %v %v; want mode 0700", fi, err)
	}
	files := []string{"nats-operator.nk", "account.nk", "nats-system.nk"}
	for _, role := range auth.Roles() {
		files = append(files, role+auth.SeedExt, role+auth.CredsExt)
	}
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v; want mode 0600", f, err)
		}
	}

	// NATS: no credentials, no connection.
	if nc, err := nats.Connect(s.info.NATS, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("the embedded server accepted a connection without credentials")
	}
	// The investigator reads the stream but cannot append, nor change it.
	inv := connectAs(t, s.info.NATS, g.dataDir, auth.RoleInvestigator)
	js, _ := jetstream.New(inv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatalf("investigator: stream info: %v", err)
	}
	before := stream.CachedInfo().State.LastSeq
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	if _, err := js.Publish(short, "ledger.order.o-x.order.placed", []byte("{}")); err == nil {
		t.Error("investigator appended to ledger.order")
	}
	cancelShort()
	short, cancelShort = context.WithTimeout(ctx, time.Second)
	if err := js.DeleteStream(short, events.StreamName); err == nil {
		t.Error("investigator deleted the stream")
	}
	cancelShort()
	// The listing service's user cannot append an order event.
	lst := connectAs(t, s.info.NATS, g.dataDir, auth.RoleListing)
	ljs, _ := jetstream.New(lst)
	short, cancelShort = context.WithTimeout(ctx, time.Second)
	if _, err := ljs.Publish(short, "ledger.order.o-x.order.placed", []byte("{}")); err == nil {
		t.Error("the listing user appended to ledger.order")
	}
	cancelShort()
	if info, err := stream.Info(ctx); err != nil || info.State.LastSeq != before {
		t.Fatalf("denied appends moved the log: %d -> %v (%v)", before, info.State.LastSeq, err)
	}

	// HTTP: every endpoint group answers 401 without a token, 403 to a
	// role it does not admit, and works for one it does.
	idr := func(m int64) contracts.Money { return contracts.Money{AmountMinor: m, Currency: "IDR"} }
	listing := contracts.CreateListing{ListingID: "sec-1", SellerID: "seller-1", Title: "Batik shirt", Category: "fashion",
		Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID", Origin: contracts.OriginDomestic, Price: idr(150_000_00), Stock: 10}
	freeze := contracts.ImposeFreeze{RuleID: "sec-freeze", Scope: contracts.Scope{Jurisdictions: []string{"ID"},
		Channels: []contracts.Channel{contracts.ChannelSocialCommerce}}, LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}
	place := contracts.PlaceOrder{OrderID: "sec-o-1", BuyerID: "buyer-1", ListingID: "sec-1", Quantity: 1}
	cases := []struct {
		method, path string
		body         any
		denied       []string // roles answered 403
		allowed      string   // a role answered 2xx (or the endpoint's own answer)
		want         int
	}{
		{"GET", "/metrics", nil, []string{"regulator", "buyer", "policy_issuer"}, "operator", 200},
		{"GET", "/v1/events?from=1", nil, []string{"buyer", "seller", "policy_issuer"}, "regulator", 200},
		{"POST", "/v1/commands/listing.create", listing, []string{"buyer", "regulator", "investigator", "policy_issuer"}, "operator", 200},
		{"POST", "/v1/commands/order.place", place, []string{"regulator", "policy_issuer"}, "operator", 200},
		{"POST", "/v1/commands/policy.impose_freeze", freeze, []string{"operator", "regulator", "seller", "buyer"}, "policy_issuer", 200},
		{"GET", "/v1/policy/rules", nil, nil, "regulator", 200},
		// Once the log holds events: a bundle as of its first position.
		{"GET", "/v1/snapshots?as_of=1", nil, []string{"buyer", "seller"}, "regulator", 200},
	}
	for _, c := range cases {
		if code, b := s.call(t, c.method, c.path, "", c.body); code != http.StatusUnauthorized || !strings.Contains(string(b), "bearer") {
			t.Errorf("%s %s without a token: %d %s; want 401", c.method, c.path, code, b)
		}
		if code, _ := s.call(t, c.method, c.path, "mlt_not-a-token-anyone-was-given", c.body); code != http.StatusUnauthorized {
			t.Errorf("%s %s with an unknown token: %d; want 401", c.method, c.path, code)
		}
		for _, role := range c.denied {
			if code, b := s.call(t, c.method, c.path, tokens[role], c.body); code != http.StatusForbidden {
				t.Errorf("%s %s as %s: %d %s; want 403", c.method, c.path, role, code, b)
			}
		}
		if code, b := s.call(t, c.method, c.path, tokens[c.allowed], c.body); code != c.want {
			t.Errorf("%s %s as %s: %d %s; want %d", c.method, c.path, c.allowed, code, b, c.want)
		}
	}
	// Health, readiness and the OpenAPI document stay open.
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json"} {
		if code, _ := s.call(t, "GET", p, "", nil); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d; want 200", p, code)
		}
	}
	// Buyer and seller tokens act only for their subject (test-<role>).
	own := []struct {
		role, name string
		body       any
		want       int
	}{
		{"seller", "listing.create", contracts.CreateListing{ListingID: "sec-2", SellerID: "seller-9", Title: "Not mine", Category: "fashion",
			Channel: contracts.ChannelMarketplace, Jurisdiction: "ID", Origin: contracts.OriginDomestic, Price: idr(150_000_00), Stock: 1}, http.StatusForbidden},
		{"seller", "listing.change_price", contracts.ChangePrice{ListingID: "sec-1", Price: idr(140_000_00)}, http.StatusForbidden},
		{"buyer", "order.place", contracts.PlaceOrder{OrderID: "sec-o-9", BuyerID: "buyer-9", ListingID: "sec-1", Quantity: 1}, http.StatusForbidden},
		{"buyer", "order.cancel", contracts.CancelOrder{OrderID: "sec-o-1", Reason: "not mine"}, http.StatusForbidden},
		{"buyer", "listing.reserve_stock", contracts.ReserveStock{ListingID: "sec-1", OrderID: "sec-o-1", Quantity: 1}, http.StatusForbidden},
		{"operator", "listing.change_price", contracts.ChangePrice{ListingID: "sec-1", Price: idr(149_000_00)}, http.StatusOK},
	}
	for _, c := range own {
		if code, b := s.call(t, "POST", "/v1/commands/"+c.name, tokens[c.role], c.body); code != c.want {
			t.Errorf("%s as %s: %d %s; want %d", c.name, c.role, code, b, c.want)
		}
	}
	mine := contracts.CreateListing{ListingID: "sec-3", SellerID: "test-seller", Title: "Mine", Category: "fashion",
		Channel: contracts.ChannelMarketplace, Jurisdiction: "ID", Origin: contracts.OriginDomestic, Price: idr(150_000_00), Stock: 5}
	if code, b := s.call(t, "POST", "/v1/commands/listing.create", tokens["seller"], mine); code != http.StatusOK {
		t.Errorf("listing.create of the seller's own listing: %d %s", code, b)
	}
	if code, b := s.call(t, "POST", "/v1/commands/listing.change_stock", tokens["seller"], contracts.ChangeStock{ListingID: "sec-3", Stock: 7}); code != http.StatusOK {
		t.Errorf("listing.change_stock of the seller's own listing: %d %s", code, b)
	}

	// A buyer cannot take the checkout manager's step keys: its keys live
	// in a namespace of their own, and its order is checked out.
	if code, b := s.call(t, "POST", "/v1/commands/order.place", tokens["buyer"], contracts.PlaceOrder{OrderID: "sec-o-5",
		BuyerID: "test-buyer", ListingID: "sec-3", Quantity: 1, IdempotencyKey: checkout.StepKey("sec-o-5", "confirm")}); code != http.StatusOK {
		t.Fatalf("order.place with the manager's key: %d %s", code, b)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, b := s.call(t, "GET", "/v1/events?from=1&type=order.confirmed", tokens["regulator"], nil)
		if strings.Contains(string(b), `"sec-o-5"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("order sec-o-5 not confirmed within 20 s:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond) // the checkout runs on its own; nothing to await over HTTP but the log
	}
	// A buyer's key is checked as sent before it is scoped to the buyer: a
	// key the contract refuses is refused, not hashed into a valid one.
	for _, key := range []string{strings.Repeat("k", 300), "has spaces"} {
		if code, b := s.call(t, "POST", "/v1/commands/order.place", tokens["buyer"], contracts.PlaceOrder{OrderID: "sec-o-6",
			BuyerID: "test-buyer", ListingID: "sec-3", Quantity: 1, IdempotencyKey: key}); code != http.StatusBadRequest ||
			!strings.Contains(string(b), "/idempotency_key") {
			t.Errorf("order.place by a buyer with idempotency key %.20q: %d %s; want 400 at /idempotency_key", key, code, b)
		}
	}
	// Commands on an aggregate that does not exist are refused before any
	// decision, so that none can wait for someone else's id.
	if code, b := s.call(t, "POST", "/v1/commands/order.cancel", tokens["buyer"], contracts.CancelOrder{OrderID: "sec-o-404", Reason: "x"}); code != http.StatusNotFound {
		t.Errorf("order.cancel of an order that does not exist: %d %s; want 404", code, b)
	}
	// /metrics counts the appends of every service's store.
	if code, b := s.call(t, "GET", "/metrics", tokens["operator"], nil); code != http.StatusOK || !regexp.MustCompile(`(?m)^ledger_store_decisions_total [1-9]`).Match(b) {
		t.Errorf("/metrics: %d; want ledger_store_decisions_total above zero", code)
	}

	// The freeze is in force: a social-commerce order is now refused.
	if code, b := s.call(t, "POST", "/v1/commands/order.place", tokens["buyer"],
		contracts.PlaceOrder{OrderID: "sec-o-2", BuyerID: "test-buyer", ListingID: "sec-1", Quantity: 1}); code != http.StatusLocked {
		t.Errorf("order.place under the freeze: %d %s; want 423", code, b)
	}
	// The operator sees the refusal by its rule, command latency by
	// outcome, HTTP latency by route (not by path), and the build.
	if code, b := s.call(t, "GET", "/metrics", tokens["operator"], nil); code != http.StatusOK {
		t.Errorf("/metrics: %d", code)
	} else {
		for _, want := range []string{
			`ledger_refusals_total{command="order.place",kind="frozen",reason="",rule="` + freeze.RuleID + `"} 1`,
			`ledger_command_duration_seconds_count{command="order.place",outcome="ok"}`,
			`ledger_command_duration_seconds_count{command="order.place",outcome="frozen"} 1`,
			`ledger_http_request_duration_seconds_count{method="POST",route="POST /v1/commands/{name}",status="423"}`,
			`ledger_build_info{`,
		} {
			if !strings.Contains(string(b), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	}

	// A token issued while serve runs is in force without a restart; a
	// revoked one is refused.
	late := issueTestToken(t, g.dataDir, "regulator")
	waitStatus(t, s, late, http.StatusOK)
	if n, err := httpauth.RevokeTokens(filepath.Join(dir, tokensFile), "test-regulator"); err != nil || n != 2 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	waitStatus(t, s, late, http.StatusUnauthorized)

	// Other subcommands join the running server with their own users.
	var out, errOut bytes.Buffer
	if err := runReplay(ctx, &globals{dataDir: g.dataDir, json: true}, &replayOpts{}, &out, &errOut); err != nil {
		t.Fatalf("replay beside serve: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "policy.freeze_imposed") {
		t.Errorf("replay beside serve did not see the freeze:\n%s", out.String())
	}
}

// waitStatus waits until GET /v1/events answers want to token: the tokens
// file is followed within a second.
func waitStatus(t *testing.T, s *servedLedger, token string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := s.call(t, "GET", "/v1/events?from=1", token, nil)
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/events: %d; want %d within 10 s", code, want)
		}
		time.Sleep(50 * time.Millisecond) // the file is re-read at most once a second
	}
}

// TestServeWithTLS turns on TLS with --tls-cert and --tls-key on a CA made
// for the test: HTTPS and NATS over TLS work for clients that trust the CA,
// plain-text clients and clients trusting another CA are refused, and the
// other subcommands trust the CA serve names in serve.json.
func TestServeWithTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "ledger test CA")
	cert := ca.Server("ledger")
	g := &globals{dataDir: t.TempDir(), tlsCA: ca.File()}
	token := issueTestToken(t, g.dataDir, "regulator")
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	s := startServed(t, g, &serveOpts{tlsCert: cert.Cert, tlsKey: cert.Key}, trusting)

	if code, b := s.call(t, "GET", "/v1/events?from=1", token, nil); code != http.StatusOK {
		t.Errorf("HTTPS GET /v1/events: %d %s", code, b)
	}
	plain := strings.Replace(s.base, "https://", "http://", 1)
	if resp, err := http.Get(plain + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP was answered 200 on the TLS port")
		}
	}
	other := tlstest.NewCA(t, "another CA")
	foreign := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: other.Pool(), MinVersion: tls.VersionTLS12}}}
	if _, err := foreign.Get(s.base + "/healthz"); err == nil {
		t.Error("a client trusting another CA accepted the server's certificate")
	}

	creds := filepath.Join(credentialsDir(g.dataDir), auth.RoleInvestigator+auth.CredsExt)
	if nc, err := auth.Connect(s.info.NATS, creds, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("NATS accepted a plain-text connection")
	}
	secure, err := tlsconf.ClientOption(tlsconf.Files{CA: ca.File()})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := auth.Connect(s.info.NATS, creds, secure, nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("NATS over TLS: %v", err)
	}
	nc.Close()
	wrong, _ := tlsconf.ClientOption(tlsconf.Files{CA: other.File()})
	if nc, err := auth.Connect(s.info.NATS, creds, wrong, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("NATS over TLS with another CA connected")
	}

	// A subcommand on the same data directory trusts the CA serve names.
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := runReplay(ctx, &globals{dataDir: g.dataDir}, &replayOpts{}, &out, &errOut); err != nil {
		t.Fatalf("replay beside a TLS serve: %v\n%s", err, errOut.String())
	}
}

// TestServeRefusesBadSecurityInput: a malformed seed, an expired
// certificate, a tokens file naming an unknown role, each refused at start
// with an error that names the file and the rule, without the secret.
func TestServeRefusesBadSecurityInput(t *testing.T) {
	run := func(g *globals, o *serveOpts) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		o.http, o.host, o.port, o.replicas = freeAddr(t), "127.0.0.1", -1, 1
		return runServe(ctx, g, o)
	}

	g := &globals{dataDir: t.TempDir()}
	if _, err := auth.Ensure(g.dataDir); err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(credentialsDir(g.dataDir), auth.RoleOrder+auth.SeedExt)
	secret := "SUNOTAREALSEEDBUTLOOKSLIKEONE"
	if err := os.WriteFile(seed, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(g, &serveOpts{})
	if err == nil || !strings.Contains(err.Error(), "order"+auth.SeedExt) || strings.Contains(err.Error(), secret) {
		t.Errorf("malformed seed: %v; want an error naming the file and not its content", err)
	}

	ca := tlstest.NewCA(t, "ledger test CA")
	expired := ca.Issue("old", true, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	err = run(&globals{dataDir: t.TempDir()}, &serveOpts{tlsCert: expired.Cert, tlsKey: expired.Key})
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired certificate: %v; want an error saying it expired", err)
	}

	g = &globals{dataDir: t.TempDir()}
	tokensPath := filepath.Join(credentialsDir(g.dataDir), tokensFile)
	os.MkdirAll(filepath.Dir(tokensPath), 0o700)
	bad := `[{"token_sha256": "` + strings.Repeat("ab", 32) + `", "role": "superuser", "subject": "mallory"}]`
	if err := os.WriteFile(tokensPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	err = run(g, &serveOpts{})
	if err == nil || !strings.Contains(err.Error(), "unknown role") || strings.Contains(err.Error(), strings.Repeat("ab", 32)) {
		t.Errorf("tokens file with an unknown role: %v; want an error naming the rule and not the hash", err)
	}
	if !errors.As(err, new(usageError)) {
		t.Errorf("tokens file with an unknown role: %T; want a usage error (exit 2)", err)
	}
}

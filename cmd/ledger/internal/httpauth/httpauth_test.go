package httpauth_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
)

// issueAll writes a tokens file with one token per role and returns the
// tokens by role.
func issueAll(t *testing.T) (string, map[string]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.json")
	tokens := map[string]string{}
	for _, role := range httpauth.Roles() {
		tok, _, err := httpauth.IssueToken(path, role, "test-"+role)
		if err != nil {
			t.Fatal(err)
		}
		tokens[role] = tok
	}
	return path, tokens
}

// api is the ledger's endpoint groups behind the middleware, each answering
// 200 when admitted.
func api(t *testing.T, tokens *httpauth.Tokens, log *zap.Logger, lim *httpauth.Limiter, handler http.Handler) http.Handler {
	t.Helper()
	if handler == nil {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/commands/{name}", httpauth.RequireCommand()(handler))
	mux.Handle("GET /v1/events", httpauth.Require(httpauth.ReadRoles...)(handler))
	mux.Handle("GET /v1/snapshots", httpauth.Require(httpauth.ReadRoles...)(handler))
	mux.Handle("GET /v1/policy/rules", httpauth.Require(httpauth.PolicyRulesRoles...)(handler))
	mux.Handle("GET /metrics", httpauth.Require(httpauth.MetricsRoles...)(handler))
	mux.Handle("GET /healthz", handler)
	if lim == nil {
		lim = httpauth.NewLimiter(0, 0, log)
	}
	return httpauth.NewAuthenticator(tokens, log).Middleware(lim.Middleware(mux))
}

type group struct {
	name, method, path string
	allowed            []string
}

var groups = []group{
	{"listing commands", "POST", "/v1/commands/listing.create", []string{"seller", "operator"}},
	{"order commands", "POST", "/v1/commands/order.place", []string{"buyer", "seller", "operator"}},
	{"payment commands", "POST", "/v1/commands/payment.capture", []string{"operator"}},
	{"policy commands", "POST", "/v1/commands/policy.impose_freeze", []string{"policy_issuer"}},
	{"events", "GET", "/v1/events", []string{"regulator", "operator", "investigator"}},
	{"snapshots", "GET", "/v1/snapshots?as_of=2023-10-04T17:00:00%2B07:00", []string{"regulator", "operator", "investigator"}},
	{"metrics", "GET", "/metrics", []string{"operator"}},
	{"policy rules", "GET", "/v1/policy/rules", httpauth.Roles()},
}

func do(h http.Handler, method, path, auth string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(`{}`))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func checkProblem(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d: %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q", ct)
	}
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != status || p.Title == "" {
		t.Fatalf("problem body %s: %v", w.Body, err)
	}
}

func TestEndpointGroups(t *testing.T) {
	path, tokens := issueAll(t)
	ts, err := httpauth.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	h := api(t, ts, zap.New(core), nil, nil)
	unknown := "mlt_" + strings.Repeat("A", 43)

	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, bad := range []string{"", "Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", "Bearer a b", "Bearer tok\"en", "Token " + tokens["operator"],
				"Bearer " + strings.Repeat("x", 600), "Bearer " + unknown} {
				w := do(h, g.method, g.path, bad)
				checkProblem(t, w, http.StatusUnauthorized)
				if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("%q: WWW-Authenticate %q", bad, w.Header().Get("WWW-Authenticate"))
				}
			}
			for _, role := range httpauth.Roles() {
				w := do(h, g.method, g.path, "Bearer "+tokens[role])
				want := http.StatusForbidden
				for _, a := range g.allowed {
					if a == role {
						want = http.StatusOK
					}
				}
				if want == http.StatusOK {
					if w.Code != http.StatusOK {
						t.Fatalf("%s refused with %d: %s", role, w.Code, w.Body)
					}
					continue
				}
				checkProblem(t, w, http.StatusForbidden)
			}
		})
	}
	t.Run("regulator changes nothing", func(t *testing.T) {
		for _, cmd := range []string{"listing.create", "order.place", "payment.refund", "policy.lift_freeze", "unknown.thing"} {
			checkProblem(t, do(h, "POST", "/v1/commands/"+cmd, "Bearer "+tokens["regulator"]), http.StatusForbidden)
		}
	})
	t.Run("open endpoints stay open", func(t *testing.T) {
		if w := do(h, "GET", "/healthz", ""); w.Code != http.StatusOK {
			t.Fatalf("healthz: %d", w.Code)
		}
		if w := do(h, "GET", "/healthz", "Bearer "+unknown); w.Code != http.StatusOK {
			t.Fatalf("healthz with an unknown token: %d", w.Code)
		}
	})
	t.Run("refusals are logged without tokens", func(t *testing.T) {
		entries := logs.FilterMessage("http request refused").All()
		if len(entries) == 0 {
			t.Fatal("no refusal logged")
		}
		sum := sha256.Sum256([]byte(unknown))
		sawID := false
		for _, e := range entries {
			b, _ := json.Marshal(e.ContextMap())
			line := e.Message + string(b)
			for _, tok := range append([]string{unknown}, values(tokens)...) {
				if strings.Contains(line, tok) {
					t.Fatalf("a token was logged: %s", line)
				}
			}
			if e.ContextMap()["token_id"] == hex.EncodeToString(sum[:4]) {
				sawID = true
			}
		}
		if !sawID {
			t.Fatal("the unknown token's hash prefix was not logged")
		}
	})
}

func values(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func TestRequireWithoutAuthenticatorFailsClosed(t *testing.T) {
	h := httpauth.Require(httpauth.RoleOperator)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Fatal("admitted without an authenticator")
	}))
	checkProblem(t, do(h, "GET", "/metrics", "Bearer whatever"), http.StatusUnauthorized)
}

func TestIssueToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	tok, e, err := httpauth.IssueToken(path, httpauth.RoleRegulator, "ojk-audit")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, httpauth.TokenPrefix) || len(tok) < 40 {
		t.Fatalf("token %q", tok)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), tok) {
		t.Fatal("the tokens file holds the token itself")
	}
	sum := sha256.Sum256([]byte(tok))
	if e.TokenSHA256 != hex.EncodeToString(sum[:]) || !strings.Contains(string(b), e.TokenSHA256) {
		t.Fatal("the file does not hold the token's hash")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	var out strings.Builder
	httpauth.PrintIssued(&out, tok, e)
	if strings.Count(out.String(), tok) != 1 {
		t.Fatalf("the token is not printed exactly once:\n%s", out.String())
	}
	tok2, _, err := httpauth.IssueToken(path, httpauth.RoleSeller, "s-77")
	if err != nil {
		t.Fatal(err)
	}
	ts, err := httpauth.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	p1, ok1 := ts.Lookup(tok)
	p2, ok2 := ts.Lookup(tok2)
	if !ok1 || !ok2 || p1.Role != "regulator" || p2.Subject != "s-77" || ts.Len() != 2 {
		t.Fatalf("lookup: %+v %v %+v %v", p1, ok1, p2, ok2)
	}
	if _, _, err := httpauth.IssueToken(path, "admin", "x"); err == nil {
		t.Fatal("a token with an unknown role was issued")
	}
}

// TestTokensFileRefused: bad files are refused at load with an error that
// names the entry and the rule, and repeats no secret.
func TestTokensFileRefused(t *testing.T) {
	const secret = "mlt_s3cr3tS3CR3Ts3cr3tS3CR3Ts3cr3tS3CR3Ts3c"
	sum := sha256.Sum256([]byte(secret))
	hash := hex.EncodeToString(sum[:])
	cases := []struct {
		name, file, want string
	}{
		{"token instead of hash", `[{"token_sha256":"` + secret + `","role":"operator","subject":"ops"}]`, "64 hex digits"},
		{"unknown role", `[{"token_sha256":"` + hash + `","role":"superuser","subject":"ops"}]`, `unknown role "superuser"`},
		{"secret as role", `[{"token_sha256":"` + hash + `","role":"` + secret + `","subject":"ops"}]`, "not shown"},
		{"no subject", `[{"token_sha256":"` + hash + `","role":"operator"}]`, "subject is required"},
		{"token field", `[{"token":"` + secret + `","token_sha256":"` + hash + `","role":"operator","subject":"ops"}]`, "field other than"},
		{"duplicate", `[{"token_sha256":"` + hash + `","role":"operator","subject":"a"},{"token_sha256":"` + hash + `","role":"buyer","subject":"b"}]`, "same token"},
		{"empty", `[]`, "no tokens"},
		{"not json", secret, "not valid JSON"},
		{"object", `{"token_sha256":"` + secret + `"}`, "JSON array"},
		{"trailing", `[{"token_sha256":"` + hash + `","role":"operator","subject":"a"}] ` + secret, "trailing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.json")
			os.WriteFile(path, []byte(c.file), 0o600)
			_, err := httpauth.LoadTokens(path)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), hash) {
				t.Fatalf("error repeats a secret: %v", err)
			}
		})
	}
	t.Run("writable by others", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tokens.json")
		os.WriteFile(path, []byte(`[{"token_sha256":"`+hash+`","role":"operator","subject":"a"}]`), 0o600)
		os.Chmod(path, 0o666)
		if _, err := httpauth.LoadTokens(path); err == nil || !strings.Contains(err.Error(), "writable by other users") {
			t.Fatalf("want a refusal, got %v", err)
		}
	})
}

// TestFloodDoesNotStarve: one client keeps far more requests in flight than
// its bound while another sends its own; the other's requests are all
// served, each within a bound, and the flooder is refused with 429.
func TestFloodDoesNotStarve(t *testing.T) {
	path, tokens := issueAll(t)
	ts, err := httpauth.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	const perClient, total, work = 4, 8, 20 * time.Millisecond
	var mu sync.Mutex
	inFlight, maxInFlight := map[string]int{}, map[string]int{}
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := httpauth.PrincipalFrom(r.Context())
		mu.Lock()
		inFlight[p.Subject]++
		maxInFlight[p.Subject] = max(maxInFlight[p.Subject], inFlight[p.Subject])
		mu.Unlock()
		time.Sleep(work) // a bounded backend: the store's queue, a service call
		mu.Lock()
		inFlight[p.Subject]--
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	lim := httpauth.NewLimiter(perClient, total, nil)
	srv := httptest.NewServer(api(t, ts, nil, lim, slow))
	t.Cleanup(srv.Close)

	send := func(c *http.Client, token string) (int, error) {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	stop := make(chan struct{})
	var flooded, refused atomic.Int64
	var wg sync.WaitGroup
	floodClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, err := send(floodClient, tokens[httpauth.RoleOperator])
				if err == nil {
					flooded.Add(1)
					if code == http.StatusTooManyRequests {
						refused.Add(1)
					}
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // the flood is under way

	victim := &http.Client{Timeout: 5 * time.Second}
	const bound = time.Second
	var slowest time.Duration
	for i := range 20 {
		start := time.Now()
		code, err := send(victim, tokens[httpauth.RoleRegulator])
		d := time.Since(start)
		slowest = max(slowest, d)
		if err != nil || code != http.StatusOK {
			close(stop)
			wg.Wait()
			t.Fatalf("request %d of the other client: %d %v", i, code, err)
		}
		if d > bound {
			close(stop)
			wg.Wait()
			t.Fatalf("request %d of the other client took %s (bound %s)", i, d, bound)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("flood: %d requests, %d refused with 429; other client's slowest request %s", flooded.Load(), refused.Load(), slowest)
	if refused.Load() == 0 {
		t.Fatal("the flooding client was never refused")
	}
	if m := maxInFlight["test-operator"]; m > perClient {
		t.Fatalf("the flooding client had %d requests in flight, bound %d", m, perClient)
	}
	if lim.InFlight() != 0 {
		t.Fatalf("%d requests still counted in flight", lim.InFlight())
	}
}

// TestLimiterByAddress: anonymous requests are bounded per remote address.
func TestLimiterByAddress(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	lim := httpauth.NewLimiter(2, 10, nil)
	h := lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	req := func(addr string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/healthz", nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	var wg sync.WaitGroup
	for _, port := range []string{"1", "2"} {
		wg.Add(1)
		go func() { defer wg.Done(); req("10.0.0.1:" + port) }()
	}
	<-entered
	<-entered
	if w := req("10.0.0.1:3"); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("third request from one address: %d", w.Code)
	}
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- req("10.0.0.2:1") }()
	<-entered
	close(release)
	if w := <-done; w.Code != http.StatusOK {
		t.Fatalf("another address: %d", w.Code)
	}
	wg.Wait()
}

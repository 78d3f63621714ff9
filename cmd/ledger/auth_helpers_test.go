package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
	"github.com/marketledger/ledger/node/auth"
)

// bearer adds a bearer token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	next := b.next
	if next == nil {
		next = http.DefaultTransport
	}
	return next.RoundTrip(r)
}

// issueTestToken issues a token of role into the tokens file of dataDir,
// as `ledger token issue` does, and returns it.
func issueTestToken(tb testing.TB, dataDir, role string) string {
	tb.Helper()
	path := filepath.Join(credentialsDir(dataDir), tokensFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		tb.Fatal(err)
	}
	token, _, err := httpauth.IssueToken(path, role, "test-"+role)
	if err != nil {
		tb.Fatal(err)
	}
	return token
}

// tokenClient is an HTTP client that sends token.
func tokenClient(token string) *http.Client {
	return &http.Client{Transport: bearer{token: token}}
}

// connectAs connects to url as role with the .creds files of dataDir.
func connectAs(tb testing.TB, url, dataDir, role string) *nats.Conn {
	tb.Helper()
	nc, err := auth.Connect(url, filepath.Join(credentialsDir(dataDir), role+auth.CredsExt))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// breakGlassAuth is the break-glass administrator's authentication: the
// JWT a serve started with --break-glass-admin signed, and its seed.
func breakGlassAuth(t *testing.T, userJWT, seedFile string) nats.Option {
	t.Helper()
	if userJWT == "" {
		t.Fatal("no break-glass JWT: the server was not started with --break-glass-admin")
	}
	b, err := os.ReadFile(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	return nats.UserJWTAndSeed(userJWT, strings.TrimSpace(string(b)))
}

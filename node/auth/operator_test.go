package auth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
)

// userClaims reads the user JWT of a .creds file.
func userClaims(t *testing.T, creds string) *jwt.UserClaims {
	t.Helper()
	b, err := os.ReadFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		t.Fatalf("%s: %v", creds, err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		t.Fatalf("%s: %v", creds, err)
	}
	return uc
}

// TestRoleJWTsCarryTheRolesPermissions: each role's .creds file holds a
// JWT for its key, signed by the ledger's account, whose permissions are
// exactly the role's (the same lists, allow and deny, publish and
// subscribe, and the same responses), so moving the users into JWTs
// changed no permission.
func TestRoleJWTsCarryTheRolesPermissions(t *testing.T) {
	set, err := auth.Ensure(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range auth.Roles() {
		uc := userClaims(t, set.CredsFile(role))
		u, _ := set.User(role)
		if uc.Subject != u.Nkey || uc.Issuer != set.Account() || uc.IssuerAccount != "" || uc.Expires != 0 || uc.BearerToken {
			t.Errorf("%s: JWT for %s issued by %s (issuer account %q, expires %d, bearer %v); want for %s by the account %s, no expiry, not a bearer token",
				role, uc.Subject, uc.Issuer, uc.IssuerAccount, uc.Expires, uc.BearerToken, u.Nkey, set.Account())
		}
		want := auth.Permissions(role)
		got := uc.Permissions
		pair := func(p *server.SubjectPermission) (string, string) {
			if p == nil {
				return "", ""
			}
			return strings.Join(p.Allow, " "), strings.Join(p.Deny, " ")
		}
		wpa, wpd := pair(want.Publish)
		wsa, wsd := pair(want.Subscribe)
		if strings.Join(got.Pub.Allow, " ") != wpa || strings.Join(got.Pub.Deny, " ") != wpd ||
			strings.Join(got.Sub.Allow, " ") != wsa || strings.Join(got.Sub.Deny, " ") != wsd {
			t.Errorf("%s: JWT permissions differ from the role's:\n got %+v\nwant publish %+v subscribe %+v", role, got, want.Publish, want.Subscribe)
		}
		switch {
		case (want.Response == nil) != (got.Resp == nil):
			t.Errorf("%s: responses %+v, want %+v", role, got.Resp, want.Response)
		case want.Response != nil && (got.Resp.MaxMsgs != want.Response.MaxMsgs || got.Resp.Expires != want.Response.Expires):
			t.Errorf("%s: responses %+v, want %+v", role, *got.Resp, *want.Response)
		}
	}
}

// TestStockClientWithCredsIsAdmittedAsItsRole: the stock client with
// nats.UserCredentials(<role>.creds), nothing of the ledger's, is admitted
// by the embedded server as that role: an append to another service's
// context is refused at once with a permissions error.
func TestStockClientWithCredsIsAdmittedAsItsRole(t *testing.T) {
	c := start(t)
	for _, role := range auth.Roles() {
		if role == auth.RoleOperator {
			continue // may append anywhere
		}
		v := &violations{ch: make(chan struct{}, 1)}
		nc, err := nats.Connect(c.url, nats.UserCredentials(c.set.CredsFile(role)), nats.ErrorHandler(v.handler))
		if err != nil {
			t.Fatalf("%s: connect with %s: %v", role, filepath.Base(c.set.CredsFile(role)), err)
		}
		other := "ledger.payment.p-1.captured"
		if role == auth.RolePayment {
			other = "ledger.order.o-1.placed"
		}
		nc.Publish(other, []byte("{}"))
		v.wait(t, other)
		nc.Close()
	}
}

// TestSeedsOnlyDataDirGetsJWTs: a data directory from before operator mode
// (the roles' seeds and auth.json, no account, operator or system key, no
// .creds file) keeps its users' keys and gets their .creds files and the
// trust chain on the next start, and the files connect.
func TestSeedsOnlyDataDirGetsJWTs(t *testing.T) {
	dir := t.TempDir()
	before, err := auth.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"account.nk", "nats-operator.nk", "nats-system.nk"} {
		if err := os.Remove(filepath.Join(before.Dir(), f)); err != nil {
			t.Fatal(err)
		}
	}
	for _, role := range auth.Roles() {
		os.Remove(before.CredsFile(role))
	}
	set, err := auth.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range auth.Roles() {
		a, _ := before.User(role)
		b, _ := set.User(role)
		if a.Nkey != b.Nkey {
			t.Errorf("%s: key changed from %s to %s", role, a.Nkey, b.Nkey)
		}
		if uc := userClaims(t, set.CredsFile(role)); uc.Subject != b.Nkey || uc.Issuer != set.Account() {
			t.Errorf("%s: JWT for %s by %s", role, uc.Subject, uc.Issuer)
		}
	}
	srv, err := embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort, Configure: set.Configure})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := auth.Connect(srv.ClientURL(), set.CredsFile(auth.RoleInvestigator))
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}

// TestSubscriberMintedWhileServingThenNarrowed: a team's user minted while
// the server runs is admitted at once, with no restart; minted again with
// fewer subscriptions, its older .creds file is refused from the server's
// next start (the account JWT revokes it) and the new one admitted.
func TestSubscriberMintedWhileServingThenNarrowed(t *testing.T) {
	dir := t.TempDir()
	set, err := auth.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort, Configure: set.Configure})
	if err != nil {
		t.Fatal(err)
	}
	wide, err := auth.MintSubscriber(dir, "emails", []string{"emails-orders", "emails-refunds"}, srv.ClientURL())
	if err != nil {
		srv.Shutdown()
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(wide.CredsFile), nats.MaxReconnects(0))
	if err != nil {
		srv.Shutdown()
		t.Fatalf("a subscriber minted while the server runs: %v", err)
	}
	nc.Close()
	srv.Shutdown()
	old := filepath.Join(t.TempDir(), "emails-wide.creds")
	b, _ := os.ReadFile(wide.CredsFile)
	os.WriteFile(old, b, 0o600)

	narrow, err := auth.MintSubscriber(dir, "emails", []string{"emails-orders"}, "nats://127.0.0.1:4222")
	if err != nil {
		t.Fatal(err)
	}
	if narrow.Nkey != wide.Nkey {
		t.Errorf("re-minting changed the key from %s to %s", wide.Nkey, narrow.Nkey)
	}
	set, err = auth.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err = embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort, Configure: set.Configure})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	if nc, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(old), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("the team's older, wider JWT was admitted after it was minted again with fewer subscriptions")
	}
	nc, err = nats.Connect(srv.ClientURL(), nats.UserCredentials(narrow.CredsFile), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("the team's current JWT: %v", err)
	}
	nc.Close()
}

// TestRotatedKeyIsRefused: a role's key rotated (its seed file deleted,
// a new key made on the next start) leaves the old key's .creds file
// refused: the account signed it, so only a revocation keeps it out.
func TestRotatedKeyIsRefused(t *testing.T) {
	dir := t.TempDir()
	set, err := auth.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(t.TempDir(), "listing-old.creds")
	b, err := os.ReadFile(set.CredsFile(auth.RoleListing))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(old, b, 0o600)
	if err := os.Remove(filepath.Join(set.Dir(), auth.RoleListing+auth.SeedExt)); err != nil {
		t.Fatal(err)
	}
	if set, err = auth.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort, Configure: set.Configure})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	if nc, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(old), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("the listing role's rotated-out key was admitted")
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(set.CredsFile(auth.RoleListing)), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("the listing role's new key: %v", err)
	}
	nc.Close()
	// The revocation outlives the next start.
	if set, err = auth.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	if got := set.Retired(); len(got) != 1 {
		t.Errorf("retired keys after another start: %v, want the one rotated out", got)
	}
}

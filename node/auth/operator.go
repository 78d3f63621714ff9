package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// The keys of the trust chain, in the credentials directory beside the
// users' seeds (each 0600, never printed): the operator signs the two
// accounts' JWTs, the ledger's account signs its users' JWTs, the system
// account is the server's own (docs/adr/0022-operator-mode.md).
const (
	operatorSeedFile = "nats-operator.nk"
	accountSeedFile  = "account.nk"
	systemSeedFile   = "nats-system.nk"
)

// Names in the JWTs: the operator, the ledger's account (which holds the
// LEDGER stream and every bucket) and the system account.
const (
	operatorName = "ledger"
	AccountName  = "LEDGER"
	systemName   = "SYS"
)

// MaxControlLine is the longest protocol line the servers the ledger
// configures accept (nats-server's max_control_line; its default is 4096
// bytes). A client sends its user JWT in its CONNECT line, and a JWT that
// carries a role's permissions is longer than the default allows: the
// projections' is about 3.4 KB, a subscriber's about 1.5 KB more per
// subscription.
const MaxControlLine = 64 << 10

// maxJWTLen bounds a user JWT, leaving room in the CONNECT line for the
// rest of it (the signature, the client's name and options).
const maxJWTLen = MaxControlLine - 4<<10

// trust is what a server needs to accept the set's users: the operator's
// claims and JWT, and the two accounts' public keys and JWTs. None of it
// is secret.
type trust struct {
	operator    *jwt.OperatorClaims
	operatorJWT string
	account     string
	accountJWT  string
	system      string
	systemJWT   string
}

// ensureKey loads the seed file path of a key of kind (an operator or an
// account), creating it with a new key on first use. The caller wipes the
// key pair.
func ensureKey(path string, kind nkeys.PrefixByte) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		kp, err := nkeys.CreatePair(kind)
		if err != nil {
			return nil, fmt.Errorf("auth: generate %s key: %w", kind, err)
		}
		seed, err := kp.Seed()
		if err != nil {
			return nil, fmt.Errorf("auth: generate %s key: %w", kind, err)
		}
		// Not wiped: kp.Seed returns the key pair's own bytes, and kp is
		// returned (the caller wipes it).
		if err := writePrivate(path, append(slices.Clone(seed), '\n'), false); err != nil {
			kp.Wipe()
			if errors.Is(err, fs.ErrExist) {
				return ensureKey(path, kind)
			}
			return nil, err
		}
		return kp, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	defer wipe(b)
	if err := checkPrivate(path, false); err != nil {
		return nil, err
	}
	want := "SO"
	valid := nkeys.IsValidPublicOperatorKey
	if kind == nkeys.PrefixByteAccount {
		want, valid = "SA", nkeys.IsValidPublicAccountKey
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("auth: %s is not an %s seed file (expected one line starting with %s)", path, kind, want)
	}
	if pub, err := kp.PublicKey(); err != nil || !valid(pub) {
		kp.Wipe()
		return nil, fmt.Errorf("auth: %s is not an %s seed file (expected one line starting with %s)", path, kind, want)
	}
	return kp, nil
}

// ensureAccountKey loads the ledger's account key, which signs every
// user's JWT, creating it on first use.
func ensureAccountKey(dir string) (nkeys.KeyPair, error) {
	return ensureKey(filepath.Join(dir, accountSeedFile), nkeys.PrefixByteAccount)
}

// userName is the name in a user's JWT.
func userName(u User) string {
	if u.Role == RoleSubscriber {
		return "subscriber-" + u.Team
	}
	return "ledger-" + u.Role
}

// ensureTrust makes sure every user of s has a .creds file whose JWT,
// signed by the account key, carries exactly its permissions (minting one
// where it is missing or differs), and builds the operator's and the
// accounts' JWTs.
func (s *Set) ensureTrust() error {
	acct, err := ensureAccountKey(s.dir)
	if err != nil {
		return err
	}
	defer acct.Wipe()
	s.issued = map[string]int64{}
	for _, u := range s.users {
		iat, err := ensureUserCreds(s.credsOf(u), s.seedOf(u), userName(u), u.Permissions, acct)
		if err != nil {
			return err
		}
		s.issued[u.Nkey] = iat
	}
	s.trust, err = s.buildTrust(acct, nil)
	return err
}

// buildTrust signs the operator's JWT and the accounts' JWTs. extraKey,
// when not nil, is one more signing key of the ledger's account (the
// break-glass administrator's, which lives in one process's memory).
func (s *Set) buildTrust(acct nkeys.KeyPair, extraKey nkeys.KeyPair) (trust, error) {
	op, err := ensureKey(filepath.Join(s.dir, operatorSeedFile), nkeys.PrefixByteOperator)
	if err != nil {
		return trust{}, err
	}
	defer op.Wipe()
	sys, err := ensureKey(filepath.Join(s.dir, systemSeedFile), nkeys.PrefixByteAccount)
	if err != nil {
		return trust{}, err
	}
	defer sys.Wipe()
	var t trust
	opPub, _ := op.PublicKey()
	t.account, _ = acct.PublicKey()
	t.system, _ = sys.PublicKey()

	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = operatorName
	oc.SystemAccount = t.system
	if t.operatorJWT, err = oc.Encode(op); err != nil {
		return trust{}, fmt.Errorf("auth: sign the operator JWT: %w", err)
	}
	if t.operator, err = jwt.DecodeOperatorClaims(t.operatorJWT); err != nil {
		return trust{}, fmt.Errorf("auth: operator JWT: %w", err)
	}

	ac := jwt.NewAccountClaims(t.account)
	ac.Name = AccountName
	// JetStream on, bounded by the server's own limits only: an account
	// quota the log reached would refuse appends, which the ledger treats
	// as an outage, not as a policy.
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit,
		Streams: jwt.NoLimit, Consumer: jwt.NoLimit, MaxAckPending: jwt.NoLimit}
	// Every user JWT issued before a user's current one is revoked: a
	// narrowed permission (a new model, a subscriber re-minted with fewer
	// subscriptions) must not stay reachable through an older file.
	for pub, iat := range s.issued {
		ac.RevokeAt(pub, time.Unix(iat-1, 0))
	}
	// A key rotated out is refused whatever its JWT's age.
	for _, pub := range s.retired {
		ac.RevokeAt(pub, time.Now().Add(time.Hour))
	}
	if extraKey != nil {
		pub, _ := extraKey.PublicKey()
		ac.SigningKeys.Add(pub)
	}
	if t.accountJWT, err = ac.Encode(op); err != nil {
		return trust{}, fmt.Errorf("auth: sign the account JWT: %w", err)
	}
	sc := jwt.NewAccountClaims(t.system)
	sc.Name = systemName
	if t.systemJWT, err = sc.Encode(op); err != nil {
		return trust{}, fmt.Errorf("auth: sign the system account JWT: %w", err)
	}
	return t, nil
}

// ensureUserCreds makes sure path is a .creds file for the user whose seed
// is in seedFile: its seed, and a JWT named name, issued by acct, with
// perms. A file that already says so is kept (its JWT stays valid); any
// other is replaced by a newly signed one. It returns the issue time of
// the JWT the file holds.
func ensureUserCreds(path, seedFile, name string, perms *server.Permissions, acct nkeys.KeyPair) (int64, error) {
	b, err := os.ReadFile(seedFile)
	if err != nil {
		return 0, fmt.Errorf("auth: %w", err)
	}
	defer wipe(b)
	seed := bytes.TrimSpace(b)
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return 0, fmt.Errorf("auth: %s is not an nkey seed file", seedFile)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return 0, fmt.Errorf("auth: %s: %w", seedFile, err)
	}
	acctPub, _ := acct.PublicKey()
	want := jwtPermissions(perms)
	prev, current := currentCreds(path, pub, acctPub, name, want)
	if current {
		return prev, nil
	}
	// A new JWT must be issued after the one it replaces, in whole seconds
	// (the unit of a revocation): wait out the second of the previous one.
	if wait := time.Until(time.Unix(prev+1, 0)); wait > 0 {
		time.Sleep(min(wait, time.Second))
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.Permissions = want
	tok, err := uc.Encode(acct)
	if err != nil {
		return 0, fmt.Errorf("auth: sign the JWT of %s: %w", name, err)
	}
	if len(tok) > maxJWTLen {
		return 0, fmt.Errorf("auth: the JWT of %s would be %d bytes, more than the %d a server admits in a CONNECT line: grant fewer subjects", name, len(tok), maxJWTLen)
	}
	creds, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		return 0, fmt.Errorf("auth: %s: %w", path, err)
	}
	defer wipe(creds)
	if err := writePrivate(path, creds, true); err != nil {
		return 0, err
	}
	dc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return 0, fmt.Errorf("auth: %s: %w", path, err)
	}
	return dc.IssuedAt, nil
}

// currentCreds reads the .creds file at path and reports the issue time of
// its JWT (0 if there is none) and whether it is the user pub's, issued by
// acct, named name, with exactly perms, beside pub's seed.
func currentCreds(path, pub, acct, name string, perms jwt.Permissions) (iat int64, current bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	defer wipe(b)
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return 0, false
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return 0, false
	}
	kp, err := jwt.ParseDecoratedNKey(b)
	if err != nil {
		return uc.IssuedAt, false
	}
	defer kp.Wipe()
	seedPub, _ := kp.PublicKey()
	got, _ := json.Marshal(uc.Permissions)
	want, _ := json.Marshal(perms)
	ok := uc.Subject == pub && seedPub == pub && uc.Issuer == acct && uc.IssuerAccount == "" && uc.Name == name &&
		bytes.Equal(got, want) && uc.Expires == 0 && !uc.BearerToken
	return uc.IssuedAt, ok
}

// Configure makes the server trust the set's operator: the ledger's
// account and the system account preloaded in a memory resolver, and
// every client connection required to present a user JWT the account
// signed (a .creds file). Plug it into embedded.Config.Configure.
// Connections without credentials are refused from then on. A user minted
// later (a team's subscriber) is admitted at once: the server checks its
// JWT against the account, not against a list.
func (s *Set) Configure(opts *server.Options) { s.trust.configure(opts) }

func (t trust) configure(opts *server.Options) {
	r := &server.MemAccResolver{}
	// Store never fails on a memory resolver.
	_ = r.Store(t.account, t.accountJWT)
	_ = r.Store(t.system, t.systemJWT)
	opts.MaxControlLine = max(opts.MaxControlLine, MaxControlLine)
	opts.TrustedOperators = append(opts.TrustedOperators, t.operator)
	opts.SystemAccount = t.system
	opts.AccountResolver = r
}

// Account returns the public key of the ledger's account: the name under
// which a server keeps its streams.
func (s *Set) Account() string { return s.trust.account }

package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// BreakGlass returns a server option function, to use in place of
// Configure, that admits one more user: the break-glass administrator
// whose public user key is pub, with no restriction at all, the only NATS
// user that may change the LEDGER stream's settings or delete it. It also
// returns that user's JWT, which the administrator presents with its seed
// (nats.UserJWTAndSeed, or a .creds file made with WriteBreakGlassCreds).
//
// It is meant for the life of one process started for maintenance: the
// JWT is signed by a signing key of the ledger's account that is made
// here, lives in this process's memory only and is named only in the
// account JWT this server is given. Nothing of it is written to the data
// directory, so the credentials that live there never gain its rights, and
// a restart without it leaves the JWT signed by a key no server trusts.
func (s *Set) BreakGlass(pub string) (configure func(*server.Options), userJWT string, err error) {
	if !nkeys.IsValidPublicUserKey(pub) {
		return nil, "", errors.New("auth: break-glass administrator: want a public user nkey (56 characters starting with U)")
	}
	signer, err := nkeys.CreateAccount()
	if err != nil {
		return nil, "", fmt.Errorf("auth: generate a signing key: %w", err)
	}
	defer signer.Wipe()
	acct, err := ensureAccountKey(s.dir)
	if err != nil {
		return nil, "", err
	}
	defer acct.Wipe()
	t, err := s.buildTrust(acct, signer)
	if err != nil {
		return nil, "", err
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = "break-glass"
	uc.IssuerAccount = t.account
	if userJWT, err = uc.Encode(signer); err != nil {
		return nil, "", fmt.Errorf("auth: sign the break-glass JWT: %w", err)
	}
	return t.configure, userJWT, nil
}

// WriteBreakGlassCreds writes out, a standard .creds file of the
// break-glass administrator: userJWT (from a serve started with
// --break-glass-admin) and the seed in seedFile. Like the seed, it must
// not be inside dataDir, and it is never written over an existing file.
func WriteBreakGlassCreds(out, dataDir, userJWT, seedFile string) error {
	inside, err := within(out, dataDir)
	if err != nil {
		return err
	}
	if inside {
		return fmt.Errorf("auth: break-glass credentials %s: must not be inside the data directory %s", out, dataDir)
	}
	uc, err := jwt.DecodeUserClaims(userJWT)
	if err != nil {
		return fmt.Errorf("auth: break-glass JWT: %w", err)
	}
	b, err := os.ReadFile(seedFile)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	defer wipe(b)
	seed := bytes.TrimSpace(b)
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return fmt.Errorf("auth: %s is not an nkey seed file", seedFile)
	}
	defer kp.Wipe()
	if pub, _ := kp.PublicKey(); pub != uc.Subject {
		return fmt.Errorf("auth: %s holds the seed of %s, and the running server admits %s as break-glass administrator", seedFile, pub, uc.Subject)
	}
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	defer wipe(creds)
	return writePrivate(out, creds, false)
}

// NewBreakGlassSeed writes a new user nkey seed to path (mode 0600, never
// over an existing file) and returns its public key. path must not be
// inside dataDir: a break-glass seed kept next to the log would give every
// reader of the data directory the rights the roles are denied.
func NewBreakGlassSeed(path, dataDir string) (string, error) {
	inside, err := within(path, dataDir)
	if err != nil {
		return "", err
	}
	if inside {
		return "", fmt.Errorf("auth: break-glass seed %s: must not be inside the data directory %s (keep it offline, with whoever may do maintenance)", path, dataDir)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", fmt.Errorf("auth: generate key: %w", err)
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return "", fmt.Errorf("auth: generate key: %w", err)
	}
	defer wipe(seed)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("auth: break-glass seed %s exists: choose a new file", path)
	}
	if err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	_, werr := f.Write(append(seed, '\n'))
	if err := f.Sync(); werr == nil {
		werr = err
	}
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		os.Remove(path)
		return "", fmt.Errorf("auth: write %s: %w", path, werr)
	}
	return kp.PublicKey()
}

// within reports whether path is dir or lies under it, after resolving
// both to absolute paths (and symbolic links where they exist).
func within(path, dir string) (bool, error) {
	abs := func(p string) (string, error) {
		a, err := filepath.Abs(p)
		if err != nil {
			return "", fmt.Errorf("auth: %w", err)
		}
		if r, err := filepath.EvalSymlinks(a); err == nil {
			return r, nil
		}
		// A file not yet created: resolve its directory.
		if r, err := filepath.EvalSymlinks(filepath.Dir(a)); err == nil {
			return filepath.Join(r, filepath.Base(a)), nil
		}
		return a, nil
	}
	p, err := abs(path)
	if err != nil {
		return false, err
	}
	d, err := abs(dir)
	if err != nil {
		return false, err
	}
	rel, err := filepath.Rel(d, p)
	if err != nil {
		return false, nil
	}
	return rel == "." || !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && rel != "..", nil
}

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

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// File name endings of a user's credentials beside its seed (<name>.nk):
// a .creds file in the standard NATS format (the user's JWT, then its
// seed) and a NATS context (the nats CLI's JSON: the server URL and the
// credentials to use). See docs/adr/0021-credentials-files.md.
const (
	CredsExt   = ".creds"
	ContextExt = ".context.json"
)

// accountSeedFile holds the account key that signs the users' JWTs.
const accountSeedFile = "account.nk"

// mkdirPrivate creates dir (0700) if it is missing and refuses one others
// may read.
func mkdirPrivate(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return checkPrivate(dir, true)
}

// ensureAccountKey loads the account key of the credentials directory,
// creating it on first use. The embedded server and a cluster configured
// with `ledger credentials server-config` authenticate each user by its
// nkey and take its permissions from their own configuration: they do not
// read the JWT. The JWT carries the same permissions, signed by this key,
// so that the same .creds file serves a server that trusts the account
// (operator mode) without being minted again.
func ensureAccountKey(dir string) (nkeys.KeyPair, error) {
	path := filepath.Join(dir, accountSeedFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		kp, err := nkeys.CreateAccount()
		if err != nil {
			return nil, fmt.Errorf("auth: generate account key: %w", err)
		}
		seed, err := kp.Seed()
		if err != nil {
			return nil, fmt.Errorf("auth: generate account key: %w", err)
		}
		// Not wiped: kp.Seed returns the key pair's own bytes, and kp is
		// returned (the caller wipes it).
		if err := writePrivate(path, append(slices.Clone(seed), '\n'), false); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return ensureAccountKey(dir)
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
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("auth: %s is not an account seed file (expected one line starting with SA)", path)
	}
	if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicAccountKey(pub) {
		return nil, fmt.Errorf("auth: %s is not an account seed file (expected one line starting with SA)", path)
	}
	return kp, nil
}

// writePrivate writes b to path (mode 0600) through a temporary file, so
// that a reader never sees half of it; with replace false it refuses an
// existing file (fs.ErrExist).
func writePrivate(path string, b []byte, replace bool) error {
	if !replace {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		_, werr := f.Write(b)
		if err := f.Sync(); werr == nil {
			werr = err
		}
		if err := f.Close(); werr == nil {
			werr = err
		}
		if werr != nil {
			os.Remove(path)
			return fmt.Errorf("auth: write %s: %w", path, werr)
		}
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(b)
	if err := tmp.Sync(); werr == nil {
		werr = err
	}
	if err := tmp.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		return fmt.Errorf("auth: write %s: %w", path, werr)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return nil
}

// writeCreds writes path, a .creds file for the user whose seed is in
// seedFile: a user JWT named name with perms, signed by acct, then the
// seed. nats.go's NkeyOptionFromSeed and the nats CLI's --nkey read the
// seed from it.
func writeCreds(path, seedFile, name string, perms *server.Permissions, acct nkeys.KeyPair) error {
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
	pub, err := kp.PublicKey()
	if err != nil {
		return fmt.Errorf("auth: %s: %w", seedFile, err)
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.Permissions = jwtPermissions(perms)
	tok, err := uc.Encode(acct)
	if err != nil {
		return fmt.Errorf("auth: sign the JWT of %s: %w", name, err)
	}
	creds, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		return fmt.Errorf("auth: %s: %w", path, err)
	}
	defer wipe(creds)
	return writePrivate(path, creds, true)
}

// jwtPermissions is p in a JWT's form.
func jwtPermissions(p *server.Permissions) jwt.Permissions {
	var out jwt.Permissions
	if p == nil {
		return out
	}
	if p.Publish != nil {
		out.Pub = jwt.Permission{Allow: p.Publish.Allow, Deny: p.Publish.Deny}
	}
	if p.Subscribe != nil {
		out.Sub = jwt.Permission{Allow: p.Subscribe.Allow, Deny: p.Subscribe.Deny}
	}
	if p.Response != nil {
		out.Resp = &jwt.ResponsePermission{MaxMsgs: p.Response.MaxMsgs, Expires: p.Response.Expires}
	}
	return out
}

// natsContext is the nats CLI's context file (~/.config/nats/context/<name>.json);
// the fields the ledger fills.
type natsContext struct {
	Description string `json:"description"`
	URL         string `json:"url"`
	// Nkey is the credentials file the CLI signs the server's challenge
	// with: the .creds file, whose seed it reads (the servers the ledger
	// configures authenticate nkey users, see ADR 0021).
	Nkey string `json:"nkey"`
}

// writeContext writes a NATS context for url with the credentials in
// credsFile.
func writeContext(path, description, url, credsFile string) error {
	abs, err := filepath.Abs(credsFile)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	b, err := json.MarshalIndent(natsContext{Description: description, URL: url, Nkey: abs}, "", "  ")
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return writePrivate(path, append(b, '\n'), true)
}

// CredsFile returns the path of role's .creds file.
func (s *Set) CredsFile(role string) string { return filepath.Join(s.dir, role+CredsExt) }

// ContextFile returns the path of role's NATS context.
func (s *Set) ContextFile(role string) string { return filepath.Join(s.dir, role+ContextExt) }

// WriteCredentials writes, for every role, a .creds file beside its seed
// and a NATS context that connects to url with it: what a NATS client
// other than the ledger (nats.go, the nats CLI) takes.
func (s *Set) WriteCredentials(url string) error {
	acct, err := ensureAccountKey(s.dir)
	if err != nil {
		return err
	}
	defer acct.Wipe()
	for _, role := range Roles() {
		u, _ := s.User(role)
		if err := writeCreds(s.CredsFile(role), s.SeedFile(role), "ledger-"+role, u.Permissions, acct); err != nil {
			return err
		}
		if err := writeContext(s.ContextFile(role), "ledger "+role, url, s.CredsFile(role)); err != nil {
			return err
		}
	}
	return nil
}

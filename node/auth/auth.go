// Package auth gives the ledger's NATS server least-privilege users: one
// user per role (the four services, projections, a read-only investigator
// and the operator) and one per team that follows the log (subscriber),
// each allowed to publish and subscribe only on the subjects its work
// needs. Ensure generates them on first start under DATA/credentials: for
// each an nkey seed and a standard .creds file whose user JWT, signed by
// the ledger's account key, carries its permissions; the operator and
// system account keys that make a server trust that account; and
// auth.json, the users and their permissions. The server runs in operator
// mode (docs/adr/0022-operator-mode.md): it accepts a user JWT the account
// signed and enforces the permissions in it. Subject permissions are what
// enforces the ledger's "a service writes only its own context" rule on
// the server side, so a bug or a compromised process in one service cannot
// append another's events.
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
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Dir is the credentials directory under the data directory.
const Dir = "credentials"

// ConfigFile is the users-and-permissions file in Dir.
const ConfigFile = "auth.json"

// SeedExt ends every role's seed file name: DATA/credentials/<role>.nk.
const SeedExt = ".nk"

// configVersion is the version of the default permission model. A config
// written by an older model is rewritten with the current permissions (the
// keys are kept), so that an upgrade which needs a new API call does not
// leave a service locked out, and so that a narrowing (version 3: no
// credential may shorten or delete the LEDGER stream) reaches the users of
// an existing data directory on its next start.
const configVersion = 3

// User is one role's nkey user as the server sees it.
type User struct {
	Role string `json:"role"`
	// Team and Subscriptions name a subscriber user's team and the
	// subscriptions it may run (RoleSubscriber only).
	Team          string   `json:"team,omitempty"`
	Subscriptions []string `json:"subscriptions,omitempty"`
	// Nkey is the user's public key (starts with U).
	Nkey        string              `json:"nkey"`
	Permissions *server.Permissions `json:"permissions,omitempty"`
}

// fileConfig is the layout of auth.json.
type fileConfig struct {
	Version int    `json:"version"`
	Users   []User `json:"users"`
	// Retired are the public keys of users whose key was rotated out: the
	// account JWT revokes every JWT of theirs, which the account key
	// signed and a server in operator mode would otherwise still admit.
	Retired []string `json:"retired,omitempty"`
}

// Set is the ledger's users: their public keys, permissions and the seed
// files that hold their secrets. It never holds a seed in memory.
type Set struct {
	dir     string
	users   []User
	retired []string
	// issued is the issue time of each user's current JWT, by public key.
	issued map[string]int64
	trust  trust
}

// Retired returns the public keys of the users whose key was rotated out;
// no server the ledger configures admits them.
func (s *Set) Retired() []string { return slices.Clone(s.retired) }

// Ensure returns the users of dataDir, creating what is missing: the
// credentials directory (0700), a seed file per role (0600) and auth.json.
// A seed file that is deleted is replaced by a new key on the next start,
// which is how one role's key is rotated. Seed files or a directory that
// others can read are refused: a secret others could read proves nothing.
func Ensure(dataDir string) (*Set, error) {
	if dataDir == "" {
		return nil, errors.New("auth: a data directory is required")
	}
	dir := filepath.Join(dataDir, Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: credentials directory: %w", err)
	}
	if err := checkPrivate(dir, true); err != nil {
		return nil, err
	}
	cfg, err := readConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, err
	}
	byRole := map[string]User{}
	for _, u := range cfg.Users {
		byRole[u.Role] = u
	}
	s := &Set{dir: dir, retired: cfg.Retired}
	dirty := cfg.Version != configVersion
	for _, role := range Roles() {
		pub, created, err := ensureSeed(filepath.Join(dir, role+SeedExt))
		if err != nil {
			return nil, err
		}
		u, ok := byRole[role]
		switch {
		case !ok || created || dirty:
			if ok && u.Nkey != pub && !slices.Contains(s.retired, u.Nkey) {
				s.retired = append(s.retired, u.Nkey) // rotated: its seed file was deleted
			}
			u = User{Role: role, Nkey: pub, Permissions: Permissions(role)}
			dirty = true
		case u.Nkey != pub:
			return nil, fmt.Errorf("auth: %s holds a key for role %s that does not match %s%s; delete %s to have it rewritten from the seed files",
				filepath.Join(dir, ConfigFile), role, role, SeedExt, ConfigFile)
		}
		s.users = append(s.users, u)
	}
	// Subscriber users are minted one per team (MintSubscriber); their
	// permissions follow the current model like the roles'.
	for _, u := range cfg.Users {
		if u.Role != RoleSubscriber {
			continue
		}
		if dirty {
			u.Permissions = SubscriberPermissions(u.Subscriptions)
		}
		s.users = append(s.users, u)
	}
	if dirty {
		if err := writeConfig(filepath.Join(dir, ConfigFile), fileConfig{Version: configVersion, Users: s.users, Retired: s.retired}); err != nil {
			return nil, err
		}
	}
	// A data directory from before operator mode has the seeds only (or
	// the seeds and account.nk): the JWTs are minted from them here.
	if err := s.ensureTrust(); err != nil {
		return nil, err
	}
	return s, nil
}

// checkPrivate refuses a file or directory that group or others may access.
func checkPrivate(path string, isDir bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if fi.IsDir() != isDir {
		return fmt.Errorf("auth: %s: unexpected file type", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		want := "0600"
		if isDir {
			want = "0700"
		}
		return fmt.Errorf("auth: %s is accessible to other users (mode %04o): chmod %s %s", path, fi.Mode().Perm(), want, path)
	}
	return nil
}

// ensureSeed loads the user key of a seed file, creating the file with a
// new key if it does not exist. It reports the public key only.
func ensureSeed(path string) (pub string, created bool, err error) {
	pub, err = loadSeed(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return pub, false, err
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", false, fmt.Errorf("auth: generate key: %w", err)
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return "", false, fmt.Errorf("auth: generate key: %w", err)
	}
	defer wipe(seed)
	// O_EXCL: two processes starting at once must not both write a key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		pub, err = loadSeed(path)
		return pub, false, err
	}
	if err != nil {
		return "", false, fmt.Errorf("auth: %w", err)
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
		return "", false, fmt.Errorf("auth: write %s: %w", path, werr)
	}
	pub, err = kp.PublicKey()
	return pub, true, err
}

// loadSeed reads a seed file and returns its public key. Errors name the
// file, never its content.
func loadSeed(path string) (string, error) {
	if err := checkPrivate(path, false); err != nil {
		return "", err // wraps fs.ErrNotExist for a missing file
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	defer wipe(b)
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return "", fmt.Errorf("auth: %s is not an nkey seed file (expected one line starting with SU)", path)
	}
	defer kp.Wipe()
	if _, err := kp.Seed(); err != nil {
		return "", fmt.Errorf("auth: %s is not an nkey seed file (expected one line starting with SU)", path)
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return "", fmt.Errorf("auth: %s holds a seed that is not a user key (expected one line starting with SU)", path)
	}
	return pub, nil
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 'x'
	}
}

func readConfig(path string) (fileConfig, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileConfig{}, nil
	}
	if err != nil {
		return fileConfig{}, fmt.Errorf("auth: %w", err)
	}
	var c fileConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return fileConfig{}, fmt.Errorf("auth: %s: %w", path, err)
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		if u.Role == RoleSubscriber {
			if err := checkSubscriberUser(u, seen); err != nil {
				return fileConfig{}, fmt.Errorf("auth: %s: users/%d: %w", path, i, err)
			}
			continue
		}
		switch {
		case !slices.Contains(Roles(), u.Role):
			return fileConfig{}, fmt.Errorf("auth: %s: users/%d: unknown role %q (roles: %s)", path, i, u.Role, strings.Join(Roles(), ", "))
		case seen[u.Role]:
			return fileConfig{}, fmt.Errorf("auth: %s: users/%d: role %s appears twice", path, i, u.Role)
		case !nkeys.IsValidPublicUserKey(u.Nkey):
			return fileConfig{}, fmt.Errorf("auth: %s: users/%d (%s): nkey is not a public user key", path, i, u.Role)
		}
		seen[u.Role] = true
	}
	for i, k := range c.Retired {
		if !nkeys.IsValidPublicUserKey(k) {
			return fileConfig{}, fmt.Errorf("auth: %s: retired/%d: not a public user key", path, i)
		}
	}
	return c, nil
}

// writeConfig replaces the config atomically: a crash leaves the old or the
// new file, never half of one.
func writeConfig(path string, c fileConfig) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".auth-*.json")
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(append(b, '\n'))
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

// Users returns the users. Their permissions are shared with the set: treat
// them as read-only.
func (s *Set) Users() []User { return slices.Clone(s.users) }

// User returns role's user.
func (s *Set) User(role string) (User, bool) {
	for _, u := range s.users {
		if u.Role == role {
			return u, true
		}
	}
	return User{}, false
}

// Dir returns the credentials directory.
func (s *Set) Dir() string { return s.dir }

// SeedFile returns the path of role's nkey seed file. Clients connect
// with its .creds file (CredsFile), which holds the seed and the JWT.
func (s *Set) SeedFile(role string) string { return filepath.Join(s.dir, role+SeedExt) }

// Connect connects to url as the user whose standard .creds file is
// credsFile (nats.UserCredentials): the client sends the JWT and signs the
// server's challenge with the seed, both read from the file when the
// server asks, so the seed is not kept in memory between connections.
func Connect(url, credsFile string, opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(url, append([]nats.Option{nats.UserCredentials(credsFile)}, opts...)...)
}

package auth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// BreakGlass returns a server option function that admits one more user,
// the break-glass administrator whose public user key is pub, with no
// restriction at all: the only NATS user that may change the LEDGER
// stream's settings or delete it. It is meant for the life of one process
// started for maintenance: nothing of it is written to the data directory
// (auth.json lists only the roles' users), so the credentials that live
// there never gain its rights, and a restart without it takes them away.
func BreakGlass(pub string) (func(*server.Options), error) {
	if !nkeys.IsValidPublicUserKey(pub) {
		return nil, errors.New("auth: break-glass administrator: want a public user nkey (56 characters starting with U)")
	}
	return func(o *server.Options) {
		o.Nkeys = append(o.Nkeys, &server.NkeyUser{Nkey: pub})
	}, nil
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

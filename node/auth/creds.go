package auth

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
)

// File name endings of a user's credentials beside its seed (<name>.nk):
// a .creds file in the standard NATS format (the user's JWT, then its
// seed) and a NATS context (the nats CLI's JSON: the server URL and the
// credentials to use). See docs/adr/0021-credentials-files.md and
// docs/adr/0022-operator-mode.md.
const (
	CredsExt   = ".creds"
	ContextExt = ".context.json"
)

// mkdirPrivate creates dir (0700) if it is missing and refuses one others
// may read.
func mkdirPrivate(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return checkPrivate(dir, true)
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
	// Creds is the user's .creds file: the CLI sends its JWT and signs
	// the server's challenge with its seed (docs/adr/0022-operator-mode.md).
	Creds string `json:"creds"`
}

// writeContext writes a NATS context for url with the credentials in
// credsFile.
func writeContext(path, description, url, credsFile string) error {
	abs, err := filepath.Abs(credsFile)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	b, err := json.MarshalIndent(natsContext{Description: description, URL: url, Creds: abs}, "", "  ")
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return writePrivate(path, append(b, '\n'), true)
}

// CredsFile returns the path of role's .creds file.
func (s *Set) CredsFile(role string) string { return filepath.Join(s.dir, role+CredsExt) }

// ContextFile returns the path of role's NATS context.
func (s *Set) ContextFile(role string) string { return filepath.Join(s.dir, role+ContextExt) }

// WriteCredentials writes, for every role, a NATS context that connects
// to url with its .creds file (which Ensure keeps current): what a NATS
// client other than the ledger (nats.go, the nats CLI) takes.
func (s *Set) WriteCredentials(url string) error {
	for _, role := range Roles() {
		if err := writeContext(s.ContextFile(role), "ledger "+role, url, s.CredsFile(role)); err != nil {
			return err
		}
	}
	return nil
}

// seedOf and credsOf are the seed and .creds files of u: a role's in the
// credentials directory, a team's subscriber's under SubscribersDir.
func (s *Set) seedOf(u User) string {
	if u.Role == RoleSubscriber {
		return filepath.Join(s.dir, SubscribersDir, u.Team+SeedExt)
	}
	return s.SeedFile(u.Role)
}

func (s *Set) credsOf(u User) string {
	if u.Role == RoleSubscriber {
		return filepath.Join(s.dir, SubscribersDir, u.Team+CredsExt)
	}
	return s.CredsFile(u.Role)
}

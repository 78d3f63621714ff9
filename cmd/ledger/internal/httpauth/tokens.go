// Package httpauth authenticates and authorizes the ledger's HTTP API:
// bearer tokens mapped to roles, a middleware per endpoint group that
// answers 401 or 403 with a problem+json body, and a per-client bound on
// requests in flight so that one client's flood cannot starve the others.
//
// Only SHA-256 hashes of tokens are stored (the tokens file) and only a
// short prefix of a hash is ever logged: a leaked file or log grants
// nothing.
package httpauth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
)

// Roles of API callers.
const (
	RoleSeller       = "seller"        // a seller's own listings, and shipping its orders
	RoleBuyer        = "buyer"         // a buyer's own orders
	RoleOperator     = "operator"      // runs the marketplace: every command but policy, reads, metrics
	RoleRegulator    = "regulator"     // reads events and snapshots, changes nothing
	RoleInvestigator = "investigator"  // reads events and snapshots, changes nothing
	RolePolicyIssuer = "policy_issuer" // the only role that may impose or lift a policy
)

// Roles lists every role a tokens file may name.
func Roles() []string {
	return []string{RoleSeller, RoleBuyer, RoleOperator, RoleRegulator, RoleInvestigator, RolePolicyIssuer}
}

// Limits of a tokens file entry.
const (
	maxSubjectLen = 128
	maxTokenLen   = 512
)

// TokenPrefix starts every token NewToken makes, so that a leaked one is
// recognisable (secret scanners, grep) as a ledger API token.
const TokenPrefix = "mlt_"

// Entry is one line of the tokens file: the hash of a token, the role it
// grants and who holds it.
type Entry struct {
	TokenSHA256 string `json:"token_sha256"`
	Role        string `json:"role"`
	Subject     string `json:"subject"`
}

// Principal is the authenticated caller.
type Principal struct {
	Subject string
	Role    string
	hash    [sha256.Size]byte
}

// TokenID is the first 8 hex digits of the token's hash: enough to tell
// tokens apart in logs, useless to an attacker.
func (p Principal) TokenID() string { return hex.EncodeToString(p.hash[:4]) }

// Tokens maps token hashes to principals.
type Tokens struct {
	byHash map[[sha256.Size]byte]Principal
}

// Lookup returns the principal of token. The lookup is by the token's
// hash, so its timing tells nothing about stored tokens.
func (t *Tokens) Lookup(token string) (Principal, bool) {
	p, ok := t.byHash[sha256.Sum256([]byte(token))]
	return p, ok
}

// Len returns the number of tokens.
func (t *Tokens) Len() int { return len(t.byHash) }

var (
	hashRe = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	roleRe = regexp.MustCompile(`^[a-z_]{1,32}$`)
	// tokenIDRe is a prefix of a token's hash, as TokenID shows it.
	tokenIDRe = regexp.MustCompile(`^[0-9a-fA-F]{8,64}$`)
)

// LoadTokens reads a tokens file. A file that others may write is refused:
// whoever can write it can grant themselves any role.
func LoadTokens(path string) (*Tokens, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("httpauth: tokens file: %w", err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("httpauth: tokens file %s is writable by other users (mode %04o): chmod 0600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("httpauth: tokens file: %w", err)
	}
	t, err := ParseTokens(b)
	if err != nil {
		return nil, fmt.Errorf("httpauth: tokens file %s: %w", path, err)
	}
	return t, nil
}

// ParseTokens parses and checks the JSON of a tokens file. Its errors name
// the entry and the rule it breaks, never a value that could be a secret
// (someone may have pasted a token where its hash belongs).
func ParseTokens(b []byte) (*Tokens, error) {
	entries, err := decodeEntries(b)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, errors.New("no tokens: every request would be refused; add one with a token issue command")
	}
	t := &Tokens{byHash: make(map[[sha256.Size]byte]Principal, len(entries))}
	first := map[[sha256.Size]byte]int{}
	for i, e := range entries {
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		var h [sha256.Size]byte
		hex.Decode(h[:], []byte(e.TokenSHA256))
		if j, dup := first[h]; dup {
			return nil, fmt.Errorf("entries %d and %d hold the same token", j, i)
		}
		first[h] = i
		t.byHash[h] = Principal{Subject: e.Subject, Role: e.Role, hash: h}
	}
	return t, nil
}

func decodeEntries(b []byte) ([]Entry, error) {
	var entries []Entry
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&entries); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, fmt.Errorf("not valid JSON at byte %d (want [{\"token_sha256\": ..., \"role\": ..., \"subject\": ...}])", syn.Offset)
		case errors.As(err, &typ):
			return nil, fmt.Errorf("field %s: want a %s (the file is a JSON array of entries)", typ.Field, typ.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return nil, fmt.Errorf("an entry has a field other than token_sha256, role and subject")
		}
		return nil, errors.New("not a JSON array of token entries")
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON array")
	}
	return entries, nil
}

// check validates an entry without repeating its hash, or an unknown role's
// text when that text does not look like a role name.
func (e Entry) check() error {
	switch {
	case e.Subject == "":
		return errors.New("subject is required: name who holds the token")
	case len(e.Subject) > maxSubjectLen:
		return fmt.Errorf("subject longer than %d bytes", maxSubjectLen)
	case !hashRe.MatchString(e.TokenSHA256):
		return fmt.Errorf("subject %q: token_sha256 must be the 64 hex digits of the token's SHA-256 (value not shown)", e.Subject)
	case !slices.Contains(Roles(), e.Role):
		shown := "(not shown: not a role name)"
		if roleRe.MatchString(e.Role) {
			shown = fmt.Sprintf("%q", e.Role)
		}
		return fmt.Errorf("subject %q: unknown role %s; roles are %s", e.Subject, shown, strings.Join(Roles(), ", "))
	}
	return nil
}

// NewToken makes a random token for role and subject and its tokens-file
// entry. The token is returned once: only its hash is ever stored.
func NewToken(role, subject string) (token string, e Entry, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", Entry{}, fmt.Errorf("httpauth: random: %w", err)
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(token))
	e = Entry{TokenSHA256: hex.EncodeToString(sum[:]), Role: role, Subject: subject}
	if err := e.check(); err != nil {
		return "", Entry{}, fmt.Errorf("httpauth: %w", err)
	}
	return token, e, nil
}

// IssueToken makes a token for role and subject and adds its entry to the
// tokens file at path (created 0600 if missing; replaced atomically). It
// returns the token, for the caller to show once (PrintIssued), and its entry.
func IssueToken(path, role, subject string) (string, Entry, error) {
	unlock, err := lockTokens(path)
	if err != nil {
		return "", Entry{}, err
	}
	defer unlock()
	var entries []Entry
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", Entry{}, fmt.Errorf("httpauth: tokens file: %w", err)
	default:
		if _, err := ParseTokens(b); err != nil {
			return "", Entry{}, fmt.Errorf("httpauth: tokens file %s: %w", path, err)
		}
		entries, _ = decodeEntries(b)
	}
	token, e, err := NewToken(role, subject)
	if err != nil {
		return "", Entry{}, err
	}
	out, err := json.MarshalIndent(append(entries, e), "", "  ")
	if err != nil {
		return "", Entry{}, err
	}
	if err := writeFileAtomic(path, append(out, '\n')); err != nil {
		return "", Entry{}, err
	}
	return token, e, nil
}

// PrintIssued shows a new token once, with how to use it.
func PrintIssued(w io.Writer, token string, e Entry) {
	fmt.Fprintf(w, "token for %s (role %s), shown once; only its hash %s… is stored:\n\n  %s\n\nuse it as: Authorization: Bearer <token>\n",
		e.Subject, e.Role, e.TokenSHA256[:8], token)
}

func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tokens-*.json")
	if err != nil {
		return fmt.Errorf("httpauth: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(b)
	if err := tmp.Chmod(0o600); werr == nil {
		werr = err
	}
	if err := tmp.Sync(); werr == nil {
		werr = err
	}
	if err := tmp.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		return fmt.Errorf("httpauth: write %s: %w", path, werr)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("httpauth: %w", err)
	}
	return nil
}

// ReadEntries returns the entries of the tokens file at path (none when it
// does not exist), after checking them as a server would.
func ReadEntries(path string) ([]Entry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("httpauth: tokens file: %w", err)
	}
	if _, err := ParseTokens(b); err != nil {
		return nil, fmt.Errorf("httpauth: tokens file %s: %w", path, err)
	}
	return decodeEntries(b)
}

// RevokeTokens removes from the tokens file at path every entry whose
// subject is subject, or whose hash starts with subject when it is at least
// 8 hex digits (a TokenID). It returns how many it removed; a server that
// follows the file (TokenFile) refuses them within a second.
func RevokeTokens(path, subject string) (int, error) {
	unlock, err := lockTokens(path)
	if err != nil {
		return 0, err
	}
	defer unlock()
	entries, err := ReadEntries(path)
	if err != nil {
		return 0, err
	}
	idLike := tokenIDRe.MatchString(subject)
	kept := entries[:0]
	for _, e := range entries {
		if e.Subject == subject || (idLike && strings.HasPrefix(e.TokenSHA256, strings.ToLower(subject))) {
			continue
		}
		kept = append(kept, e)
	}
	removed := len(entries) - len(kept)
	if removed == 0 {
		return 0, nil
	}
	if len(kept) == 0 {
		if err := os.Remove(path); err != nil {
			return 0, fmt.Errorf("httpauth: %w", err)
		}
		return removed, nil
	}
	out, err := json.MarshalIndent(kept, "", "  ")
	if err != nil {
		return 0, err
	}
	return removed, writeFileAtomic(path, append(out, '\n'))
}

// lockTokens serialises changes to the tokens file at path between
// processes (an issue and a revoke at once must not lose either), with an
// exclusive lock on path.lock.
func lockTokens(path string) (func(), error) {
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("httpauth: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("httpauth: lock %s: %w", path+".lock", err)
	}
	return func() { f.Close() }, nil
}

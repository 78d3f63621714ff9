package httpauth

import (
	"errors"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// recheckEvery bounds how often a TokenFile looks at its file.
const recheckEvery = time.Second

// TokenFile is a tokens file that a running server follows: a token issued
// (or an entry removed) while it runs takes effect within a second, without
// a restart. A file that becomes unreadable or invalid keeps the last good
// tokens and is logged; a file that is removed revokes every token.
type TokenFile struct {
	path string
	log  *zap.Logger

	mu      sync.Mutex
	checked time.Time
	mod     time.Time
	size    int64
	ino     uint64
	tokens  *Tokens
}

// OpenTokenFile loads the tokens file at path. A missing file is not an
// error: no token is valid until one is issued. An invalid file is.
func OpenTokenFile(path string, log *zap.Logger) (*TokenFile, error) {
	if log == nil {
		log = zap.NewNop()
	}
	f := &TokenFile{path: path, log: log}
	if err := f.reload(time.Now()); err != nil {
		return nil, err
	}
	return f, nil
}

// Path returns the file's path.
func (f *TokenFile) Path() string { return f.path }

// Len returns how many tokens are valid now.
func (f *TokenFile) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tokens == nil {
		return 0
	}
	return f.tokens.Len()
}

// Lookup implements TokenLookup.
func (f *TokenFile) Lookup(token string) (Principal, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := time.Now(); now.Sub(f.checked) >= recheckEvery {
		if err := f.reload(now); err != nil {
			f.log.Warn("tokens file not reloaded; keeping the last good tokens", zap.String("path", f.path), zap.Error(err))
		}
	}
	if f.tokens == nil {
		return Principal{}, false
	}
	return f.tokens.Lookup(token)
}

// reload reads the file if it changed since the last read; f.mu is held
// (or f is not yet shared).
func (f *TokenFile) reload(now time.Time) error {
	f.checked = now
	fi, err := os.Stat(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		f.tokens, f.mod, f.size = nil, time.Time{}, 0
		return nil
	}
	if err != nil {
		return err
	}
	// Every write replaces the file (a new inode), so the inode tells a
	// rewrite apart even when its size and time do not.
	if f.tokens != nil && fi.ModTime().Equal(f.mod) && fi.Size() == f.size && inode(fi) == f.ino {
		return nil
	}
	t, err := LoadTokens(f.path)
	if err != nil {
		return err
	}
	f.tokens, f.mod, f.size, f.ino = t, fi.ModTime(), fi.Size(), inode(fi)
	return nil
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

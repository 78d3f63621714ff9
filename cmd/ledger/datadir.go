package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A data directory is used by one embedded server at a time: two servers on
// one JetStream store directory would corrupt it. The process that runs the
// embedded server holds an exclusive lock on DATA/ledger.lock and, while it
// serves, says in DATA/serve.json where its NATS server listens, so that
// other subcommands on the same directory connect to it instead.
const (
	lockFile  = "ledger.lock"
	serveFile = "serve.json"
)

// dirLock is a held lock on a data directory.
type dirLock struct{ f *os.File }

var errDirBusy = errors.New("data directory in use")

func lockDataDir(dir string) (*dirLock, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errDirBusy
		}
		return nil, err
	}
	// The pid is for people and for the refusal's message; the lock itself
	// is the flock, which the kernel drops when the holder dies, so a
	// crashed process never leaves a lock that blocks the next one.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// lockHolder returns the pid written in dir's lock file (0 when none).
func lockHolder(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, lockFile))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// requireLedger refuses a data directory that holds no ledger: a command
// that only reads (or adds to) a ledger must not start an empty one in a
// mistyped directory and answer as if it were the real one. With --nats
// the cluster is the ledger and the directory is not looked at.
func requireLedger(g *globals) error {
	if g.natsURL != "" {
		return nil
	}
	if fi, err := os.Stat(filepath.Join(g.dataDir, "jetstream")); err != nil || !fi.IsDir() {
		return usagef("--data %s: no ledger in this directory (start one with 'ledger serve --data %s' or 'ledger demo --data %s', or use --nats)", g.dataDir, g.dataDir, g.dataDir)
	}
	return nil
}

// busyError is the refusal of a `ledger serve` on a data directory that
// another process already holds: two servers would join one store.
func busyError(dir string) error {
	if info, err := readServeInfo(dir); err == nil {
		return usagef("--data %s is already served by ledger serve (pid %d, NATS %s): stop it first, or give another --data", dir, info.PID, info.NATS)
	}
	if pid := lockHolder(dir); pid != 0 {
		return usagef("--data %s is in use by another ledger process (pid %d): stop it first, or give another --data", dir, pid)
	}
	return usagef("--data %s is in use by another ledger process: stop it first, or give another --data", dir)
}

func (l *dirLock) Release() {
	if l != nil {
		l.f.Close() // closing the descriptor releases the lock
	}
}

// serveInfo is what a running `ledger serve` publishes about itself.
type serveInfo struct {
	NATS string `json:"nats"`
	HTTP string `json:"http,omitempty"`
	// TLSCA is the CA file that signs the server's certificate, when the
	// client port uses TLS.
	TLSCA string `json:"tls_ca,omitempty"`
	PID   int    `json:"pid"`
	// BreakGlassJWT is the user JWT of the break-glass administrator this
	// serve admits (--break-glass-admin), valid while it runs: not a
	// secret, it authenticates no one without the administrator's seed.
	BreakGlassJWT string `json:"break_glass_jwt,omitempty"`
}

func writeServeInfo(dir string, info serveInfo) error {
	b, _ := json.Marshal(info)
	tmp := filepath.Join(dir, serveFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, serveFile))
}

func removeServeInfo(dir string) { os.Remove(filepath.Join(dir, serveFile)) }

func readServeInfo(dir string) (serveInfo, error) {
	var info serveInfo
	b, err := os.ReadFile(filepath.Join(dir, serveFile))
	if err != nil {
		return info, fmt.Errorf("data directory %s is in use by another ledger process that does not say where it serves: stop it or use --nats", dir)
	}
	if err := json.Unmarshal(b, &info); err != nil || info.NATS == "" {
		return info, fmt.Errorf("data directory %s: unreadable %s: stop the other ledger process or use --nats", dir, serveFile)
	}
	return info, nil
}

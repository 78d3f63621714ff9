package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
)

// A backup restored into a fresh data directory is the same log: a bundle
// made before the backup verifies against the restored one with the
// original notary key. Secrets are in a backup only when asked for.
func TestBackupRestoredVerifiesABundleMadeBefore(t *testing.T) {
	ctx := context.Background()
	dir := fixtureDir(t)
	work := t.TempDir()
	bundlePath := filepath.Join(work, "before.zip")
	if _, stderr, code := runLedger(ctx, "snapshot", "--data", dir, "--as-of", "2023-10-04T16:59:59+07:00", "--out", bundlePath); code != 0 {
		t.Fatalf("snapshot: exit %d: %s", code, stderr)
	}
	key, _, code := runLedger(ctx, "notary", "key", "--data", dir)
	if code != 0 {
		t.Fatalf("notary key: exit %d", code)
	}
	key = strings.TrimSpace(key)

	// The buckets go with the log: a read model's checkpoint and a
	// snapshot object.
	putBuckets(t, dir)

	backup := filepath.Join(work, "backup")
	out, stderr, code := runLedger(ctx, "backup", "--data", dir, "--out", backup)
	if code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "stream LEDGER: 11 messages, positions 1..11") || !strings.Contains(out, "stream KV_"+auth.ProjectionsBucket+": 1 messages") ||
		!strings.Contains(out, "stream OBJ_"+auth.SnapshotsBucket+":") {
		t.Errorf("backup printed:\n%s", out)
	}
	filepath.WalkDir(backup, func(p string, d os.DirEntry, err error) error {
		if err == nil && (strings.HasSuffix(p, ".nk") || strings.HasSuffix(p, "ed25519.key") || strings.Contains(p, "tokens")) {
			t.Errorf("a backup without --secrets holds %s", p)
		}
		return nil
	})
	if _, _, code := runLedger(ctx, "backup", "--data", dir, "--out", backup); code != exitUsage {
		t.Errorf("backup into a non-empty directory: exit %d, want 2", code)
	}

	restored := filepath.Join(work, "restored")
	if out, stderr, code := runLedger(ctx, "restore", "--from", backup, "--data", restored); code != 0 {
		t.Fatalf("restore: exit %d: %s\n%s", code, stderr, out)
	}
	out, stderr, code = runLedger(ctx, "verify", bundlePath, "--key", key, "--against", restored)
	if code != 0 || !strings.Contains(out, ": verified") {
		t.Errorf("verify --against the restored log: exit %d: %s\n%s", code, stderr, out)
	}
	checkBuckets(t, restored)
	if _, stderr, code := runLedger(ctx, "restore", "--from", backup, "--data", restored); code != exitUsage {
		t.Errorf("restore over a ledger: exit %d (%s), want 2", code, stderr)
	}

	// A damaged backup is refused before anything is restored.
	snap := filepath.Join(backup, backupStreams, "LEDGER.snapshot")
	b, _ := os.ReadFile(snap)
	b[len(b)/2] ^= 0xff
	os.WriteFile(snap, b, 0o600)
	if _, stderr, code := runLedger(ctx, "restore", "--from", backup, "--data", filepath.Join(work, "again")); code == 0 ||
		!strings.Contains(stderr, "streams/LEDGER.snapshot missing or changed") {
		t.Errorf("restore of a damaged backup: exit %d: %s", code, stderr)
	}

	// With --secrets the notary key comes back: the restored ledger signs
	// with the same key.
	withSecrets := filepath.Join(work, "backup-secrets")
	if _, stderr, code := runLedger(ctx, "backup", "--data", dir, "--out", withSecrets, "--secrets"); code != 0 {
		t.Fatalf("backup --secrets: exit %d: %s", code, stderr)
	}
	again := filepath.Join(work, "restored-secrets")
	if _, stderr, code := runLedger(ctx, "restore", "--from", withSecrets, "--data", again); code != 0 {
		t.Fatalf("restore --secrets backup: exit %d: %s", code, stderr)
	}
	if got, _, _ := runLedger(ctx, "notary", "key", "--data", again); strings.TrimSpace(got) != key {
		t.Errorf("restored notary key %q, want %q", got, key)
	}
}

func putBuckets(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	n, err := openNode(ctx, &globals{dataDir: dir}, nodeConfig{role: auth.RoleOperator, port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	kv, err := n.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: auth.ProjectionsBucket})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "ckpt.orders.v1", []byte(`{"model":"orders","version":1,"position":11}`)); err != nil {
		t.Fatal(err)
	}
	obs, err := n.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: auth.SnapshotsBucket})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, "orders/11", []byte("snapshot")); err != nil {
		t.Fatal(err)
	}
}

func checkBuckets(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	n, err := openNode(ctx, &globals{dataDir: dir}, nodeConfig{role: auth.RoleOperator, port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	kv, err := n.js.KeyValue(ctx, auth.ProjectionsBucket)
	if err != nil {
		t.Fatalf("restored bucket: %v", err)
	}
	if e, err := kv.Get(ctx, "ckpt.orders.v1"); err != nil || !strings.Contains(string(e.Value()), `"position":11`) {
		t.Errorf("restored checkpoint: %v", err)
	}
	obs, err := n.js.ObjectStore(ctx, auth.SnapshotsBucket)
	if err != nil {
		t.Fatalf("restored object store: %v", err)
	}
	if b, err := obs.GetBytes(ctx, "orders/11"); err != nil || string(b) != "snapshot" {
		t.Errorf("restored snapshot object: %q, %v", b, err)
	}
}

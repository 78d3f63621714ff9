package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/node/auth"
)

// A backup is a directory: every stream of the ledger's account (the log
// and the buckets) as JetStream's own snapshot, with the configuration and
// state the restore API wants; the files of the data directory that are
// evidence, not secrets (the notary's public key, the watermark, the
// policy issuers); the secrets (notary private key, NATS seeds, API tokens)
// only with --secrets; and backup.json listing every file with its SHA-256.
const (
	backupManifest = "backup.json"
	backupFormat   = "ledger-backup/1"
	backupStreams  = "streams"
	backupSecrets  = "secrets"
)

// snapshotChunk is the chunk size asked of the snapshot API, and read per
// restore request.
const snapshotChunk = 128 * 1024

// backupIdleMax bounds the wait for the next snapshot chunk or a restore
// acknowledgement: the server sends and acknowledges continuously.
const backupIdleMax = 30 * time.Second

type backupManifestV1 struct {
	Format    string         `json:"format"`
	CreatedAt time.Time      `json:"created_at"`
	Version   string         `json:"ledger_version"`
	Streams   []backupStream `json:"streams"`
	// Files are the data directory's files copied, by path relative to the
	// backup, with their SHA-256 (the streams' files too).
	Files   map[string]string `json:"files"`
	Secrets bool              `json:"secrets"`
}

type backupStream struct {
	Name     string `json:"name"`
	Messages uint64 `json:"messages"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
}

// evidenceFiles are copied from the data directory into every backup.
var evidenceFiles = []string{"notary/ed25519.pub", watermarkFile, issuersFile}

// secretPaths are copied only with --secrets: the notary's signing key and
// the credentials directory (NATS seeds, API tokens).
var secretPaths = []string{"notary/ed25519.key", auth.Dir}

func newBackupCmd(g *globals) *cobra.Command {
	var out string
	var secrets bool
	c := &cobra.Command{
		Use:   "backup --out DIR",
		Short: "Back up the log, the buckets and the notary's public key into a new directory",
		Long: `backup writes every stream of the ledger (the LEDGER log and the read models',
checkout and subscribers' buckets) through JetStream's snapshot API, checking
every message's checksum first, together with the notary's public key, the
watermark and the policy issuers file, into DIR, which must be new or empty.
backup.json lists every file with its SHA-256. Secrets (the notary's private
key, the NATS users' seeds, the API tokens) are written only with --secrets,
under DIR/secrets (mode 0600): keep such a backup as you keep the keys.

It runs beside a serve on the same data directory (or with --nats); restore
with 'ledger restore --from DIR --data NEWDIR'.`,
		Example: `  ledger backup --data ./data --out /backups/ledger-2023-10-04`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("--out is required: the directory to write the backup to")
			}
			return runBackup(cmd.Context(), g, out, secrets, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&out, "out", "", "new or empty directory to write the backup to")
	c.Flags().BoolVar(&secrets, "secrets", false, "also back up the notary's private key, the NATS seeds and the API tokens")
	return c
}

func runBackup(ctx context.Context, g *globals, out string, secrets bool, w io.Writer) error {
	if entries, err := os.ReadDir(out); err == nil && len(entries) > 0 {
		return usagef("--out %s is not empty: a backup goes into a new directory", out)
	}
	if err := requireLedger(g); err != nil {
		return err
	}
	n, err := openExisting(ctx, g, auth.RoleOperator)
	if err != nil {
		return err
	}
	defer n.Close()
	if err := os.MkdirAll(filepath.Join(out, backupStreams), 0o700); err != nil {
		return usagef("--out %s: %v", out, err)
	}
	m := backupManifestV1{Format: backupFormat, CreatedAt: time.Now().UTC(), Version: readBuildInfo().Version,
		Files: map[string]string{}, Secrets: secrets}
	var names []string
	for name := range n.js.StreamNames(ctx).Name() {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s, err := snapshotStreamTo(ctx, n.nc, name, filepath.Join(out, backupStreams))
		if err != nil {
			return fmt.Errorf("back up stream %s: %w", name, err)
		}
		m.Streams = append(m.Streams, s)
	}
	for _, rel := range evidenceFiles {
		if err := copyInto(g.dataDir, out, rel); err != nil {
			return err
		}
	}
	if secrets {
		for _, rel := range secretPaths {
			if err := copyTree(filepath.Join(g.dataDir, rel), filepath.Join(out, backupSecrets, rel)); err != nil {
				return err
			}
		}
	}
	if m.Files, err = digestTree(out); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := writeSynced(filepath.Join(out, backupManifest), b, 0o600); err != nil {
		return err
	}
	return printJSONOr(w, g.json, m, func() {
		for _, s := range m.Streams {
			fmt.Fprintf(w, "stream %s: %d messages, positions %d..%d\n", s.Name, s.Messages, s.FirstSeq, s.LastSeq)
		}
		fmt.Fprintf(w, "backed up %d streams and %d files to %s (secrets: %t)\n", len(m.Streams), len(m.Files), out, secrets)
	})
}

// jsAPIError is the error member of a JetStream API response.
type jsAPIError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *jsAPIError) Error() string {
	return fmt.Sprintf("%s (JetStream error %d)", e.Description, e.ErrCode)
}

// snapshotStreamTo streams the snapshot of one stream into dir as
// NAME.snapshot, and its configuration and state as NAME.json (the
// restore request), and returns what it holds.
func snapshotStreamTo(ctx context.Context, nc *nats.Conn, name, dir string) (backupStream, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return backupStream{}, err
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(map[string]any{"deliver_subject": inbox, "chunk_size": snapshotChunk, "jsck": true})
	rctx, cancel := context.WithTimeout(ctx, backupIdleMax)
	msg, err := nc.RequestWithContext(rctx, "$JS.API.STREAM.SNAPSHOT."+name, req)
	cancel()
	if err != nil {
		return backupStream{}, err
	}
	var resp struct {
		Config json.RawMessage `json:"config"`
		State  struct {
			Msgs     uint64 `json:"messages"`
			FirstSeq uint64 `json:"first_seq"`
			LastSeq  uint64 `json:"last_seq"`
		} `json:"state"`
		Error *jsAPIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return backupStream{}, err
	}
	if resp.Error != nil {
		return backupStream{}, resp.Error
	}
	var raw struct {
		Config json.RawMessage `json:"config"`
		State  json.RawMessage `json:"state"`
	}
	json.Unmarshal(msg.Data, &raw)
	meta, _ := json.Marshal(raw) // exactly what the restore request wants
	if err := writeSynced(filepath.Join(dir, name+".json"), meta, 0o600); err != nil {
		return backupStream{}, err
	}
	f, err := os.OpenFile(filepath.Join(dir, name+".snapshot"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return backupStream{}, err
	}
	defer f.Close()
	for {
		cctx, cancel := context.WithTimeout(ctx, backupIdleMax)
		m, err := sub.NextMsgWithContext(cctx)
		cancel()
		if err != nil {
			return backupStream{}, fmt.Errorf("waiting for the next chunk: %w", err)
		}
		if len(m.Data) == 0 { // the end, with the snapshot's status
			if st := m.Header.Get("Status"); st != "" && st != "204" {
				return backupStream{}, fmt.Errorf("the server ended the snapshot with %s %s", st, m.Header.Get("Description"))
			}
			break
		}
		if _, err := f.Write(m.Data); err != nil {
			return backupStream{}, err
		}
		if m.Reply != "" {
			if err := m.Respond(nil); err != nil { // the acknowledgement that paces the server
				return backupStream{}, err
			}
		}
	}
	if err := f.Sync(); err != nil {
		return backupStream{}, err
	}
	return backupStream{Name: name, Messages: resp.State.Msgs, FirstSeq: resp.State.FirstSeq, LastSeq: resp.State.LastSeq}, f.Close()
}

// copyInto copies dataDir/rel to out/rel when it exists.
func copyInto(dataDir, out, rel string) error {
	b, err := os.ReadFile(filepath.Join(dataDir, rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Join(out, rel)), 0o700); err != nil {
		return err
	}
	return writeSynced(filepath.Join(out, rel), b, 0o600)
}

// copyTree copies a file or a directory tree (regular files only, mode
// 0600, directories 0700); a missing source copies nothing.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == src {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
			return err
		}
		return writeSynced(target, b, 0o600)
	})
}

// digestTree returns the SHA-256 of every regular file under dir, by
// slash-separated relative path.
func digestTree(dir string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == backupManifest {
			return nil
		}
		sum, err := fileSHA256(p)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = sum
		return nil
	})
	return out, err
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeSynced writes a new file and syncs it: a backup reported written
// is on disk.
func writeSynced(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	if err := f.Sync(); werr == nil {
		werr = err
	}
	if err := f.Close(); werr == nil {
		werr = err
	}
	return werr
}

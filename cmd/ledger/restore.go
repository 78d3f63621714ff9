package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/marketledger/ledger/node/embedded"
)

// restoreFinishMax bounds the wait for the server to rebuild a stream from
// the last chunk of its snapshot.
const restoreFinishMax = 2 * time.Minute

func newRestoreCmd(g *globals) *cobra.Command {
	var from string
	c := &cobra.Command{
		Use:   "restore --from BACKUP --data NEWDIR",
		Short: "Restore a backup into a new data directory",
		Long: `restore checks every file of a backup against backup.json, then rebuilds every
stream of it (the LEDGER log and the buckets) through JetStream's restore API
on an embedded server on --data, which must be new or empty, and checks that
the log keeps the ledger's guarantees and holds every position the backup's
watermark says it held.

Restoring a stream is what the NATS users of the roles may never do; restore
admits a break-glass user whose key lives in this process only, for the time
of the restore (docs/operations.md). A backup made with --secrets brings
back the notary's key, the NATS seeds and the API tokens; without them the
restored ledger makes new ones on first start and signs with a new notary
key (bundles made before still verify with the old one, which the backup
keeps in notary/ed25519.pub).`,
		Example: `  ledger restore --from /backups/ledger-2023-10-04 --data ./restored
  ledger verify s.zip --key HEX --against ./restored`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return usagef("--from is required: the backup directory")
			}
			if g.natsURL != "" {
				return usagef("--nats: restore writes a new data directory (--data); to restore onto a cluster use the nats CLI with the break-glass administrator (docs/operations.md)")
			}
			return runRestore(cmd.Context(), g, from, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&from, "from", "", "the backup directory ('ledger backup --out')")
	return c
}

func runRestore(ctx context.Context, g *globals, from string, w io.Writer) error {
	m, err := readBackup(from)
	if err != nil {
		return err
	}
	if entries, err := os.ReadDir(g.dataDir); err == nil && len(entries) > 0 {
		return usagef("--data %s is not empty: restore goes into a new data directory", g.dataDir)
	}
	if err := os.MkdirAll(g.dataDir, 0o700); err != nil {
		return usagef("--data %s: %v", g.dataDir, err)
	}
	for _, rel := range []string{watermarkFile, issuersFile} {
		if err := copyInto(from, g.dataDir, rel); err != nil {
			return err
		}
	}
	if m.Secrets {
		// The notary's public key goes back with its private half only:
		// alone it would be replaced by a new key's on first start.
		if err := copyInto(from, g.dataDir, "notary/ed25519.pub"); err != nil {
			return err
		}
		if err := copyTree(filepath.Join(from, backupSecrets), g.dataDir); err != nil {
			return err
		}
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return err
	}
	defer kp.Wipe()
	admin, err := kp.PublicKey()
	if err != nil {
		return err
	}
	n := &node{role: "restore", log: zap.NewNop()}
	defer n.Close()
	if err := n.startOrJoin(g, nodeConfig{host: "127.0.0.1", port: embedded.RandomPort, replicas: 1, breakGlass: admin, exclusive: true}); err != nil {
		return err
	}
	nc, err := nats.Connect(n.url, nats.Name("ledger-restore"),
		nats.UserJWT(func() (string, error) { return n.breakGlassJWT, nil }, kp.Sign))
	if err != nil {
		return fmt.Errorf("connect to the restore server: %w", err)
	}
	defer nc.Close()
	for _, s := range m.Streams {
		if err := restoreStream(ctx, nc, from, s.Name); err != nil {
			return fmt.Errorf("restore stream %s: %w", s.Name, err)
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := checkHistory(ctx, js, g.dataDir); err != nil {
		return fmt.Errorf("the restored log: %w", err)
	}
	return printJSONOr(w, g.json, m, func() {
		for _, s := range m.Streams {
			fmt.Fprintf(w, "stream %s: %d messages, positions %d..%d\n", s.Name, s.Messages, s.FirstSeq, s.LastSeq)
		}
		fmt.Fprintf(w, "restored %d streams from %s into %s; guarantees: ok\n", len(m.Streams), from, g.dataDir)
		if !m.Secrets {
			fmt.Fprintf(w, "secrets were not in the backup: the restored ledger makes new NATS seeds and a new notary key on first start; bundles made before verify with --key from %s\n",
				filepath.Join(from, "notary", "ed25519.pub"))
		}
	})
}

// readBackup reads backup.json and checks every file it lists against its
// SHA-256, and that it lists every file there is.
func readBackup(dir string) (backupManifestV1, error) {
	var m backupManifestV1
	b, err := os.ReadFile(filepath.Join(dir, backupManifest))
	if err != nil {
		return m, usagef("--from %s: no %s: not a ledger backup (%v)", dir, backupManifest, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil || m.Format != backupFormat {
		return m, usagef("--from %s: %s is not a %s manifest", dir, backupManifest, backupFormat)
	}
	got, err := digestTree(dir)
	if err != nil {
		return m, err
	}
	var bad []string
	for name, want := range m.Files {
		if got[name] != want {
			bad = append(bad, name+" missing or changed")
		}
	}
	for name := range got {
		if _, ok := m.Files[name]; !ok {
			bad = append(bad, name+" not in "+backupManifest)
		}
	}
	for _, s := range m.Streams {
		for _, ext := range []string{".json", ".snapshot"} {
			if _, ok := m.Files[backupStreams+"/"+s.Name+ext]; !ok {
				bad = append(bad, backupStreams+"/"+s.Name+ext+" not listed")
			}
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return m, fmt.Errorf("--from %s: the backup is damaged: %s", dir, strings.Join(bad, "; "))
	}
	return m, nil
}

// restoreStream sends one stream's snapshot to the restore API, a chunk a
// request, and waits for the server to rebuild the stream from it.
func restoreStream(ctx context.Context, nc *nats.Conn, dir, name string) error {
	meta, err := os.ReadFile(filepath.Join(dir, backupStreams, name+".json"))
	if err != nil {
		return err
	}
	var resp struct {
		DeliverSubject string      `json:"deliver_subject"`
		Error          *jsAPIError `json:"error"`
	}
	if err := jsRequest(ctx, nc, "$JS.API.STREAM.RESTORE."+name, meta, backupIdleMax, &resp); err != nil {
		return err
	}
	if resp.Error != nil {
		return resp.Error
	}
	f, err := os.Open(filepath.Join(dir, backupStreams, name+".snapshot"))
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]byte, snapshotChunk)
	for {
		k, rerr := io.ReadFull(f, chunk)
		if k > 0 {
			var ack struct {
				Error *jsAPIError `json:"error"`
			}
			if err := jsRequest(ctx, nc, resp.DeliverSubject, chunk[:k], backupIdleMax, &ack); err != nil {
				return err
			}
			if ack.Error != nil {
				return ack.Error
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	var done struct {
		Error *jsAPIError `json:"error"`
	}
	if err := jsRequest(ctx, nc, resp.DeliverSubject, nil, restoreFinishMax, &done); err != nil {
		return err
	}
	if done.Error != nil {
		return done.Error
	}
	return nil
}

// jsRequest sends a request bounded by limit and decodes a non-empty
// answer into v (a restore chunk's acknowledgement is empty).
func jsRequest(ctx context.Context, nc *nats.Conn, subj string, data []byte, limit time.Duration, v any) error {
	rctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	m, err := nc.RequestWithContext(rctx, subj, data)
	if err != nil {
		return err
	}
	if len(m.Data) == 0 {
		return nil
	}
	return json.Unmarshal(m.Data, v)
}

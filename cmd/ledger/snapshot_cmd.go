package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/bundle"
	"github.com/marketledger/ledger/projections/notary"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	var asOf, clock, out string
	c := &cobra.Command{
		Use:   "snapshot",
		Short: "Write a signed regulator bundle: the read models as of an instant, with proof",
		Long: `snapshot writes one zip file with every read model as of an instant (its rows
as JSON lines and its CSV), a manifest (position, time, Merkle root of the log
up to there, counts, violations, the SHA-256 of every file), the manifest's
Ed25519 signature and the notary's public key. 'ledger verify FILE' checks it
offline.

It streams the bundle from the as-of index (DATA/asof.db, brought up to the
log's head first), a page of rows at a time, so memory does not grow with the
log (format marketledger-bundle/v2). While 'ledger serve' holds the index it
writes the older format (v1: whole-model JSON) from the models' snapshots.

` + clockHelp,
		Example: `  ledger snapshot --data ./d --as-of 2023-10-04T16:59:59+07:00 --out snapshot.zip`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asOf == "" {
				return usagef("--as-of is required: the instant (or position) the bundle is as of")
			}
			at, err := parseAsOfFlag("--as-of", clock, asOf)
			if err != nil {
				return err
			}
			if out == "" {
				return usagef("--out is required: the bundle file to write")
			}
			ctx := cmd.Context()
			n, err := openExisting(ctx, g, auth.RoleInvestigator)
			if err != nil {
				return err
			}
			defer n.Close()
			key, err := notary.LoadOrCreateKey(g.dataDir)
			if err != nil {
				return err
			}
			size, how, err := writeSnapshot(ctx, g, n.store, at, key, out)
			if err != nil {
				return asOfError("--as-of", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes), as of %s, %s\n", out, size, at, how)
			return nil
		},
	}
	c.Flags().StringVar(&asOf, "as-of", "", "instant (RFC 3339 with offset) or position")
	addClockFlag(c, &clock)
	c.Flags().StringVar(&out, "out", "", "bundle file to write")
	return c
}

// writeSnapshot writes the bundle to out, streamed from the as-of index
// (DATA/asof.db, brought up to the log's head first) in bounded memory, or,
// when the index cannot be opened (no data directory, or 'ledger serve'
// holds it), from the models' snapshots in memory. It writes a temporary
// file beside out and renames it once complete: a failed snapshot leaves
// no file.
func writeSnapshot(ctx context.Context, g *globals, store projections.LogStore, at projections.AsOf, key ed25519.PrivateKey, out string) (int64, string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return 0, "", err
	}
	defer os.Remove(tmp.Name()) // gone once renamed
	bw := bufio.NewWriterSize(tmp, 1<<20)
	how := "format v2, streamed from the as-of index"
	ix, ierr := (*projections.Index)(nil), errors.New("no data directory")
	if g.dataDir != "" {
		ix, ierr = projections.OpenIndex(filepath.Join(g.dataDir, indexFile))
	}
	if ierr == nil {
		defer ix.Close()
		if err = ix.Build(ctx, store, 0); err == nil {
			err = bundle.WriteFromIndex(ctx, store, projections.NewRowQuerier(ctx, ix, store), bw, at, key, bundle.WithTimeZone(g.zone()))
		}
	} else {
		how = fmt.Sprintf("format v1, from the models' snapshots (the as-of index: %v)", ierr)
		err = bundle.Write(ctx, store, bw, at, key, bundle.WithTimeZone(g.zone()))
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, "", err
	}
	st, err := os.Stat(tmp.Name())
	if err != nil {
		return 0, "", err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return 0, "", err
	}
	return st.Size(), how, os.Rename(tmp.Name(), out)
}

func newVerifyCmd(g *globals) *cobra.Command {
	var against, keyHex string
	c := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a regulator bundle or a saved point answer offline (a bundle also against the live log with --against)",
		Long: `A FILE that is JSON is a saved point answer ('ledger state --proof --json', or
GET /v1/models/MODEL/KEY?proof=true): verify checks the notary checkpoint's
signature, each event's hash, each event's inclusion in the signed tree, and
that the events end with the row's version.

Otherwise FILE is a bundle. verify checks a bundle without trusting whoever made it: the archive is
canonical, every file matches the digest in the manifest, the manifest's
signature verifies, every read model is present at this build's version,
restores and renders to the same CSV, and the counts and claims agree.

--key HEX is the notary public key you trust (obtained from the ledger's
operator out of band, not from the bundle). Without it the bundle can only
prove it is intact, not who made it: anyone can sign a bundle with a key of
their own.

--against (a data directory or a NATS URL) checks the bundle against the live
log: as_of must resolve on its clock to exactly the manifest's position and
recorded_at, the Merkle root and every read model are recomputed from the
first event, and the violations are counted again.

Exit status: 0 verified (every check passed and --key signed it); 1 a check
failed; 2 bad input; 3 every check passed but no --key was given: "signature
valid but signer not trusted: pass --key". It lists what it could not check.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd.Context(), g, cmd.OutOrStdout(), args[0], against, keyHex)
		},
	}
	c.Flags().StringVar(&against, "against", "", "also check against the live log: a data directory or nats:// URL")
	c.Flags().StringVar(&keyHex, "key", "", "trusted notary public key, hex; without it verify exits 3: signature valid but signer not trusted")
	return c
}

func runVerify(ctx context.Context, g *globals, w io.Writer, path, against, keyHex string) error {
	// A bundle is read where it lies (a zip over a million events is over
	// a hundred MiB); only a saved point answer, small JSON, is read whole.
	f, err := os.Open(path)
	if err != nil {
		return usagef("%v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return usagef("%v", err)
	}
	start := make([]byte, 64)
	n, _ := f.ReadAt(start, 0)
	isAnswer := false
	if t := bytes.TrimSpace(start[:n]); len(t) > 0 && t[0] == '{' {
		isAnswer = true
	}
	var trusted ed25519.PublicKey
	if keyHex != "" {
		b, err := hex.DecodeString(keyHex)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return usagef("--key must be a %d-byte Ed25519 public key in hex", ed25519.PublicKeySize)
		}
		trusted = b
	}
	if isAnswer {
		if against != "" {
			return usagef("--against checks bundles; a saved point answer is checked offline")
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return usagef("%v", err)
		}
		return verifyRowAnswer(w, g.json, path, data, trusted)
	}
	var rep bundle.Report
	r, size := f, st.Size()
	if against == "" {
		rep, err = bundle.Verify(r, size, trusted)
	} else {
		lg := &globals{dataDir: g.dataDir, credsDir: g.credsDir, tlsCA: g.tlsCA}
		if strings.HasPrefix(against, "nats://") || strings.HasPrefix(against, "tls://") {
			lg.natsURL = against
		} else {
			lg.dataDir = against
		}
		n, oerr := openExisting(ctx, lg, auth.RoleInvestigator)
		if oerr != nil {
			return oerr
		}
		defer n.Close()
		rep, err = bundle.VerifyAgainst(ctx, n.store, r, size, trusted)
	}
	if perr := printJSONOr(w, g.json, rep, func() { printVerify(w, path, rep) }); perr != nil {
		return perr
	}
	if err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("%s: verification failed", path)
	}
	if !rep.Trusted {
		return untrustedError{path}
	}
	return nil
}

// untrustedError is a bundle whose every check passed but whose signer was
// not checked against a trusted key: intact, not verified.
type untrustedError struct{ path string }

func (e untrustedError) Error() string {
	return e.path + ": " + untrustedMessage
}

const untrustedMessage = "signature valid but signer not trusted: pass --key"

func printVerify(w io.Writer, path string, rep bundle.Report) {
	for _, c := range rep.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "%s %s\n", mark, checkLine(c))
	}
	for _, n := range rep.NotChecked {
		fmt.Fprintf(w, "not checked: %s\n", n)
	}
	switch {
	case rep.OK() && rep.Trusted:
		fmt.Fprintf(w, "%s: verified (as of %s, position %d, root %s)\n", path, rep.Manifest.AsOf, rep.Manifest.Position, rep.Manifest.MerkleRoot)
	case rep.OK():
		fmt.Fprintf(w, "%s: not verified: %s (the key in the bundle is %s)\n", path, untrustedMessage, rep.Manifest.KeyID)
	}
}

// mountSnapshots serves GET /v1/snapshots?as_of=T[&clock=business]: the
// same bundle `ledger snapshot` writes, streamed from the as-of index that
// serve follows (format v2) into a temporary file, sent once complete.
func (a *api) mountSnapshots(key ed25519.PrivateKey, rq *projections.RowQuerier) {
	a.mux.Handle("GET /v1/snapshots", httpauth.Require(httpauth.ReadRoles...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		at, err := projections.ParseAsOf(q.Get("clock"), q.Get("as_of"))
		if err != nil {
			writeError(w, err)
			return
		}
		tmp, err := os.CreateTemp("", "snapshot-*.zip")
		if err != nil {
			writeError(w, err)
			return
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		bw := bufio.NewWriterSize(tmp, 1<<20)
		if err := bundle.WriteFromIndex(r.Context(), a.node.store, rq, bw, at, key); err != nil {
			writeError(w, err)
			return
		}
		if err := bw.Flush(); err != nil {
			writeError(w, err)
			return
		}
		size, err := tmp.Seek(0, io.SeekCurrent)
		if err == nil {
			_, err = tmp.Seek(0, io.SeekStart)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Disposition", `attachment; filename="snapshot.zip"`)
		w.Header().Set("Content-Length", fmt.Sprint(size))
		io.Copy(w, tmp)
	})))
}

func checkLine(c bundle.Check) string {
	if c.Detail == "" {
		return c.Name
	}
	return c.Name + ": " + c.Detail
}

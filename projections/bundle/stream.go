package bundle

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/projections/notary"
)

// BundleFormatRows is the bundle format written from the as-of index, row
// by row: each model is models/<name>.rows.jsonl (one line per row in key
// order, {"key":...,"state":...}, the row's canonical JSON as the index and
// Keyed.Row give it) beside its CSV, instead of a whole-model snapshot, so
// that neither writing nor checking it holds a model in memory. The model
// files come first, in name order, then manifest.json, manifest.sig and
// notary.pub: the manifest, which carries the files' digests, is written
// last. Verify checks both formats.
const BundleFormatRows = "marketledger-bundle/v2"

const rowsSuffix = ".rows.jsonl"

// rowLine is one line of a rows file.
type rowLine struct {
	Key   string          `json:"key"`
	State json.RawMessage `json:"state"`
}

// appendRowLine appends the canonical line of one row.
func appendRowLine(b []byte, key string, state []byte) []byte {
	k, _ := json.Marshal(key) // a string always marshals
	b = append(b, `{"key":`...)
	b = append(b, k...)
	b = append(b, `,"state":`...)
	b = append(b, state...)
	return append(b, "}\n"...)
}

// WriteFromIndex writes the bundle as of at to w in BundleFormatRows,
// reading every model's rows from the as-of index through rq a page at a
// time and streaming them into the archive: memory holds a page of rows,
// not a model (except a business instant the index cannot answer by
// lookup, which folds the models in one pass). The manifest names the same
// position, recorded time, Merkle root, row and violation counts, and the
// CSVs are byte for byte those Write gives for the same instant.
func WriteFromIndex(ctx context.Context, store projections.LogStore, rq *projections.RowQuerier, w io.Writer, at projections.AsOf, key ed25519.PrivateKey, opts ...Option) error {
	var o options
	for _, f := range opts {
		f(&o)
	}
	ip, err := rq.Point(ctx, at)
	if err != nil {
		return err
	}
	size, root, err := rq.TreeAt(ctx, ip.Position)
	if err != nil {
		return err
	}
	m := Manifest{Format: BundleFormatRows, AsOf: asOfValue(at), Clock: at.Clock, Position: ip.Position,
		RecordedAt: ip.RecordedAt.UTC(), TreeSize: size, MerkleRoot: root.String(),
		Models: map[string]ManifestModel{}, Files: map[string]string{}, KeyID: notary.KeyID(key.Public().(ed25519.PublicKey))}
	loc := time.UTC
	if o.loc != nil && o.loc != time.UTC {
		m.TimeZone, loc = o.loc.String(), o.loc
	}
	each := func(name string, fn func(projections.Row) error) error {
		_, err := rq.Each(ctx, name, at, ip, fn)
		return err
	}
	if !ip.Lookup {
		// Each would fold every model on its own: fold them in one pass
		// (memory holds the models, as Write's does).
		s, err := projections.QueryAsOf(ctx, store, at)
		if err != nil {
			return err
		}
		if s.Point.Position != ip.Position {
			return &events.Error{Op: "projections.Bundle", Kind: events.KindIntegrity, Field: "as_of",
				Rule: fmt.Sprintf("the fold ends at position %d, the index at %d", s.Point.Position, ip.Position)}
		}
		each = func(name string, fn func(projections.Row) error) error { return eachFolded(s.Model(name), fn) }
	}
	zw := zip.NewWriter(w)
	for _, name := range models.ModelNames() {
		md, err := models.NewModel(name)
		if err != nil {
			return err
		}
		tab, ok := md.(models.Tabular)
		if !ok {
			return &events.Error{Op: "projections.Bundle", Kind: events.KindInvalid, Field: "model", Rule: "read model " + name + " has no table of its rows"}
		}
		if err := streamModel(zw, each, tab, &m, loc); err != nil {
			return err
		}
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tail := []bundleFile{{ManifestFile, manifest},
		{SignatureFile, []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(key, manifest)) + "\n")},
		{PublicKeyFile, []byte(base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)) + "\n")}}
	for _, f := range tail {
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Store})
		if err != nil {
			return err
		}
		if _, err := fw.Write(f.data); err != nil {
			return err
		}
	}
	return zw.Close()
}

// streamModel writes one model's CSV, then its rows file, each in one pass
// over the index (two passes: a zip entry is written whole).
func streamModel(zw *zip.Writer, each func(string, func(projections.Row) error) error, md models.Tabular, m *Manifest, loc *time.Location) error {
	name := md.Name()
	var rows int
	err := zipEntry(zw, m, bundleModelDir+name+".csv", func(w io.Writer) error {
		cw, err := models.NewCSVWriter(w, md.Columns(), loc)
		if err != nil {
			return err
		}
		err = each(name, func(r projections.Row) error {
			recs, err := md.TableRows(r.Key, r.State)
			if err != nil {
				return err
			}
			rows += len(recs)
			return cw.Write(recs)
		})
		if err != nil {
			return err
		}
		return cw.Flush()
	})
	if err != nil {
		return err
	}
	violations := 0
	err = zipEntry(zw, m, bundleModelDir+name+rowsSuffix, func(w io.Writer) error {
		var line []byte
		err := each(name, func(r projections.Row) error {
			if strings.HasPrefix(r.Key, "violation/") {
				violations++
			}
			line = appendRowLine(line[:0], r.Key, r.State)
			_, err := w.Write(line)
			return err
		})
		return err
	})
	if err != nil {
		return err
	}
	m.Models[name] = ManifestModel{Version: models.ModelVersion(md), Rows: rows}
	if name == models.ModelViolations {
		m.Violations = violations
	}
	return nil
}

// eachFolded calls fn with every row of a folded model, in key order.
func eachFolded(md models.Model, fn func(projections.Row) error) error {
	k, ok := md.(models.Keyed)
	if !ok {
		return fmt.Errorf("read model %s has no rows under keys", md.Name())
	}
	for _, key := range k.RowKeys() {
		body, _ := k.Row(key)
		if err := fn(projections.Row{Key: key, State: body}); err != nil {
			return err
		}
	}
	return nil
}

// zipEntry writes one stored entry through fill and records its SHA-256.
func zipEntry(zw *zip.Writer, m *Manifest, name string, fill func(io.Writer) error) error {
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
	if err != nil {
		return err
	}
	h := sha256.New()
	bw := &bufWriter{w: io.MultiWriter(fw, h)}
	if err := fill(bw); err != nil {
		return err
	}
	if err := bw.flush(); err != nil {
		return err
	}
	m.Files[name] = hex.EncodeToString(h.Sum(nil))
	return nil
}

// bufWriter gathers small writes (a row at a time) into 64 KiB ones.
type bufWriter struct {
	w   io.Writer
	buf []byte
}

func (b *bufWriter) Write(p []byte) (int, error) {
	if len(b.buf)+len(p) > 64<<10 {
		if err := b.flush(); err != nil {
			return 0, err
		}
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *bufWriter) flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// rowsHash renders a model's rows file from the model itself (a fresh
// fold), for comparison with a bundle's: its SHA-256 in hex.
func rowsHash(md models.Model) (string, error) {
	k, ok := md.(models.Keyed)
	if !ok {
		return "", fmt.Errorf("read model %s has no rows under keys", md.Name())
	}
	h := sha256.New()
	var line []byte
	for _, key := range k.RowKeys() {
		body, ok := k.Row(key)
		if !ok {
			return "", fmt.Errorf("read model %s lists row %q and does not hold it", md.Name(), key)
		}
		line = appendRowLine(line[:0], key, body)
		h.Write(line)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// keyOrderCSV renders a model's CSV as a v2 bundle holds it: the table
// rows of its rows in key order (models.Tabular).
func keyOrderCSV(md models.Model, loc *time.Location) ([]byte, error) {
	tab, ok := md.(models.Tabular)
	if !ok {
		return nil, fmt.Errorf("read model %s has no table of its rows", md.Name())
	}
	var b bytes.Buffer
	cw, err := models.NewCSVWriter(&b, tab.Columns(), loc)
	if err != nil {
		return nil, err
	}
	err = eachFolded(md, func(r projections.Row) error {
		recs, err := tab.TableRows(r.Key, r.State)
		if err != nil {
			return err
		}
		return cw.Write(recs)
	})
	if err != nil {
		return nil, err
	}
	err = cw.Flush()
	return b.Bytes(), err
}

// checkRowsModel checks one model of a rows bundle offline: the rows file
// is canonical lines in strictly increasing key order, its table rows
// render to the CSV byte for byte, and the manifest's counts hold.
func checkRowsModel(name string, m Manifest, files map[string][]byte) error {
	md, err := models.NewModel(name)
	if err != nil {
		return err
	}
	tab, ok := md.(models.Tabular)
	if !ok {
		return fmt.Errorf("read model %s has no table of its rows", name)
	}
	loc, err := manifestZone(m)
	if err != nil {
		return err
	}
	var csv bytes.Buffer
	cw, err := models.NewCSVWriter(&csv, tab.Columns(), loc)
	if err != nil {
		return err
	}
	data := files[bundleModelDir+name+rowsSuffix]
	rows, violations, prev := 0, 0, ""
	var line []byte
	for n := 1; len(data) > 0; n++ {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return fmt.Errorf("%s%s line %d has no newline", name, rowsSuffix, n)
		}
		var r rowLine
		if err := strictJSON(data[:i+1], &r); err != nil {
			return fmt.Errorf("%s%s line %d: %v", name, rowsSuffix, n, err)
		}
		if line = appendRowLine(line[:0], r.Key, r.State); !bytes.Equal(line, data[:i+1]) {
			return fmt.Errorf("%s%s line %d is not in canonical form", name, rowsSuffix, n)
		}
		if n > 1 && r.Key <= prev {
			return fmt.Errorf("%s%s line %d: key %q is not after %q", name, rowsSuffix, n, r.Key, prev)
		}
		prev, data = r.Key, data[i+1:]
		recs, err := tab.TableRows(r.Key, r.State)
		if err != nil {
			return fmt.Errorf("%s%s line %d: %v", name, rowsSuffix, n, err)
		}
		if err := cw.Write(recs); err != nil {
			return err
		}
		rows += len(recs)
		if strings.HasPrefix(r.Key, "violation/") {
			violations++
		}
	}
	if err := cw.Flush(); err != nil {
		return err
	}
	if got := m.Models[name].Rows; got != rows {
		return fmt.Errorf("manifest says %d rows, the model has %d", got, rows)
	}
	if !bytes.Equal(csv.Bytes(), files[bundleModelDir+name+".csv"]) {
		return fmt.Errorf("%s.csv is not the table of %s%s", name, name, rowsSuffix)
	}
	if name == models.ModelViolations && violations != m.Violations {
		return fmt.Errorf("manifest says %d violations, the audit holds %d", m.Violations, violations)
	}
	return nil
}

// canonicalOrder is the order Write (v1: every file by name) or
// WriteFromIndex (v2: model files by name, then the manifest, its
// signature and the key) puts files in, told apart by a rows file.
func canonicalOrder(files []bundleFile) {
	rows := slices.ContainsFunc(files, func(f bundleFile) bool { return strings.HasSuffix(f.name, rowsSuffix) })
	rank := func(n string) int {
		if !rows {
			return 0
		}
		return slices.Index([]string{ManifestFile, SignatureFile, PublicKeyFile}, n) + 1
	}
	slices.SortFunc(files, func(a, b bundleFile) int {
		if d := rank(a.name) - rank(b.name); d != 0 {
			return d
		}
		return strings.Compare(a.name, b.name)
	})
}

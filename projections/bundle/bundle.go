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
	"strings"
	"time"
	_ "time/tzdata" // the zone a bundle names loads the same on every verifier

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/projections/notary"
)

// Bundle file names.
const (
	BundleFormat   = "marketledger-bundle/v1"
	ManifestFile   = "manifest.json"
	SignatureFile  = "manifest.sig"
	PublicKeyFile  = "notary.pub"
	bundleModelDir = "models/"
	maxBundleFile  = 1 << 30 // a bound on what the verifier reads per file
)

// Manifest describes a regulator bundle. Its bytes are what manifest.sig
// signs; every other file is bound to it by its SHA-256.
type Manifest struct {
	Format     string                   `json:"format"`
	AsOf       string                   `json:"as_of"`
	Clock      projections.Clock        `json:"clock"`
	Position   uint64                   `json:"position"`
	RecordedAt time.Time                `json:"recorded_at"`
	TreeSize   uint64                   `json:"tree_size"`
	MerkleRoot string                   `json:"merkle_root"`
	Models     map[string]ManifestModel `json:"models"`
	Violations int                      `json:"violations"`
	Files      map[string]string        `json:"files"` // name -> hex SHA-256
	KeyID      string                   `json:"key_id"`
	// TimeZone is the IANA zone the CSVs' times are written in, with its
	// offset (absent: UTC).
	TimeZone string `json:"time_zone,omitempty"`
}

// Option changes what Write writes.
type Option func(*options)

type options struct{ loc *time.Location }

// WithTimeZone writes the CSVs' times in loc (the reader's jurisdiction's
// zone) and names it in the manifest; the default is UTC.
func WithTimeZone(loc *time.Location) Option { return func(o *options) { o.loc = loc } }

// ManifestModel is one read model in a bundle.
type ManifestModel struct {
	Version int `json:"version"`
	Rows    int `json:"rows"`
}

type bundleFile struct {
	name string
	data []byte
}

// Write writes the regulator bundle as of at to w: a zip of every
// read model as of at (models/<name>.json, the canonical snapshot, and
// models/<name>.csv), manifest.json, manifest.sig (base64 Ed25519 signature
// over the manifest's bytes with key) and notary.pub (base64 public key).
// The archive is canonical: the same state and key give the same bytes,
// which is what lets Verify refuse any changed byte of it.
func Write(ctx context.Context, store projections.LogStore, w io.Writer, at projections.AsOf, key ed25519.PrivateKey, opts ...Option) error {
	var o options
	for _, f := range opts {
		f(&o)
	}
	s, err := projections.QueryAsOf(ctx, store, at)
	if err != nil {
		return err
	}
	size, root, err := treeAt(ctx, store, s.Point.Position)
	if err != nil {
		return err
	}
	m := Manifest{Format: BundleFormat, AsOf: asOfValue(at), Clock: at.Clock, Position: s.Point.Position,
		RecordedAt: s.Point.RecordedAt.UTC(), TreeSize: size, MerkleRoot: root.String(),
		Models: map[string]ManifestModel{}, Files: map[string]string{}, KeyID: notary.KeyID(key.Public().(ed25519.PublicKey))}
	if o.loc != nil && o.loc != time.UTC {
		m.TimeZone = o.loc.String()
	}
	files, err := modelFiles(s.Models, &m, o.loc, BundleFormat)
	if err != nil {
		return err
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	files = append(files,
		bundleFile{ManifestFile, manifest},
		bundleFile{SignatureFile, []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(key, manifest)) + "\n")},
		bundleFile{PublicKeyFile, []byte(base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)) + "\n")})
	archive, err := writeArchive(files)
	if err != nil {
		return err
	}
	_, err = w.Write(archive)
	return err
}

func asOfValue(at projections.AsOf) string {
	if at.Clock == projections.ClockPosition {
		return fmt.Sprint(at.Position)
	}
	return at.Time.Format(time.RFC3339Nano)
}

// modelFiles renders each model as JSON (in format BundleFormat) and CSV
// and records them in m. In BundleFormatRows it records the digest of the
// rows file and returns the CSV alone.
func modelFiles(ms []models.Model, m *Manifest, loc *time.Location, format string) ([]bundleFile, error) {
	var files []bundleFile
	for _, md := range ms {
		t := md.Rows()
		if format == BundleFormatRows {
			sum, err := rowsHash(md)
			if err != nil {
				return nil, err
			}
			m.Files[bundleModelDir+md.Name()+rowsSuffix] = sum
			cs, err := keyOrderCSV(md, loc)
			if err != nil {
				return nil, err
			}
			sumCSV := sha256.Sum256(cs)
			m.Files[bundleModelDir+md.Name()+".csv"] = hex.EncodeToString(sumCSV[:])
			m.Models[md.Name()] = ManifestModel{Version: models.ModelVersion(md), Rows: len(t.Rows)}
			if v, ok := md.(*models.Violations); ok {
				m.Violations = v.Count()
			}
			continue
		}
		js, err := md.Snapshot()
		if err != nil {
			return nil, err
		}
		cs, err := renderCSV(t, loc)
		if err != nil {
			return nil, err
		}
		m.Models[md.Name()] = ManifestModel{Version: models.ModelVersion(md), Rows: len(t.Rows)}
		if v, ok := md.(*models.Violations); ok {
			m.Violations = v.Count()
		}
		for _, f := range []bundleFile{{bundleModelDir + md.Name() + ".json", js}, {bundleModelDir + md.Name() + ".csv", cs}} {
			sum := sha256.Sum256(f.data)
			m.Files[f.name] = hex.EncodeToString(sum[:])
			files = append(files, f)
		}
	}
	return files, nil
}

// renderCSV is the CSV of a model's table as people read it: amounts also
// in major units, no cell a spreadsheet would run (models.WriteCSV).
func renderCSV(t models.Table, loc *time.Location) ([]byte, error) {
	var b bytes.Buffer
	if err := models.WriteCSV(&b, t, loc); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// writeArchive writes files as a canonical zip: in canonicalOrder, stored
// uncompressed, no timestamps.
func writeArchive(files []bundleFile) ([]byte, error) {
	canonicalOrder(files)
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, f := range files {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Store})
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// treeAt folds the log up to pos into a Merkle tree: the root a notary
// would have signed for that prefix.
func treeAt(ctx context.Context, store events.Store, pos uint64) (uint64, notary.Hash, error) {
	var t notary.Frontier // the root only: log2(n) hashes, not the tree
	for e, err := range store.Read(ctx, events.Query{To: pos}) {
		if err != nil {
			return 0, notary.Hash{}, err
		}
		leaf, err := notary.EventLeaf(&e)
		if err != nil {
			return 0, notary.Hash{}, err
		}
		t.Append(notary.LeafHash(leaf))
	}
	if t.Size() == 0 {
		return 0, notary.Hash{}, &events.Error{Op: "projections.treeAt", Kind: events.KindInvalid, Rule: fmt.Sprintf("no event at or before position %d", pos)}
	}
	root, _ := t.Root()
	return t.Size(), root, nil
}

// Check is one thing a verification looked at.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Report is what a verification checked, passed and failed, and what it
// could not check: it never calls anything verified that it did not check.
type Report struct {
	Manifest Manifest `json:"manifest"`
	// Trusted is true when the manifest's signature verifies with the
	// trusted key the caller gave; without one a bundle proves it is
	// intact, never who made it, and a caller must not call it verified.
	Trusted    bool     `json:"trusted"`
	Checks     []Check  `json:"checks"`
	NotChecked []string `json:"not_checked"`
}

// OK reports whether every check passed.
func (r *Report) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

func (r *Report) add(name string, err error) bool {
	c := Check{Name: name, OK: err == nil}
	if err != nil {
		c.Detail = err.Error()
	}
	r.Checks = append(r.Checks, c)
	return err == nil
}

// err returns an error naming every failed check, or nil.
func (r *Report) err() error {
	var failed []string
	for _, c := range r.Checks {
		if !c.OK {
			failed = append(failed, c.Name+": "+c.Detail)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return &events.Error{Op: "projections.Verify", Kind: events.KindIntegrity, Rule: strings.Join(failed, "; ")}
}

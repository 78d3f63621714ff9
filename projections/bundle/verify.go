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
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/projections/notary"
)

// Verify checks a bundle offline: the archive reads and is in
// canonical form (so any changed byte anywhere fails), the signature over
// the manifest verifies with the bundle's key, that key is trustedKey when
// one is given, every file's SHA-256 matches the manifest and no file is
// missing or extra, every model file restores as its model and its CSV is
// that model's table, and the row and violation counts match. It returns
// the report and an error naming every check that failed. What it cannot
// check offline (the Merkle root against the log) is listed in
// Report.NotChecked, never reported as verified.
func Verify(r io.ReaderAt, size int64, trustedKey ed25519.PublicKey) (Report, error) {
	var rep Report
	files, order, err := readArchive(r, size)
	if !rep.add("archive readable", err) {
		return rep, rep.err()
	}
	if !rep.add("archive canonical", canonicalArchive(r, size, files, order)) {
		// Keep going: the other checks say which file changed.
	}
	manifest, ok := files[ManifestFile]
	if !rep.add("manifest present", presence(files, ManifestFile, SignatureFile, PublicKeyFile)) || !ok {
		return rep, rep.err()
	}
	pub, err := checkSignature(files, trustedKey)
	rep.add("manifest signature", err)
	if trustedKey != nil {
		rep.Trusted = rep.add("signed by the trusted key", trustedErr(pub, trustedKey)) && err == nil
	} else {
		rep.NotChecked = append(rep.NotChecked, "origin of the key: no trusted key was given, so the signature proves the bundle is intact, not who made it")
	}
	if !rep.add("manifest readable", strictJSON(manifest, &rep.Manifest)) {
		return rep, rep.err()
	}
	rep.add("manifest key id", keyIDErr(pub, rep.Manifest.KeyID))
	rep.add("manifest claims", checkClaims(rep.Manifest))
	rep.add("model set", checkModelSet(rep.Manifest))
	rep.add("file digests", checkDigests(files, rep.Manifest))
	if rep.Manifest.Position == 0 {
		rep.add("position 0 holds the empty models", emptyModels(rep.Manifest))
	}
	checkModels(&rep, files)
	rep.NotChecked = append(rep.NotChecked, fmt.Sprintf("merkle root %s at tree size %d against the log: needs the live log (ledger verify --against, a data directory or nats:// URL)",
		rep.Manifest.MerkleRoot, rep.Manifest.TreeSize))
	return rep, rep.err()
}

// checkClaims requires the manifest's claims to agree with one another: the
// format is this one, as_of reads on its clock (and on the position clock
// is the position), and the tree covers events exactly when the position
// does. What they say about the log is checked against it (VerifyAgainst).
func checkClaims(m Manifest) error {
	var bad []string
	if m.Format != BundleFormat && m.Format != BundleFormatRows {
		bad = append(bad, fmt.Sprintf("format is %q, want %q or %q", m.Format, BundleFormat, BundleFormatRows))
	}
	if m.Position == 0 {
		if m.TreeSize != 0 {
			bad = append(bad, fmt.Sprintf("position 0 (an empty log) with tree_size %d", m.TreeSize))
		}
		if m.Clock == projections.ClockPosition {
			bad = append(bad, "position 0 on the position clock: an as-of position is a whole number from 1")
		} else if _, err := time.Parse(time.RFC3339Nano, m.AsOf); err != nil {
			bad = append(bad, fmt.Sprintf("as_of %q is not an RFC 3339 instant", m.AsOf))
		}
	} else {
		at, err := projections.ParseAsOf(string(m.Clock), m.AsOf)
		switch {
		case err != nil:
			bad = append(bad, err.Error())
		case at.Clock == projections.ClockPosition && at.Position != m.Position:
			bad = append(bad, fmt.Sprintf("as_of is position %d, the manifest's position is %d", at.Position, m.Position))
		}
		if m.TreeSize == 0 || m.TreeSize > m.Position {
			bad = append(bad, fmt.Sprintf("tree_size %d cannot cover position %d (from 1 to the position)", m.TreeSize, m.Position))
		}
		if m.RecordedAt.IsZero() {
			bad = append(bad, "recorded_at is missing")
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// checkModelSet requires every built-in read model, at this build's
// version, and no other: a bundle that leaves out a model (the violations
// audit above all) says nothing about it, and must not verify.
func checkModelSet(m Manifest) error {
	var bad []string
	for _, name := range models.ModelNames() {
		got, ok := m.Models[name]
		if !ok {
			bad = append(bad, name+" is missing")
			continue
		}
		md, _ := models.NewModel(name)
		if want := models.ModelVersion(md); got.Version != want {
			bad = append(bad, fmt.Sprintf("%s is version %d, this verifier checks version %d", name, got.Version, want))
		}
	}
	for name := range m.Models {
		if _, err := models.NewModel(name); err != nil {
			bad = append(bad, name+" is not a read model")
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// readArchive reads every file, bounded, refusing duplicates.
func readArchive(r io.ReaderAt, size int64) (map[string][]byte, []string, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, nil, fmt.Errorf("not a readable bundle (truncated or not a zip): %w", err)
	}
	files := map[string][]byte{}
	var order []string
	for _, f := range zr.File {
		if _, dup := files[f.Name]; dup {
			return nil, nil, fmt.Errorf("file %s appears twice", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, maxBundleFile+1))
		rc.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f.Name, err) // includes a CRC mismatch
		}
		if len(b) > maxBundleFile {
			return nil, nil, fmt.Errorf("%s: larger than %d bytes", f.Name, maxBundleFile)
		}
		files[f.Name], order = b, append(order, f.Name)
	}
	return files, order, nil
}

// canonicalArchive rebuilds the archive from its files the way Write
// writes it and requires the very same bytes: a change in a header, a
// timestamp or padding, which no digest covers, fails here.
func canonicalArchive(r io.ReaderAt, size int64, files map[string][]byte, order []string) error {
	fs := make([]bundleFile, 0, len(order))
	for _, n := range order {
		fs = append(fs, bundleFile{n, files[n]})
	}
	want, err := writeArchive(fs)
	if err != nil {
		return err
	}
	got := make([]byte, size)
	if _, err := r.ReadAt(got, 0); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if !bytes.Equal(got, want) {
		return errors.New("the archive's bytes differ from the canonical archive of its files (a header, order or padding was changed)")
	}
	return nil
}

func presence(files map[string][]byte, names ...string) error {
	var missing []string
	for _, n := range names {
		if _, ok := files[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	return nil
}

func checkSignature(files map[string][]byte, trusted ed25519.PublicKey) (ed25519.PublicKey, error) {
	pub, err := base64Line(files[PublicKeyFile], ed25519.PublicKeySize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", PublicKeyFile, err)
	}
	sig, err := base64Line(files[SignatureFile], ed25519.SignatureSize)
	if err != nil {
		return pub, fmt.Errorf("%s: %w", SignatureFile, err)
	}
	if !ed25519.Verify(pub, files[ManifestFile], sig) {
		return pub, fmt.Errorf("the signature does not verify over %s with the key in %s", ManifestFile, PublicKeyFile)
	}
	return pub, nil
}

// base64Line decodes a file that must be exactly one line of standard
// base64 of n bytes: no digest covers these two files, so any other byte,
// even whitespace, must fail.
func base64Line(b []byte, n int) ([]byte, error) {
	v, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(string(b), "\n"))
	if err != nil || len(v) != n || base64.StdEncoding.EncodeToString(v)+"\n" != string(b) {
		return nil, fmt.Errorf("not exactly one line of base64 of %d bytes", n)
	}
	return v, nil
}

func trustedErr(pub, trusted ed25519.PublicKey) error {
	if pub == nil || !trusted.Equal(pub) {
		return fmt.Errorf("the bundle is signed by key %s, not by the trusted key %s", notary.KeyID(pub), notary.KeyID(trusted))
	}
	return nil
}

func keyIDErr(pub ed25519.PublicKey, id string) error {
	if pub == nil || notary.KeyID(pub) != id {
		return fmt.Errorf("manifest names key %s, the bundle carries %s", id, notary.KeyID(pub))
	}
	return nil
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// checkDigests requires the files other than manifest, signature and key to
// be exactly the manifest's, each with its digest.
func checkDigests(files map[string][]byte, m Manifest) error {
	var bad []string
	for name, want := range m.Files {
		b, ok := files[name]
		if !ok {
			bad = append(bad, name+" missing")
			continue
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != want {
			bad = append(bad, name+" does not match its SHA-256")
		}
	}
	for name := range files {
		if _, listed := m.Files[name]; !listed && name != ManifestFile && name != SignatureFile && name != PublicKeyFile {
			bad = append(bad, name+" is not in the manifest")
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// checkModels restores every model from its JSON, renders its CSV again and
// compares, and checks the manifest's counts.
func checkModels(rep *Report, files map[string][]byte) {
	m := rep.Manifest
	names := make([]string, 0, len(m.Models))
	for n := range m.Models {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if m.Format == BundleFormatRows {
			rep.add("model "+name, checkRowsModel(name, m, files))
			continue
		}
		rep.add("model "+name, checkModel(name, m, files))
	}
}

func checkModel(name string, m Manifest, files map[string][]byte) error {
	md, err := models.NewModel(name)
	if err != nil {
		return err
	}
	if err := md.Restore(files[bundleModelDir+name+".json"]); err != nil {
		return err
	}
	t := md.Rows()
	if got := m.Models[name].Rows; got != len(t.Rows) {
		return fmt.Errorf("manifest says %d rows, the model has %d", got, len(t.Rows))
	}
	loc, err := manifestZone(m)
	if err != nil {
		return err
	}
	cs, err := renderCSV(t, loc)
	if err != nil {
		return err
	}
	if !bytes.Equal(cs, files[bundleModelDir+name+".csv"]) {
		return fmt.Errorf("%s.csv is not the table of %s.json", name, name)
	}
	if v, ok := md.(*models.Violations); ok && v.Count() != m.Violations {
		return fmt.Errorf("manifest says %d violations, the audit holds %d", m.Violations, v.Count())
	}
	return nil
}

// VerifyAgainst verifies the bundle offline (Verify), then against
// the live log: it requires the manifest's as_of on its clock to resolve to
// exactly its position and recorded_at in the log (a position 0 bundle
// only where the log held no event as of that instant), recomputes the
// Merkle root of the log up to the position and every read model as of the
// instant by a fold from the first event (not from stored snapshots),
// requires the same root, tree size and file bytes, and recounts the
// violations.
func VerifyAgainst(ctx context.Context, store projections.LogStore, r io.ReaderAt, size int64, trustedKey ed25519.PublicKey) (Report, error) {
	rep, _ := Verify(r, size, trustedKey)
	rep.NotChecked = slicesDeleteMerkle(rep.NotChecked)
	m := rep.Manifest
	if m.Format == "" && len(m.Models) == 0 {
		return rep, rep.err() // the manifest did not read: nothing to check against the log
	}
	rep.add("as_of against the log", bindAsOf(ctx, store, m))
	if m.Position == 0 {
		return rep, rep.err() // the ms were required empty offline
	}
	n, root, err := treeAt(ctx, store, m.Position)
	if err == nil && (n != m.TreeSize || root.String() != m.MerkleRoot) {
		err = fmt.Errorf("the log gives root %s at tree size %d, the bundle %s at %d", root, n, m.MerkleRoot, m.TreeSize)
	}
	rep.add("merkle root against the log", err)
	count, err := refold(ctx, store, m)
	rep.add("read ms against the log", err)
	if count >= 0 {
		var cerr error
		if count != m.Violations {
			cerr = fmt.Errorf("the log gives %d violations, the bundle says %d", count, m.Violations)
		}
		rep.add("violations against the log", cerr)
	}
	return rep, rep.err()
}

// bindAsOf resolves the manifest's as_of on its clock in the log, by a
// read of the log alone, and requires the manifest's position and
// recorded_at: a later as_of re-signed over an earlier state, or a
// position chosen to skip the log, fails here. The resolution is the one
// Write makes (QueryAsOf), so a bundle the ledger wrote binds.
func bindAsOf(ctx context.Context, store projections.LogStore, m Manifest) error {
	var T time.Time
	if m.Clock != projections.ClockPosition {
		t, err := time.Parse(time.RFC3339Nano, m.AsOf)
		if err != nil {
			return fmt.Errorf("as_of %q is not an RFC 3339 instant", m.AsOf)
		}
		T = t
	}
	var resolved, head uint64
	var recorded, lastRecorded, lastOccurred time.Time
	for e, err := range store.Read(ctx, events.Query{}) {
		if err != nil {
			return err
		}
		head, lastRecorded = e.Position, e.RecordedAt
		if e.Position == m.Position {
			recorded = e.RecordedAt
		}
		switch m.Clock {
		case projections.ClockRecorded:
			if !e.RecordedAt.After(T) {
				resolved = e.Position
			}
		case projections.ClockBusiness:
			if models.IsBusiness(&e) && e.OccurredAt.After(lastOccurred) {
				lastOccurred = e.OccurredAt
			}
			if models.IsBusiness(&e) && !e.OccurredAt.After(T) {
				resolved = e.Position
			}
		}
	}
	switch {
	case m.Clock == projections.ClockPosition:
		resolved = m.Position
	case head == 0:
	// An as_of after the last event is a quiet ledger's "now", as the
	// query allows; one still in the future cannot have been resolved.
	case m.Clock == projections.ClockRecorded && T.After(lastRecorded) && T.After(time.Now()):
		return fmt.Errorf("as_of %s is in the future and after the last event the log recorded (%s)", m.AsOf, lastRecorded.UTC().Format(time.RFC3339Nano))
	case m.Clock == projections.ClockBusiness && T.After(lastOccurred) && T.After(time.Now()):
		return fmt.Errorf("as_of %s is in the future and after the last business instant in the log (%s)", m.AsOf, lastOccurred.UTC().Format(time.RFC3339Nano))
	}
	if resolved != m.Position {
		if m.Position == 0 {
			return fmt.Errorf("position 0 claims an empty log as of %s %s, the log holds events up to position %d by then", m.Clock, m.AsOf, resolved)
		}
		return fmt.Errorf("as_of %s %s resolves to position %d in the log, the bundle says %d", m.Clock, m.AsOf, resolved, m.Position)
	}
	if m.Position == 0 {
		if !m.RecordedAt.IsZero() {
			return errors.New("position 0 with a recorded_at: no event was recorded")
		}
		return nil
	}
	if m.Position > head || recorded.IsZero() {
		return fmt.Errorf("the log holds no event at position %d (head %d)", m.Position, head)
	}
	if !recorded.Equal(m.RecordedAt) {
		return fmt.Errorf("the log recorded position %d at %s, the bundle says %s", m.Position,
			recorded.UTC().Format(time.RFC3339Nano), m.RecordedAt.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// emptyModels requires the files of a position 0 bundle to be the empty
// read models: a log with no event has nothing else to show.
func emptyModels(m Manifest) error {
	ms, err := models.NewModels()
	if err != nil {
		return err
	}
	if err := sameFiles(ms, m); err != nil {
		return err
	}
	if m.Violations != 0 {
		return fmt.Errorf("an empty log has 0 violations, the bundle says %d", m.Violations)
	}
	return nil
}

func slicesDeleteMerkle(s []string) []string {
	out := s[:0]
	for _, x := range s {
		if !strings.HasPrefix(x, "merkle root") {
			out = append(out, x)
		}
	}
	return out
}

// refold rebuilds every built-in model (not only those the manifest
// names) as of the manifest's instant from the first event, compares
// digests, and returns the violations the log gives (-1 if the fold
// failed).
func refold(ctx context.Context, store projections.LogStore, m Manifest) (int, error) {
	at, err := projections.ParseAsOf(string(m.Clock), m.AsOf)
	if err != nil {
		return -1, err
	}
	ms, err := models.NewModels()
	if err != nil {
		return -1, err
	}
	var keep projections.Filter
	if at.Clock == projections.ClockBusiness {
		keep = projections.BusinessFilter(at.Time)
	}
	if _, _, err := projections.Fold(ctx, store, events.Query{To: m.Position}, ms, nil, keep); err != nil {
		return -1, err
	}
	count := -1
	for _, md := range ms {
		if v, ok := md.(*models.Violations); ok {
			count = v.Count()
		}
	}
	return count, sameFiles(ms, m)
}

// sameFiles renders models and requires the manifest's digests for every
// file they make.
func sameFiles(ms []models.Model, m Manifest) error {
	var tmp Manifest
	tmp.Models, tmp.Files = map[string]ManifestModel{}, map[string]string{}
	loc, err := manifestZone(m)
	if err != nil {
		return err
	}
	if _, err := modelFiles(ms, &tmp, loc, m.Format); err != nil {
		return err
	}
	var bad []string
	for name, sum := range tmp.Files {
		if m.Files[name] != sum {
			bad = append(bad, name)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("the log gives other contents for %s", strings.Join(bad, ", "))
	}
	return nil
}

// manifestZone loads the zone the manifest says the CSVs' times are in.
func manifestZone(m Manifest) (*time.Location, error) {
	if m.TimeZone == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(m.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("time_zone %q is not an IANA zone: %v", m.TimeZone, err)
	}
	return loc, nil
}

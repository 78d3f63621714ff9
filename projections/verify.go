package projections

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

	"github.com/marketledger/ledger/events"
)

// VerifyBundle checks a bundle offline: the archive reads and is in
// canonical form (so any changed byte anywhere fails), the signature over
// the manifest verifies with the bundle's key, that key is trustedKey when
// one is given, every file's SHA-256 matches the manifest and no file is
// missing or extra, every model file restores as its model and its CSV is
// that model's table, and the row and violation counts match. It returns
// the report and an error naming every check that failed. What it cannot
// check offline (the Merkle root against the log) is listed in
// Report.NotChecked, never reported as verified.
func VerifyBundle(r io.ReaderAt, size int64, trustedKey ed25519.PublicKey) (Report, error) {
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
		rep.add("signed by the trusted key", trustedErr(pub, trustedKey))
	} else {
		rep.NotChecked = append(rep.NotChecked, "origin of the key: no trusted key was given, so the signature proves the bundle is intact, not who made it")
	}
	if !rep.add("manifest readable", strictJSON(manifest, &rep.Manifest)) {
		return rep, rep.err()
	}
	rep.add("manifest key id", keyIDErr(pub, rep.Manifest.KeyID))
	rep.add("file digests", checkDigests(files, rep.Manifest))
	checkModels(&rep, files)
	rep.NotChecked = append(rep.NotChecked, fmt.Sprintf("merkle root %s at tree size %d against the log: needs the live log (VerifyAgainst)",
		rep.Manifest.MerkleRoot, rep.Manifest.TreeSize))
	return rep, rep.err()
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

// canonicalArchive rebuilds the archive from its files the way WriteBundle
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
		return fmt.Errorf("the bundle is signed by key %s, not by the trusted key %s", KeyID(pub), KeyID(trusted))
	}
	return nil
}

func keyIDErr(pub ed25519.PublicKey, id string) error {
	if pub == nil || KeyID(pub) != id {
		return fmt.Errorf("manifest names key %s, the bundle carries %s", id, KeyID(pub))
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
		rep.add("model "+name, checkModel(name, m, files))
	}
}

func checkModel(name string, m Manifest, files map[string][]byte) error {
	md, err := NewModel(name)
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
	cs, err := renderCSV(t)
	if err != nil {
		return err
	}
	if !bytes.Equal(cs, files[bundleModelDir+name+".csv"]) {
		return fmt.Errorf("%s.csv is not the table of %s.json", name, name)
	}
	if v, ok := md.(*Violations); ok && v.Count() != m.Violations {
		return fmt.Errorf("manifest says %d violations, the audit holds %d", m.Violations, v.Count())
	}
	return nil
}

// VerifyAgainst verifies the bundle offline (VerifyBundle), then against
// the live log: it recomputes the Merkle root of the log up to the
// manifest's position and every read model as of the manifest's instant by
// a fold from the first event (not from stored snapshots), and requires the
// same root, tree size and file bytes.
func VerifyAgainst(ctx context.Context, store LogStore, r io.ReaderAt, size int64, trustedKey ed25519.PublicKey) (Report, error) {
	rep, _ := VerifyBundle(r, size, trustedKey)
	rep.NotChecked = slicesDeleteMerkle(rep.NotChecked)
	m := rep.Manifest
	if m.Position == 0 {
		return rep, rep.err()
	}
	n, root, err := treeAt(ctx, store, m.Position)
	if err == nil && (n != m.TreeSize || root.String() != m.MerkleRoot) {
		err = fmt.Errorf("the log gives root %s at tree size %d, the bundle %s at %d", root, n, m.MerkleRoot, m.TreeSize)
	}
	rep.add("merkle root against the log", err)
	rep.add("read models against the log", refold(ctx, store, m))
	return rep, rep.err()
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

// refold rebuilds every model of the manifest as of its instant from the
// first event and compares digests.
func refold(ctx context.Context, store LogStore, m Manifest) error {
	at, err := ParseAsOf(string(m.Clock), m.AsOf)
	if err != nil {
		return err
	}
	models, err := NewModels(sortedKeys(m.Models)...)
	if err != nil {
		return err
	}
	var keep Filter
	if at.Clock == ClockBusiness {
		keep = BusinessFilter(at.Time)
	}
	if _, _, err := Fold(ctx, store, events.Query{To: m.Position}, models, nil, keep); err != nil {
		return err
	}
	var tmp Manifest
	tmp.Models, tmp.Files = map[string]ManifestModel{}, map[string]string{}
	if _, err := modelFiles(models, &tmp); err != nil {
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

package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/bundle"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/projections/notary"
)

// rogueAt is when the order written around the fence was decided: after the
// fixture freeze's instant, by a writer that knew of the freeze.
var rogueAt = time.Date(2023, 10, 4, 17, 30, 0, 0, wib)

// auditedLedger is the fixture log plus one order the freeze blocks, a
// bundle of it as of business 17:30 signed with the ledger's notary key,
// and that key: what a marketplace under audit holds.
func auditedLedger(t *testing.T) (dir, bundlePath string, key ed25519.PrivateKey) {
	t.Helper()
	ctx := context.Background()
	dir = fixtureDir(t)
	n, err := openNode(ctx, &globals{dataDir: dir}, nodeConfig{role: auth.RoleOperator, port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	o := contracts.OrderPlaced{OrderID: "o-rogue", BuyerID: "b-9", ListingID: "l-1", SellerID: "s-1", Quantity: 1, UnitPrice: idr(15000000),
		Total: idr(15000000), Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID", Category: "fashion", Origin: contracts.OriginDomestic}
	e, err := contracts.NewEvent(o, "o-rogue", rogueAt)
	if err != nil {
		t.Fatal(err)
	}
	e.PolicyPosition = 2 // the freeze's position: the writer knew of it
	if _, err := n.store.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: "o-rogue"}, Events: []events.Event{e}}); err != nil {
		t.Fatal(err)
	}
	if key, err = notary.LoadOrCreateKey(dir); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := bundle.Write(ctx, n.store, &buf, projections.AtBusiness(rogueAt), key); err != nil {
		t.Fatal(err)
	}
	bundlePath = filepath.Join(t.TempDir(), "bundle.zip")
	if err := os.WriteFile(bundlePath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, bundlePath, key
}

// resign rewrites the bundle at path with change applied to its manifest
// and files, signed again with key and zipped canonically: a bundle only
// the holder of the notary key can make.
func resign(t *testing.T, path string, key ed25519.PrivateKey, change func(m *bundle.Manifest, files map[string][]byte)) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		files[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	var m bundle.Manifest
	if err := json.Unmarshal(files[bundle.ManifestFile], &m); err != nil {
		t.Fatal(err)
	}
	change(&m, files)
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	files[bundle.ManifestFile] = manifest
	files[bundle.SignatureFile] = []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(key, manifest)) + "\n")
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	for _, n := range names {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(files[n])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	forged := filepath.Join(t.TempDir(), "forged.zip")
	if err := os.WriteFile(forged, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return forged
}

func dropModel(m *bundle.Manifest, files map[string][]byte, name string) {
	delete(m.Models, name)
	for _, ext := range []string{".json", ".csv"} {
		delete(m.Files, "models/"+name+ext)
		delete(files, "models/"+name+ext)
	}
}

// TestVerifyRefusesResignedClaims re-signs the bundle of an audited
// ledger with its own notary key after changing what it claims, and
// requires `ledger verify --key --against` to refuse every one, and the
// offline verification those it can see without the log.
func TestVerifyRefusesResignedClaims(t *testing.T) {
	ctx := context.Background()
	dir, bundlePath, key := auditedLedger(t)
	keyHex := hex.EncodeToString(key.Public().(ed25519.PublicKey))
	var out bytes.Buffer
	if err := runVerify(ctx, &globals{dataDir: t.TempDir()}, &out, bundlePath, dir, keyHex); err != nil {
		t.Fatalf("the genuine bundle: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "verified") {
		t.Errorf("the genuine bundle is not reported verified:\n%s", out.String())
	}
	tests := []struct {
		name    string
		offline bool // refused without the log too
		change  func(m *bundle.Manifest, files map[string][]byte)
	}{
		// A later as_of in the past lands on the same head (nothing came
		// after the rogue order) and is true; one in the future is not.
		{"an as_of in the future", false, func(m *bundle.Manifest, _ map[string][]byte) {
			m.AsOf = time.Now().Add(time.Hour).Format(time.RFC3339Nano)
		}},
		{"an earlier as_of", false, func(m *bundle.Manifest, _ map[string][]byte) {
			m.AsOf = rogueAt.Add(-time.Minute).Format(time.RFC3339Nano)
		}},
		{"the violations model left out, 0 violations", true, func(m *bundle.Manifest, files map[string][]byte) {
			dropModel(m, files, models.ModelViolations)
			m.Violations = 0
		}},
		{"the balances model left out", true, func(m *bundle.Manifest, files map[string][]byte) {
			dropModel(m, files, models.ModelBalances)
		}},
		{"violations count and model edited", false, func(m *bundle.Manifest, files map[string][]byte) {
			empty := models.NewViolations()
			js, _ := empty.Snapshot()
			files["models/violations.json"] = js
			files["models/violations.csv"] = []byte("position,event_id,type,operation,aggregate_id,rule_id,legal_basis,kinds,occurred_at,recorded_at,policy_position\n")
			for _, n := range []string{"models/violations.json", "models/violations.csv"} {
				m.Files[n] = sha(files[n])
			}
			m.Models[models.ModelViolations] = bundle.ManifestModel{Version: m.Models[models.ModelViolations].Version}
			m.Violations = 0
		}},
		{"position 0", true, func(m *bundle.Manifest, _ map[string][]byte) {
			m.Position, m.TreeSize, m.MerkleRoot, m.RecordedAt = 0, 0, "", time.Time{}
		}},
		{"position 0, tree kept", false, func(m *bundle.Manifest, _ map[string][]byte) {
			m.Position = 0
		}},
		{"recorded_at moved", false, func(m *bundle.Manifest, _ map[string][]byte) {
			m.RecordedAt = m.RecordedAt.Add(time.Hour)
		}},
		{"clock changed", false, func(m *bundle.Manifest, _ map[string][]byte) {
			m.Clock = projections.ClockRecorded
		}},
	}
	for _, tc := range tests {
		forged := resign(t, bundlePath, key, tc.change)
		out.Reset()
		err := runVerify(ctx, &globals{dataDir: t.TempDir()}, &out, forged, dir, keyHex)
		if err == nil || strings.Contains(out.String(), "verified") {
			t.Errorf("%s: verify --key --against accepted it: %v\n%s", tc.name, err, out.String())
		} else if exitCode(err) != exitFailure {
			t.Errorf("%s: exit status %d, want %d: %v", tc.name, exitCode(err), exitFailure, err)
		}
		if tc.offline {
			out.Reset()
			if err := runVerify(ctx, &globals{dataDir: t.TempDir()}, &out, forged, "", keyHex); err == nil {
				t.Errorf("%s: verify --key accepted it offline\n%s", tc.name, out.String())
			}
		}
	}
}

// TestVerifyWithoutKeyIsNotVerified: a bundle whose signature verifies
// with the key it carries is intact, not trusted; without --key verify
// says so and exits with its own status, offline and against the log.
func TestVerifyWithoutKeyIsNotVerified(t *testing.T) {
	ctx := context.Background()
	dir, bundlePath, _ := auditedLedger(t)
	for _, against := range []string{"", dir} {
		var out bytes.Buffer
		err := runVerify(ctx, &globals{dataDir: t.TempDir()}, &out, bundlePath, against, "")
		if err == nil || exitCode(err) != exitUntrusted {
			t.Errorf("against %q: %v (exit %d), want exit %d\n%s", against, err, exitCode(err), exitUntrusted, out.String())
			continue
		}
		msg := out.String() + err.Error()
		if !strings.Contains(msg, "signature valid but signer not trusted: pass --key") || strings.Contains(out.String(), ": verified") {
			t.Errorf("against %q: %v\n%s", against, err, out.String())
		}
	}
}

func sha(b []byte) string {
	s := sha256Sum(b)
	return hex.EncodeToString(s[:])
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// notaryKeyHex is the public key of the notary of the ledger in dir, hex:
// what a regulator is given out of band to pass as --key.
func notaryKeyHex(t testing.TB, dir string) string {
	t.Helper()
	key, err := notary.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(key.Public().(ed25519.PublicKey))
}

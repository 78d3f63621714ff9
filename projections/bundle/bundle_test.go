package bundle

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/internal/logtest"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/projections/notary"
)

// bundleAt is the business instant of the test bundle: after the rogue
// order.
var bundleAt = logtest.FreezeAt.Add(2 * time.Minute)

func writeTestBundle(t *testing.T) (*logtest.Env, []byte, ed25519.PrivateKey) {
	t.Helper()
	env := startEnv(t)
	g := logtest.Generate(t, env.Store, logtest.Config{Seed: 41, Listings: 8, Flows: 80})
	// Decided after 17:00 by a writer that knew of the freeze.
	logtest.AppendViolationUnder(t, env.Store, "o-rogue", logtest.FreezeAt.Add(time.Minute), g.Policy)
	runEngine(t, env)
	key, _ := notary.LoadOrCreateKey(t.TempDir())
	var b bytes.Buffer
	at := projections.AtBusiness(bundleAt)
	if err := Write(context.Background(), env.Store, &b, at, key); err != nil {
		t.Fatal(err)
	}
	return env, b.Bytes(), key
}

func TestBundleVerifies(t *testing.T) {
	env, b, key := writeTestBundle(t)
	pub := key.Public().(ed25519.PublicKey)
	rep, err := Verify(bytes.NewReader(b), int64(len(b)), pub)
	if err != nil || !rep.OK() {
		t.Fatalf("%v %+v", err, rep.Checks)
	}
	if rep.Manifest.Violations != 1 || rep.Manifest.Clock != projections.ClockBusiness || len(rep.Manifest.Models) != len(models.ModelNames()) {
		t.Errorf("manifest %+v", rep.Manifest)
	}
	if len(rep.NotChecked) == 0 || !strings.Contains(strings.Join(rep.NotChecked, " "), "merkle root") {
		t.Errorf("offline verification claims what it cannot check: %v", rep.NotChecked)
	}
	rep, err = VerifyAgainst(context.Background(), env.Store, bytes.NewReader(b), int64(len(b)), pub)
	if err != nil || !rep.OK() {
		t.Fatalf("against the log: %v %+v", err, rep.Checks)
	}
	// The same state and key give the same bytes.
	var again bytes.Buffer
	if err := Write(context.Background(), env.Store, &again, projections.AtBusiness(bundleAt), key); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), b) {
		t.Error("bundle is not reproducible")
	}
	// Without a trusted key the origin is reported as not checked.
	rep, err = Verify(bytes.NewReader(b), int64(len(b)), nil)
	if err != nil || !strings.Contains(strings.Join(rep.NotChecked, " "), "no trusted key") {
		t.Errorf("%v %v", err, rep.NotChecked)
	}
}

// TestBundleTampering changes one byte of every file inside the bundle (at
// sampled positions, re-zipped so the archive itself is well formed), one
// byte of the raw archive at sampled offsets, truncates it, and re-signs it
// with another key: every one must fail.
func TestBundleTampering(t *testing.T) {
	_, b, key := writeTestBundle(t)
	pub := key.Public().(ed25519.PublicKey)
	fails := func(what string, data []byte) {
		t.Helper()
		if _, err := Verify(bytes.NewReader(data), int64(len(data)), pub); err == nil {
			t.Fatalf("%s: verified", what)
		}
	}
	files := unzip(t, b)
	rng := rand.New(rand.NewPCG(4, 4))
	for name, data := range files {
		for _, i := range samplePositions(rng, len(data), 6) {
			changed := map[string][]byte{}
			for n, d := range files {
				changed[n] = d
			}
			c := bytes.Clone(data)
			c[i] ^= 1 << rng.IntN(8)
			changed[name] = c
			fails(name+" byte "+strconv.Itoa(i), rezip(t, changed))
		}
	}
	for _, i := range samplePositions(rng, len(b), 300) {
		c := bytes.Clone(b)
		c[i] ^= 1 << rng.IntN(8)
		fails("archive byte "+strconv.Itoa(i), c)
	}
	for _, n := range []int{0, 1, len(b) / 2, len(b) - 22, len(b) - 1} {
		fails("truncated to "+strconv.Itoa(n), b[:n])
	}
	// The same contents signed by another key.
	_, other, _ := ed25519.GenerateKey(crand.Reader)
	forged := map[string][]byte{}
	for n, d := range files {
		forged[n] = d
	}
	forged[SignatureFile] = []byte(b64(ed25519.Sign(other, files[ManifestFile])) + "\n")
	forged[PublicKeyFile] = []byte(b64(other.Public().(ed25519.PublicKey)) + "\n")
	fb := rezip(t, forged)
	_, err := Verify(bytes.NewReader(fb), int64(len(fb)), pub)
	if !errors.Is(err, events.ErrIntegrity) || !strings.Contains(err.Error(), "not by the trusted key") {
		t.Errorf("bundle signed by another key: %v", err)
	}
}

func samplePositions(rng *rand.Rand, n, k int) []int {
	if n == 0 {
		return nil
	}
	out := []int{0, n - 1}
	for range k {
		out = append(out, rng.IntN(n))
	}
	return out
}

func unzip(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		out[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	return out
}

func rezip(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var fs []bundleFile
	for n, d := range files {
		fs = append(fs, bundleFile{n, d})
	}
	b, err := writeArchive(fs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

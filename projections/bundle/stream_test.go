package bundle

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/internal/logtest"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/projections/notary"
)

// indexEnv is a generated log with a violation, the engine's snapshots and
// an as-of index built over it.
func indexEnv(t *testing.T) (*logtest.Env, *projections.RowQuerier, ed25519.PrivateKey) {
	t.Helper()
	env := startEnv(t)
	g := logtest.Generate(t, env.Store, logtest.Config{Seed: 43, Listings: 8, Flows: 150, Workers: 8})
	logtest.AppendViolationUnder(t, env.Store, "o-rogue", logtest.FreezeAt.Add(time.Minute), g.Policy)
	runEngine(t, env)
	ctx := context.Background()
	ix, err := projections.OpenIndex(filepath.Join(t.TempDir(), "asof.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	if err := ix.Build(ctx, env.Store, 0); err != nil {
		t.Fatal(err)
	}
	key, _ := notary.LoadOrCreateKey(t.TempDir())
	return env, projections.NewRowQuerier(ctx, ix, env.Store), key
}

// TestBundleFromIndexEqualsSnapshotBundle writes the same instants both
// ways, from the models' whole-state snapshots (Write, v1) and row by row
// from the as-of index (WriteFromIndex, v2), and requires the same point,
// root, counts and CSV bytes, rows equal to the v1 models' rows, and the v2
// bundle to verify offline and against the log.
func TestBundleFromIndexEqualsSnapshotBundle(t *testing.T) {
	env, rq, key := indexEnv(t)
	ctx := context.Background()
	head, err := env.Store.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Positions and instants of events (a position the log holds no event
	// at does not bind: see bindAsOf).
	var third, last uint64
	var mid time.Time
	for e, err := range env.Store.Read(ctx, events.Query{To: head}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Position <= head/3 {
			third = e.Position
		}
		if e.Position <= head/2 {
			mid = e.RecordedAt
		}
		last = e.Position
	}
	ats := []projections.AsOf{
		projections.AtPosition(third),
		projections.AtPosition(last),
		projections.AtRecorded(mid),
		projections.AtBusiness(bundleAt),
		projections.AtBusiness(logtest.DayStart.Add(3 * time.Hour)),
		projections.AtBusiness(logtest.FreezeAt),
	}
	pub := key.Public().(ed25519.PublicKey)
	for _, at := range ats {
		t.Run(at.String(), func(t *testing.T) {
			var v1, v2 bytes.Buffer
			if err := Write(ctx, env.Store, &v1, at, key); err != nil {
				t.Fatal(err)
			}
			if err := WriteFromIndex(ctx, env.Store, rq, &v2, at, key); err != nil {
				t.Fatal(err)
			}
			r1, f1 := readBundle(t, v1.Bytes(), pub)
			r2, f2 := readBundle(t, v2.Bytes(), pub)
			m1, m2 := r1.Manifest, r2.Manifest
			if m2.Format != BundleFormatRows {
				t.Errorf("format %q", m2.Format)
			}
			m1.Format, m2.Format, m1.Files, m2.Files = "", "", nil, nil
			g1, _ := json.Marshal(m1)
			g2, _ := json.Marshal(m2)
			if !bytes.Equal(g1, g2) {
				t.Errorf("manifests differ:\nsnapshot %s\nindex    %s", g1, g2)
			}
			for _, name := range models.ModelNames() {
				csv := bundleModelDir + name + ".csv"
				if !bytes.Equal(f1[csv], f2[csv]) {
					t.Errorf("%s differs", csv)
				}
				md, _ := models.NewModel(name)
				if err := md.Restore(f1[bundleModelDir+name+".json"]); err != nil {
					t.Fatal(err)
				}
				var want []byte
				k := md.(models.Keyed)
				for _, key := range k.RowKeys() {
					body, _ := k.Row(key)
					want = appendRowLine(want, key, body)
				}
				if got := f2[bundleModelDir+name+rowsSuffix]; !bytes.Equal(got, want) {
					t.Errorf("%s: the index's rows differ from the snapshot's:\n%s", name, firstDiff(got, want))
				}
			}
			rep, err := VerifyAgainst(ctx, env.Store, bytes.NewReader(v2.Bytes()), int64(v2.Len()), pub)
			if err != nil || !rep.OK() || !rep.Trusted {
				t.Errorf("the index's bundle does not verify against the log: %v %+v", err, rep.Checks)
			}
		})
	}
}

// TestBundleFromIndexTampered re-signs a v2 bundle whose rows were changed
// (with the key, as an insider would): the CSV or the fold catches it.
func TestBundleFromIndexTampered(t *testing.T) {
	env, rq, key := indexEnv(t)
	ctx := context.Background()
	var b bytes.Buffer
	if err := WriteFromIndex(ctx, env.Store, rq, &b, projections.AtBusiness(bundleAt), key); err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	_, files := readBundle(t, b.Bytes(), pub)
	name := bundleModelDir + models.ModelOrders + rowsSuffix
	changed := strings.Replace(string(files[name]), `"status":"`, `"status":"x`, 1)
	if changed == string(files[name]) {
		t.Fatal("no order row to change")
	}
	files[name] = []byte(changed)
	bad := resignFiles(t, files, key)
	rep, err := Verify(bytes.NewReader(bad), int64(len(bad)), pub)
	if err == nil || rep.OK() {
		t.Fatalf("a changed row verifies offline: %+v", rep.Checks)
	}
}

// TestBundleFromIndexBoundedHeap writes a bundle from the index and
// requires the live heap while writing to stay within a bound that does
// not depend on the log (a page of rows and the zip's buffers), sampling it
// on every write.
func TestBundleFromIndexBoundedHeap(t *testing.T) {
	env, rq, key := indexEnv(t)
	ctx := context.Background()
	peak, base := heapPeak(func(w io.Writer) error {
		return WriteFromIndex(ctx, env.Store, rq, w, projections.AtBusiness(bundleAt), key)
	})
	t.Logf("heap before %d KiB, peak while writing %d KiB", base>>10, peak>>10)
	if grew := peak - min(peak, base); grew > 32<<20 {
		t.Errorf("the heap grew by %d MiB while writing a bundle from the index", grew>>20)
	}
}

// heapPeak runs write against a writer that samples the live heap (as
// of the last collection) on every write and every millisecond, and
// returns the peak and the live heap before.
func heapPeak(write func(io.Writer) error) (peak, base uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	sample := func() uint64 { metrics.Read(s); return s[0].Value.Uint64() }
	runtime.GC()
	base = sample()
	hw := &heapWriter{sample: sample}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // between writes too: a path that builds everything first
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				hw.Write(nil)
			}
		}
	}()
	_ = write(hw)
	close(done)
	wg.Wait()
	return max(hw.peak, sample()), base
}

type heapWriter struct {
	mu     sync.Mutex
	sample func() uint64
	peak   uint64
}

func (h *heapWriter) Write(p []byte) (int, error) {
	h.mu.Lock()
	h.peak = max(h.peak, h.sample())
	h.mu.Unlock()
	return len(p), nil
}

func readBundle(t *testing.T, b []byte, pub ed25519.PublicKey) (Report, map[string][]byte) {
	t.Helper()
	rep, err := Verify(bytes.NewReader(b), int64(len(b)), pub)
	if err != nil || !rep.OK() {
		t.Fatalf("offline: %v %+v", err, rep.Checks)
	}
	files, _, err := readArchive(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return rep, files
}

// resignFiles recomputes the digests, re-signs the manifest and writes the
// archive canonically.
func resignFiles(t *testing.T, files map[string][]byte, key ed25519.PrivateKey) []byte {
	t.Helper()
	var m Manifest
	if err := json.Unmarshal(files[ManifestFile], &m); err != nil {
		t.Fatal(err)
	}
	var fs []bundleFile
	for name, data := range files {
		if strings.HasPrefix(name, bundleModelDir) {
			m.Files[name] = sha256Hex(data)
			fs = append(fs, bundleFile{name, data})
		}
	}
	manifest, _ := json.MarshalIndent(m, "", "  ")
	fs = append(fs, bundleFile{ManifestFile, manifest},
		bundleFile{SignatureFile, []byte(b64(ed25519.Sign(key, manifest)) + "\n")},
		bundleFile{PublicKeyFile, files[PublicKeyFile]})
	out, err := writeArchive(fs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return "index    " + g[i] + "\nsnapshot " + w[i]
		}
	}
	return "lengths differ"
}

func sha256Hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

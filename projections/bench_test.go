package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/internal/logtest"
	"github.com/marketledger/ledger/projections/models"
)

// benchEvents is the log size of BenchmarkRebuildAndAsOf: LEDGER_BENCH_EVENTS,
// 100,000 by default. For a million:
//
//	LEDGER_BENCH_EVENTS=1000000 go test -run '^$' -bench RebuildAndAsOf -benchtime 1x -timeout 60m
func benchEvents() int {
	if n, err := strconv.Atoi(os.Getenv("LEDGER_BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// BenchmarkRebuildAndAsOf measures, on one log in one run: a full rebuild
// of every read model against a raw ordered-consumer read of the same
// stream, the latency of as-of queries at random business instants, and the
// peak RSS; then it builds the as-of index (ADR 0019) and measures point
// queries on all three clocks and a listing of every row from it. It prints
// the figures and one BENCH_JSON line.
func BenchmarkRebuildAndAsOf(b *testing.B) {
	n := benchEvents()
	env, count := benchLog(b, n)
	ctx := context.Background()
	headPos := head(b, env)
	fmt.Printf("log of %d events (positions %d), peak RSS so far %d MiB\n", count, headPos, vmHWM()>>10)
	// The snapshot path (the engine's as-of snapshots, ADR 0007) is the
	// comparison at 100k; above benchSnapshotPathMax events it costs more
	// time and memory than the run is about, and is skipped.
	snapshotPath := n <= benchSnapshotPathMax
	var build time.Duration
	if snapshotPath {
		eng, err := NewEngine(ctx, env.JS, EngineConfig{Models: mustModels(b), SnapshotEvery: benchSnapshotEvery})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := eng.Start(ctx); err != nil {
			b.Fatal(err)
		}
		// The engine folds the whole log and stores an as-of snapshot of every
		// model each benchSnapshotEvery positions: allow a second per 500 (a
		// bound against a hang, not a target: at 100k it took 49 s with a
		// load average of 12, and a second per 2,000 failed the bench).
		waitHeadWithin(b, env, eng, max(60*time.Second, time.Duration(n/500)*time.Second))
		build = time.Since(t0)
		eng.Stop()
	}
	b.ResetTimer()
	for range b.N {
		raw := rawRead(b, env.JS)
		t0 := time.Now()
		models := mustModels(b)
		if err := Rebuild(ctx, env.Store, headPos, models); err != nil {
			b.Fatal(err)
		}
		rebuild := time.Since(t0)
		fmt.Printf("raw ordered read %s; rebuild of %d models %s; peak RSS so far %d MiB\n", raw, len(models), rebuild, vmHWM()>>10)
		lat := []time.Duration{0}
		if snapshotPath {
			lat = asOfLatencies(b, env, 50)
		}
		nmodels := len(models)
		// The queries need the final models' keys only: the models go
		// before the index is built, so its memory is its own.
		keys := rowKeys(models)
		models = nil
		runtime.GC()
		debug.FreeOSMemory()
		hwm := vmHWM()
		ix := benchIndex(b, env, headPos, keys)
		hwm = max(hwm, vmHWM()) // the peak since the index build began
		ratio := raw.Seconds() / rebuild.Seconds()
		fmt.Printf("events %d (log positions %d)\nraw ordered-consumer read %s (%.0f msgs/s)\nrebuild of %d models %s (%.0f events/s), ratio %.2f (target >= 0.7)\n",
			count, headPos, raw, float64(headPos)/raw.Seconds(), nmodels, rebuild, float64(count)/rebuild.Seconds(), ratio)
		fmt.Printf("as-of (business clock, all models) p50 %s p99 %s over %d queries (target p99 <= 200ms)\nsnapshot every %d events; engine build with snapshots %s; peak RSS %d MiB\n",
			lat[len(lat)/2], lat[len(lat)*99/100], len(lat), benchSnapshotEvery, build.Round(time.Millisecond), hwm>>10)
		fmt.Printf("as-of index: fold with the index %s (%.2fx the plain fold, target <= 1.5x), file %d MiB, peak RSS %d MiB (anonymous %d MiB), live heap at most %d MiB\n"+
			"point queries (random keys, instants, all clocks) p50 %s p99 %s over %d; by clock p99 %v; methods %v\n"+
			"every row of every model as of a position, from the index: %s\n",
			ix.build, float64(ix.build)/float64(rebuild), ix.fileBytes>>20, ix.rssPeakKiB>>10, ix.anonPeakKiB>>10, ix.heapPeak>>20, ix.pointP50, ix.pointP99, ix.points, ix.byClock, ix.methods, ix.bundle)
		line, _ := json.Marshal(map[string]any{"bench": "projections", "events": count, "positions": headPos,
			"raw_read_ms": raw.Milliseconds(), "rebuild_ms": rebuild.Milliseconds(), "ratio": ratio,
			"rss_hwm_kib":    hwm,
			"index_build_ms": ix.build.Milliseconds(), "index_file_mib": ix.fileBytes >> 20,
			"index_build_rss_hwm_kib": ix.rssPeakKiB, "index_build_rss_anon_kib": ix.anonPeakKiB, "index_build_heap_peak_mib": ix.heapPeak >> 20,
			"asof_point_p50_ms": ms(ix.pointP50), "asof_point_p99_ms": ms(ix.pointP99),
			"asof_point_p99_ms_by_clock": ix.byClock, "asof_point_methods": ix.methods, "asof_bundle_ms": ix.bundle.Milliseconds()})
		if snapshotPath {
			var fields map[string]any
			json.Unmarshal(line, &fields)
			fields["asof_p50_ms"], fields["asof_p99_ms"] = ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100])
			fields["engine_build_ms"] = build.Milliseconds()
			line, _ = json.Marshal(fields)
		}
		fmt.Println("BENCH_JSON " + string(line))
	}
}

// benchSnapshotPathMax is the largest log the bench also measures the
// snapshot path on.
const benchSnapshotPathMax = 200_000

// benchSnapshotEvery is K for the bench: an as-of query replays at most
// about K events of tail (plus the business clock's skew).
const benchSnapshotEvery = 2500

// benchLog returns the bench's log of about n events and how many it
// holds. With LEDGER_BENCH_DATA=dir the log is kept in dir and reused by
// the next run with the same n; a run that finds none writes it there
// first (TestWriteBenchLog writes it alone, so that the generator is not
// in the measured process). Without it, the log is generated in a
// temporary directory.
func benchLog(b testing.TB, n int) (*logtest.Env, int) {
	cfg := logtest.Config{Seed: 99, Listings: 500, Flows: n / 6, Workers: 64}
	if dir := os.Getenv("LEDGER_BENCH_DATA"); dir != "" {
		return logtest.OpenStored(b, dir, cfg, startNode)
	}
	env := startEnv(b)
	g := logtest.Generate(b, env.Store, cfg)
	return env, g.Count
}

// TestWriteBenchLog writes the log of BenchmarkRebuildAndAsOf into
// LEDGER_BENCH_DATA (when set) and nothing else:
//
//	LEDGER_BENCH_DATA=/var/tmp/bench1m LEDGER_BENCH_EVENTS=1000000 go test -run TestWriteBenchLog -timeout 60m
func TestWriteBenchLog(t *testing.T) {
	if os.Getenv("LEDGER_BENCH_DATA") == "" {
		t.Skip("LEDGER_BENCH_DATA names the directory to write the bench's log to")
	}
	_, count := benchLog(t, benchEvents())
	t.Logf("log of %d events in %s", count, os.Getenv("LEDGER_BENCH_DATA"))
}

// benchKeys are one model's name and the keys of its rows.
type benchKeys struct {
	model string
	keys  []string
}

// rowKeys returns the keys of every keyed model's rows.
func rowKeys(ms []models.Model) []benchKeys {
	out := make([]benchKeys, 0, len(ms))
	for _, m := range ms {
		// A model with no rows in this log (the enforcement model: the
		// generator's services refuse nothing) has no key to ask about.
		if keys := m.(models.Keyed).RowKeys(); len(keys) > 0 {
			out = append(out, benchKeys{m.Name(), slices.Clone(keys)})
		}
	}
	return out
}

func mustModels(b testing.TB) []models.Model {
	ms, err := models.NewModels()
	if err != nil {
		b.Fatal(err)
	}
	return ms
}

// rawRead reads the whole stream with an ordered consumer and nothing else.
func rawRead(b *testing.B, js jetstream.JetStream) time.Duration {
	ctx := context.Background()
	t0 := time.Now()
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			b.Fatal(err)
		}
		meta, _ := m.Metadata()
		if meta.NumPending == 0 {
			return time.Since(t0)
		}
	}
}

func asOfLatencies(b *testing.B, env *logtest.Env, k int) []time.Duration {
	ctx := context.Background()
	q := NewQuerier(ctx, env.Store)
	rng := rand.New(rand.NewPCG(7, 7))
	span := 14 * time.Hour
	var out []time.Duration
	for range k {
		at := logtest.DayStart.Add(time.Duration(rng.Int64N(int64(span))))
		t0 := time.Now()
		if _, err := q.State(ctx, AtBusiness(at)); err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(t0))
	}
	slices.Sort(out)
	return out
}

// vmHWM returns the process's peak resident set in KiB (Linux).
func vmHWM() int64 { return procStatus("VmHWM:") }

// procStatus returns a figure of /proc/self/status in KiB (Linux).
func procStatus(name string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == name {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// resetHWM makes the process's peak RSS its current RSS (Linux), so that
// the next vmHWM is the peak of what runs in between.
func resetHWM() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// sampleHeap samples the live heap every 10 ms, and the anonymous
// resident set every 100 ms, until the function it returns is called,
// which returns their peaks (bytes, KiB). The resident set also holds the
// pages of the index's file that bbolt read through its mmap: page cache
// the kernel takes back when it needs to, not the process's own. With
// LEDGER_BENCH_HEAPPROFILE=file it writes a heap profile to file whenever
// the peak has grown by a tenth since the last one: the last is what the
// heap held at (about) its peak.
func sampleHeap() func() (heap uint64, anonKiB int64) {
	type peaks struct {
		heap uint64
		anon int64
	}
	done, peak := make(chan struct{}), make(chan peaks)
	profile := os.Getenv("LEDGER_BENCH_HEAPPROFILE")
	go func() {
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		var top, written uint64
		var anon int64
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			metrics.Read(s)
			top = max(top, s[0].Value.Uint64())
			if i%10 == 0 {
				anon = max(anon, procStatus("RssAnon:"))
			}
			if profile != "" && top > written+written/10 {
				if f, err := os.Create(profile); err == nil {
					_ = pprof.WriteHeapProfile(f)
					f.Close()
				}
				written = top
			}
			select {
			case <-tick.C:
			case <-done:
				peak <- peaks{top, max(anon, procStatus("RssAnon:"))}
				return
			}
		}
	}()
	return func() (uint64, int64) { close(done); p := <-peak; return p.heap, p.anon }
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// indexFigures are the as-of index's figures in one bench run.
type indexFigures struct {
	build              time.Duration
	fileBytes          int64
	pointP50, pointP99 time.Duration
	points             int
	byClock            map[string]float64 // p99 ms
	methods            map[string]int
	bundle             time.Duration
	rssPeakKiB         int64  // the process's peak RSS while the index was built
	anonPeakKiB        int64  // the same, anonymous memory only (not the index's mapped file)
	heapPeak           uint64 // the live heap's peak while the index was built, bytes
}

// benchIndex builds the as-of index over the log, then asks point queries
// for random keys (of the final models, so some are not there yet) at
// random instants on all three clocks, and lists every row of every model
// as of a random position.
func benchIndex(b *testing.B, env *logtest.Env, headPos uint64, final []benchKeys) indexFigures {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "asof.db")
	ix, err := OpenIndex(path)
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	var f indexFigures
	resetHWM()
	stop := sampleHeap()
	t0 := time.Now()
	if err := ix.Build(ctx, env.Store, headPos); err != nil {
		b.Fatal(err)
	}
	f.build = time.Since(t0)
	f.heapPeak, f.anonPeakKiB = stop()
	f.rssPeakKiB = vmHWM()
	if st, err := os.Stat(path); err == nil {
		f.fileBytes = st.Size()
	}
	fmt.Printf("as-of index built in %s, file %d MiB; peak RSS so far %d MiB\n", f.build, f.fileBytes>>20, vmHWM()>>10)
	rq := NewRowQuerier(ctx, ix, env.Store)
	rng := rand.New(rand.NewPCG(11, 11))
	bd, err := NewQuerier(ctx, env.Store).bounds(ctx)
	if err != nil {
		b.Fatal(err)
	}
	clocks := []Clock{ClockPosition, ClockRecorded, ClockBusiness}
	byClock := map[Clock][]time.Duration{}
	f.methods = map[string]int{}
	var all []time.Duration
	const points, warm = 600, 3 // the first query of each clock learns the log's start
	for i := range points + warm {
		m := final[rng.IntN(len(final))]
		key := m.keys[rng.IntN(len(m.keys))]
		var at AsOf
		switch c := clocks[i%3]; c {
		case ClockPosition:
			at = AtPosition(1 + rng.Uint64N(headPos))
		case ClockRecorded:
			span := bd.lastRecorded.Sub(bd.firstRecorded)
			at = AtRecorded(bd.firstRecorded.Add(time.Duration(rng.Int64N(int64(span) + 1))))
		case ClockBusiness:
			at = AtBusiness(logtest.DayStart.Add(time.Duration(rng.Int64N(int64(14 * time.Hour)))))
		}
		t0 := time.Now()
		a, err := rq.Row(ctx, m.model, key, at, 0)
		d := time.Since(t0)
		switch {
		case i < warm:
		case err == nil:
			f.methods[string(at.Clock)+"/"+a.Method]++
		case errors.Is(err, events.ErrNotFound):
			f.methods[string(at.Clock)+"/not_found"]++
		default:
			b.Fatalf("%s %q %s: %v", m.model, key, at, err)
		}
		if i >= warm {
			byClock[at.Clock] = append(byClock[at.Clock], d)
			all = append(all, d)
		}
	}
	slices.Sort(all)
	f.points, f.pointP50, f.pointP99 = len(all), all[len(all)/2], all[len(all)*99/100]
	f.byClock = map[string]float64{}
	for c, ds := range byClock {
		slices.Sort(ds)
		f.byClock[string(c)] = ms(ds[len(ds)*99/100])
	}
	t0 = time.Now()
	at := AtPosition(headPos/2 + rng.Uint64N(headPos/2))
	for _, m := range final {
		after := ""
		for {
			page, err := rq.List(ctx, m.model, "", after, 1000, at, 0)
			if err != nil {
				b.Fatal(err)
			}
			if after = page.Next; after == "" {
				break
			}
		}
	}
	f.bundle = time.Since(t0)
	return f
}

// BenchmarkIndexBuild builds the as-of index alone over the bench's log
// kept in LEDGER_BENCH_DATA, for profiles of the index fold
// (-cpuprofile, -memprofile, LEDGER_BENCH_HEAPPROFILE: see sampleHeap),
// and prints the file's buckets: keys, bytes
// in use and allocated in leaf pages.
func BenchmarkIndexBuild(b *testing.B) {
	if os.Getenv("LEDGER_BENCH_DATA") == "" {
		b.Skip("LEDGER_BENCH_DATA names the directory of the log to build the index over (make bench measures the index in RebuildAndAsOf)")
	}
	env, count := benchLog(b, benchEvents())
	ctx := context.Background()
	headPos := head(b, env)
	b.ResetTimer()
	for range b.N {
		path := filepath.Join(b.TempDir(), "asof.db")
		ix, err := OpenIndex(path)
		if err != nil {
			b.Fatal(err)
		}
		resetHWM()
		stop := sampleHeap()
		t0 := time.Now()
		if err := ix.Build(ctx, env.Store, headPos); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		heap, anon := stop()
		st, _ := os.Stat(path)
		fmt.Printf("index over %d events (positions %d) built in %s, file %d MiB, peak RSS %d MiB (anonymous %d MiB), live heap at most %d MiB\n",
			count, headPos, d.Round(time.Millisecond), st.Size()>>20, vmHWM()>>10, anon>>10, heap>>20)
		ix.printBuckets()
		ix.Close()
	}
}

package bundle

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/internal/logtest"
	"github.com/marketledger/ledger/projections/notary"
)

// BenchmarkBundleFromIndex writes a bundle over a generated log of
// LEDGER_BENCH_EVENTS events (100,000 by default) both ways, as of a
// position and as of a business instant: from the as-of index (v2,
// streamed) and from a fold of the whole models (v1, Write without the
// engine's snapshots), to files, sampling the live heap on every write.
// It prints one BENCH_JSON line.
//
//	cd projections/bundle && LEDGER_BENCH_EVENTS=100000 go test -run '^$' -bench BundleFromIndex -benchtime 1x -timeout 60m
//
// With LEDGER_BENCH_DATA=dir it reads the log kept there (written first
// when missing), as BenchmarkRebuildAndAsOf does.
func BenchmarkBundleFromIndex(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("LEDGER_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	// The same log as the projections bench's; LEDGER_BENCH_DATA keeps it
	// in a data directory that both benches reuse.
	cfg := logtest.Config{Seed: 99, Listings: 500, Flows: n / 6, Workers: 64}
	var env *logtest.Env
	var count int
	if dir := os.Getenv("LEDGER_BENCH_DATA"); dir != "" {
		env, count = logtest.OpenStored(b, dir, cfg, startNode)
	} else {
		env = startEnv(b)
		count = logtest.Generate(b, env.Store, cfg).Count
	}
	ctx := context.Background()
	head, err := env.Store.LastPosition(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ix, err := projections.OpenIndex(filepath.Join(b.TempDir(), "asof.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	t0 := time.Now()
	if err := ix.Build(ctx, env.Store, head); err != nil {
		b.Fatal(err)
	}
	indexBuild := time.Since(t0)
	rq := projections.NewRowQuerier(ctx, ix, env.Store)
	key, _ := notary.LoadOrCreateKey(b.TempDir())
	dir := b.TempDir()
	figures := map[string]any{"bench": "bundle", "events": count, "positions": head, "index_build_ms": indexBuild.Milliseconds()}
	b.ResetTimer()
	for range b.N {
		for _, at := range []projections.AsOf{projections.AtPosition(head - head/4), projections.AtBusiness(logtest.DayStart.Add(10 * time.Hour))} {
			for _, way := range []string{"index", "snapshot"} {
				path := filepath.Join(dir, way+".zip")
				f, err := os.Create(path)
				if err != nil {
					b.Fatal(err)
				}
				bw := bufio.NewWriterSize(f, 1<<20)
				debug.FreeOSMemory()
				_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // peak RSS from here (Linux)
				t0 := time.Now()
				peak, base := heapPeak(func(w io.Writer) error {
					if way == "index" {
						return WriteFromIndex(ctx, env.Store, rq, io.MultiWriter(w, bw), at, key)
					}
					return Write(ctx, env.Store, io.MultiWriter(w, bw), at, key)
				})
				d := time.Since(t0)
				rss := vmHWM()
				bw.Flush()
				st, _ := f.Stat()
				f.Close()
				name := fmt.Sprintf("%s_%s", at.Clock, way)
				figures[name+"_ms"] = d.Milliseconds()
				figures[name+"_heap_peak_mib"] = (peak - min(peak, base)) >> 20
				figures[name+"_bytes"] = st.Size()
				figures[name+"_rss_hwm_kib"] = rss
				fmt.Printf("bundle as of %s from the %s: %s, %d MiB, live heap grew by %d MiB at most, peak RSS %d MiB\n",
					at, way, d.Round(time.Millisecond), st.Size()>>20, (peak-min(peak, base))>>20, rss>>10)
			}
		}
	}
	line, _ := json.Marshal(figures)
	fmt.Println("BENCH_JSON " + string(line))
}

// vmHWM returns the process's peak resident set in KiB (Linux).
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
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
// peak RSS. It prints the figures and one JSON line.
func BenchmarkRebuildAndAsOf(b *testing.B) {
	n := benchEvents()
	env := startEnv(b)
	g := logtest.Generate(b, env.Store, logtest.Config{Seed: 99, Listings: 500, Flows: n / 6, Workers: 64})
	ctx := context.Background()
	headPos := head(b, env)
	eng, err := NewEngine(ctx, env.JS, EngineConfig{Models: mustModels(b), SnapshotEvery: benchSnapshotEvery})
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	if err := eng.Start(ctx); err != nil {
		b.Fatal(err)
	}
	// The engine folds the whole log and stores an as-of snapshot of every
	// model each benchSnapshotEvery positions: allow a second per 2,000.
	waitHeadWithin(b, env, eng, max(30*time.Second, time.Duration(n/2000)*time.Second))
	build := time.Since(t0)
	eng.Stop()
	b.ResetTimer()
	for range b.N {
		raw := rawRead(b, env.JS)
		t0 := time.Now()
		models := mustModels(b)
		if err := Rebuild(ctx, env.Store, headPos, models); err != nil {
			b.Fatal(err)
		}
		rebuild := time.Since(t0)
		lat := asOfLatencies(b, env, 50)
		hwm := vmHWM()
		ratio := raw.Seconds() / rebuild.Seconds()
		fmt.Printf("events %d (log positions %d)\nraw ordered-consumer read %s (%.0f msgs/s)\nrebuild of %d models %s (%.0f events/s), ratio %.2f (target >= 0.7)\n",
			g.Count, headPos, raw, float64(headPos)/raw.Seconds(), len(models), rebuild, float64(g.Count)/rebuild.Seconds(), ratio)
		fmt.Printf("as-of (business clock, all models) p50 %s p99 %s over %d queries (target p99 <= 200ms)\nsnapshot every %d events; engine build with snapshots %s; peak RSS %d MiB\n",
			lat[len(lat)/2], lat[len(lat)*99/100], len(lat), benchSnapshotEvery, build.Round(time.Millisecond), hwm>>10)
		line, _ := json.Marshal(map[string]any{"bench": "projections", "events": g.Count, "positions": headPos,
			"raw_read_ms": raw.Milliseconds(), "rebuild_ms": rebuild.Milliseconds(), "ratio": ratio,
			"asof_p50_ms": float64(lat[len(lat)/2].Microseconds()) / 1000, "asof_p99_ms": float64(lat[len(lat)*99/100].Microseconds()) / 1000,
			"rss_hwm_kib": hwm, "engine_build_ms": build.Milliseconds()})
		fmt.Println(string(line))
	}
}

// benchSnapshotEvery is K for the bench: an as-of query replays at most
// about K events of tail (plus the business clock's skew).
const benchSnapshotEvery = 2500

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

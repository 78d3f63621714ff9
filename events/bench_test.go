package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// benchBody is a 512-byte JSON object, the event size the targets assume.
var benchBody = func() []byte {
	b := []byte(`{"pad":"`)
	for len(b) < 510 {
		b = append(b, 'x')
	}
	return append(b, '"', '}')
}()

const (
	benchWriters  = 64
	benchEvents   = 12800 // per side; 200 decisions per writer
	benchRawBatch = benchWriters
)

// BenchmarkLogAppendAndRead measures, in one run on one embedded server with
// fsync on every write: raw JetStream atomic batches vs the store's append
// path from 64 concurrent aggregates, and a raw ordered-consumer read vs the
// store's full read (decode and hash check). It prints the figures and their
// ratios, also as one JSON line. Run with -benchtime 1x.
func BenchmarkLogAppendAndRead(b *testing.B) {
	for i := 0; i < b.N; i++ {
		st, nc := startStore(b)
		ctx := context.Background()
		js, _ := jetstream.New(nc)
		rawRate := rawAppend(b, js)
		storeRate, p50, p99 := storeAppend(b, st)
		stats := st.Stats()
		// Reads are short and the machine is shared: alternate them and
		// keep the best of three of each.
		var rawRead, storeRead float64
		for range 3 {
			rawRead = max(rawRead, rawReadRate(b, js))
			storeRead = max(storeRead, storeReadRate(b, st, ctx))
		}
		res := map[string]any{
			"bench": "log", "events_per_side": benchEvents, "writers": benchWriters, "event_bytes": len(benchBody),
			"raw_atomic_batch_events_per_s": int(rawRate), "store_append_events_per_s": int(storeRate),
			"append_ratio": round2(storeRate / rawRate), "append_p50_ms": round2(p50), "append_p99_ms": round2(p99),
			"raw_read_events_per_s": int(rawRead), "store_read_events_per_s": int(storeRead),
			"read_ratio": round2(storeRead / rawRead), "decisions_per_batch": round2(float64(stats.Decisions) / float64(stats.Batches)),
		}
		out, _ := json.Marshal(res)
		fmt.Printf("raw atomic batch (%d/batch): %8.0f events/s\n", benchRawBatch, rawRate)
		fmt.Printf("store append (%d writers):  %8.0f events/s  p50 %.2f ms  p99 %.2f ms  ratio %.2f (target >= 0.6, p99 <= 25 ms)\n", benchWriters, storeRate, p50, p99, storeRate/rawRate)
		fmt.Printf("group commit:              %8.1f decisions per batch\n", float64(stats.Decisions)/float64(stats.Batches))
		fmt.Printf("raw ordered read:          %8.0f events/s\n", rawRead)
		fmt.Printf("store read:                %8.0f events/s  ratio %.2f (target >= 0.7)\n", storeRead, storeRead/rawRead)
		fmt.Printf("BENCH_JSON %s\n", out)
		if path := os.Getenv("LEDGER_BENCH_JSON"); path != "" {
			_ = os.WriteFile(path, out, 0o644)
		}
		b.ReportMetric(storeRate/rawRate, "append_ratio")
		b.ReportMetric(storeRead/rawRead, "read_ratio")
		b.ReportMetric(p99, "append_p99_ms")
	}
}

func round2(f float64) float64 { return float64(int(f*100+0.5)) / 100 }

// rawAppend publishes benchEvents messages as atomic batches of
// benchRawBatch on subjects outside the store's event space.
func rawAppend(b *testing.B, js jetstream.JetStream) float64 {
	start := time.Now()
	for n := 0; n < benchEvents; n += benchRawBatch {
		msgs := make([]*nats.Msg, benchRawBatch)
		for j := range msgs {
			msgs[j] = &nats.Msg{Subject: "ledger.raw._bench." + strconv.Itoa(j), Data: benchBody, Header: nats.Header{}}
		}
		if _, err := jetstreamext.PublishMsgBatch(context.Background(), js, msgs, jetstreamext.BatchFlowControl{AckFirst: false, AckTimeout: 10 * time.Second}); err != nil {
			b.Fatal(err)
		}
	}
	return float64(benchEvents) / time.Since(start).Seconds()
}

func storeAppend(b *testing.B, st events.Store) (rate, p50, p99 float64) {
	per := benchEvents / benchWriters
	lat := make([][]time.Duration, benchWriters)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < benchWriters; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			id := "bench-" + strconv.Itoa(w)
			ref := events.AggregateRef{Context: "order", ID: id}
			for v := 0; v < per; v++ {
				e := events.Event{ID: events.NewID(), Type: "order.noted", SchemaVersion: 1, Source: "/bench",
					AggregateID: id, OccurredAt: time.Now(), Data: benchBody}
				t0 := time.Now()
				if _, err := st.Append(context.Background(), events.Decision{Aggregate: ref, ExpectedVersion: uint64(v), Events: []events.Event{e}}); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}(w)
	}
	wg.Wait()
	rate = float64(benchEvents) / time.Since(start).Seconds()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		b.Fatal("no appends")
	}
	ms := func(q float64) float64 { return float64(all[int(q*float64(len(all)-1))]) / 1e6 }
	return rate, ms(0.50), ms(0.99)
}

func rawReadRate(b *testing.B, js jetstream.JetStream) float64 {
	ctx := context.Background()
	start := time.Now()
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"ledger.order.>"}})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	n := 0
	for {
		m, err := it.Next()
		if err != nil {
			b.Fatal(err)
		}
		n++
		meta, _ := m.Metadata()
		if meta.NumPending == 0 {
			break
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

func storeReadRate(b *testing.B, st events.Store, ctx context.Context) float64 {
	start := time.Now()
	n := 0
	for _, err := range st.Read(ctx, events.Query{Subjects: []string{"ledger.order.>"}}) {
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

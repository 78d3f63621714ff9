package testkit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit"
	"github.com/nats-io/nats.go/jetstream"
)

// freezeLoad is the shape of one run of fenced load against policy appends.
type freezeLoad struct {
	loops   int // fenced loops per writer store
	waves   int // waves of concurrent freezes
	freezes int // freezes appended at once in each wave, through one store
	prefix  string
}

// freezeRun is what a run measured.
type freezeRun struct {
	latencies       []time.Duration // of every freeze append, sorted
	fencedAccepted  int64
	policyConflicts int64
	took            time.Duration
}

// runFreezeLoad appends waves of concurrent freezes through one store (its
// committer batches them together) while fenced loops in other stores, each
// on its own connection as a separate process would be, decide under the
// policy head they last read from the leader and append. Every freeze must be
// stored: a policy append may not be starved by fenced load.
func runFreezeLoad(t testing.TB, st *events.JetStreamStore, writers []*events.JetStreamStore, l freezeLoad) freezeRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	var run freezeRun
	var accepted, conflicts atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, len(writers)*l.loops)
	for w, ws := range writers {
		for k := range l.loops {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load() && ctx.Err() == nil; i++ {
					head, err := ws.PolicyHead(ctx)
					if err != nil {
						errs <- err
						return
					}
					ref := events.AggregateRef{Context: "order", ID: fmt.Sprintf("%s-w%d-%d-%d", l.prefix, w, k, i)}
					e := testkit.NewEvent(ref, "placed")
					e.PolicyPosition = head
					_, err = ws.Append(ctx, events.Decision{Aggregate: ref, Events: []events.Event{e}, Fence: true})
					switch {
					case err == nil:
						accepted.Add(1)
					case events.IsPolicyConflict(err) || events.KindOf(err) == events.KindConflict:
						conflicts.Add(1)
					default:
						errs <- err
						return
					}
				}
			}()
		}
	}
	// Let the fenced load get going: the race is the point.
	for accepted.Load() < int64(len(writers)*l.loops) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	var mu sync.Mutex
	begin := time.Now()
	for wave := range l.waves {
		var fw sync.WaitGroup
		for f := range l.freezes {
			fw.Add(1)
			go func() {
				defer fw.Done()
				ref := events.AggregateRef{Context: "policy", ID: fmt.Sprintf("%s-freeze-%d-%d", l.prefix, wave, f)}
				start := time.Now()
				_, err := st.Append(ctx, events.Decision{Aggregate: ref, Events: []events.Event{testkit.NewEvent(ref, "freeze_imposed")}})
				took := time.Since(start)
				if err != nil {
					errs <- fmt.Errorf("freeze %s: %w", ref, err)
					return
				}
				mu.Lock()
				run.latencies = append(run.latencies, took)
				mu.Unlock()
			}()
		}
		fw.Wait()
		// Let every fenced loop go round under the new head before the
		// next wave.
		for seen := accepted.Load() + conflicts.Load(); accepted.Load()+conflicts.Load() < seen+int64(len(writers)*l.loops) && ctx.Err() == nil; {
			time.Sleep(time.Millisecond)
		}
	}
	run.took = time.Since(begin)
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("%v", err)
	}
	run.fencedAccepted, run.policyConflicts = accepted.Load(), conflicts.Load()
	slices.Sort(run.latencies)
	return run
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// policyFence is the body of a ledger.policy._fence record, as the raw
// judge reads it.
type policyFence struct {
	Previous *uint64 `json:"previous_policy_position"`
	Messages int     `json:"policy_messages"`
}

// judgePolicyChain reads ledger.policy.> raw and checks that every policy
// fence record names the policy message stored before its batch as the
// previous head, and counts the batch's policy messages between them. It
// returns the number of records checked.
func judgePolicyChain(t *testing.T, ctx context.Context, js jetstream.JetStream) int {
	t.Helper()
	st, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(policyFilter))
	if err != nil {
		t.Fatal(err)
	}
	total := uint64(0)
	for _, n := range info.State.Subjects {
		total += n
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{policyFilter}})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	var seen []uint64 // positions of policy messages, in order
	records := 0
	for n := uint64(0); n < total; n++ {
		m, err := it.Next()
		if err != nil {
			t.Fatalf("reading ledger.policy.> (%d of %d): %v", n, total, err)
		}
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		pos := md.Sequence.Stream
		if m.Subject() == events.SubjectPrefix+"policy._fence" {
			var f policyFence
			if err := json.Unmarshal(m.Data(), &f); err != nil || f.Previous == nil {
				t.Errorf("fence record at %d: %s: no previous_policy_position (%v)", pos, m.Data(), err)
			} else {
				i := len(seen) - f.Messages // index of the batch's first policy message
				prev := uint64(0)
				if i > 0 {
					prev = seen[i-1]
				}
				if i < 0 || prev != *f.Previous {
					t.Errorf("fence record at %d names previous head %d and %d policy messages; the log has %d before them", pos, *f.Previous, f.Messages, prev)
				}
			}
			records++
		}
		seen = append(seen, pos)
	}
	return records
}

// TestFreezesHoldOnAClusterUnderFencedLoad: three nodes, waves of many
// concurrent freezes that the committer batches together, fenced loops in
// four other stores on their own connections. Judged from the raw log (no
// ledger decoding): no fenced event is stored after a policy message with a
// ce-policyposition before it; every policy batch's fence record names the
// head before it; every freeze was stored.
func TestFreezesHoldOnAClusterUnderFencedLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node scenario")
	}
	c := testkit.StartCluster(t, 3)
	policy := c.NewStore(t)
	var writers []*events.JetStreamStore
	for range 4 {
		writers = append(writers, c.NewStore(t))
	}
	start := time.Now()
	run := runFreezeLoad(t, policy, writers, freezeLoad{loops: 6, waves: 8, freezes: 24, prefix: "e2e"})
	t.Logf("%d freezes in %d waves: p50 %s p99 %s max %s; fenced %d accepted, %d refused; %s",
		len(run.latencies), 8, percentile(run.latencies, 0.5), percentile(run.latencies, 0.99),
		percentile(run.latencies, 1), run.fencedAccepted, run.policyConflicts, time.Since(start))
	if len(run.latencies) != 8*24 {
		t.Errorf("%d freezes stored, want %d", len(run.latencies), 8*24)
	}
	if run.fencedAccepted == 0 {
		t.Error("no fenced decision was accepted: the race did not run")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range judgeFence(t, ctx, js, 1) {
		if strings.Contains(v, ".order.") {
			t.Error(v)
		}
	}
	if n := judgePolicyChain(t, ctx, js); n == 0 {
		t.Error("no policy fence record in the log")
	} else {
		t.Logf("%d policy fence records chained", n)
	}
}

// BenchmarkFreezeLatencyUnderFencedLoad measures how long a freeze takes to
// be stored while fenced writers (stores on connections of their own, as
// other processes) keep appending fenced decisions as fast as they can: one
// freeze at a time, on one node and on three. It prints a BENCH_JSON line
// per configuration.
func BenchmarkFreezeLatencyUnderFencedLoad(b *testing.B) {
	for _, nodes := range []int{1, 3} {
		for _, writers := range []int{4, 8} {
			b.Run(fmt.Sprintf("nodes=%d/writers=%d", nodes, writers), func(b *testing.B) {
				for range b.N {
					var policy *events.JetStreamStore
					var ws []*events.JetStreamStore
					if nodes == 1 {
						n := testkit.StartNode(b)
						policy = n.Store
						for range writers {
							ws = append(ws, n.NewStore(b))
						}
					} else {
						c := testkit.StartCluster(b, nodes)
						policy = c.NewStore(b)
						for range writers {
							ws = append(ws, c.NewStore(b))
						}
					}
					const freezes = 40
					run := runFreezeLoad(b, policy, ws, freezeLoad{loops: 4, waves: freezes, freezes: 1, prefix: "bench"})
					p50, p99 := percentile(run.latencies, 0.5), percentile(run.latencies, 0.99)
					res := map[string]any{"bench": "freeze_latency_under_fenced_load", "nodes": nodes,
						"fenced_writers": writers, "fenced_loops": writers * 4, "freezes": len(run.latencies),
						"freeze_p50_ms": ms(p50), "freeze_p99_ms": ms(p99), "freeze_max_ms": ms(percentile(run.latencies, 1)),
						"fenced_accepted_per_s": int(float64(run.fencedAccepted) / run.took.Seconds()),
						"fenced_refused":        run.policyConflicts}
					out, _ := json.Marshal(res)
					fmt.Printf("BENCH_JSON %s\n", out)
					b.ReportMetric(ms(p99), "freeze_p99_ms")
				}
			})
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()/10) / 100 }

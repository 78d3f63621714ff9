package testkit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// Bounds of the durability test. The build of the server binary has its own
// bound (BuildTimeout): it is cached after the first run, but a cold build
// takes a while.
const (
	durabilityTimeout = 60 * time.Second
	durabilityWriters = 8
	// durabilityAckedBeforeKill is how many acknowledged decisions the
	// writers reach before the server is killed under them.
	durabilityAckedBeforeKill = 300
	durabilityAppendTimeout   = 5 * time.Second
)

// TestDurabilityAcknowledgedAppendsSurviveSIGKILL runs the real nats-server
// binary as a child process with fsync on every write, appends from many
// goroutines through the store, kills the server with SIGKILL while appends
// are in flight, restarts it on the same store directory, and checks that
// every append the store acknowledged is there: same events, same aggregate
// versions, same positions, chains intact.
func TestDurabilityAcknowledgedAppendsSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the nats-server binary")
	}
	bin := BuildNATSServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), durabilityTimeout)
	defer cancel()
	srv := StartNATSProcesses(t, bin, NATSProcessesConfig{Nodes: 1})[0]

	nc := connect(t, srv.URL)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	st, err := events.NewJetStreamStore(ctx, nc, contracts.Fence())
	if err != nil {
		t.Fatal(err)
	}
	rec := &ackLog{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range durabilityWriters {
		wg.Go(func() { durabilityWriter(ctx, t, st, fmt.Sprintf("dur-%d", w), rec, stop) })
	}
	if err := rec.await(ctx, durabilityAckedBeforeKill); err != nil {
		t.Fatalf("writers did not reach %d acknowledged decisions: %v", durabilityAckedBeforeKill, err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	// Fail what is still in flight at once instead of waiting for timeouts.
	nc.Close()
	st.Close()
	t.Logf("%d decisions acknowledged before SIGKILL, %d appends cut by it", rec.count(), rec.cut.Load())

	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	verifyAcknowledged(ctx, t, openStore(t, connect(t, srv.URL)), rec)
}

// acked is one acknowledged decision.
type acked struct {
	ref    events.AggregateRef
	ids    []string
	result events.Appended
}

// ackLog records acknowledged decisions from many writers.
type ackLog struct {
	mu      sync.Mutex
	decided []acked
	n       atomic.Int64
	// cut counts appends in flight when the server died (outcome unknown).
	cut atomic.Int64
}

func (l *ackLog) add(a acked) {
	l.mu.Lock()
	l.decided = append(l.decided, a)
	l.mu.Unlock()
	l.n.Add(1)
}

func (l *ackLog) count() int { return int(l.n.Load()) }

// await waits until n decisions were acknowledged. Writers do not signal
// each acknowledgement, so it re-checks the count; the wait is bounded by
// ctx.
func (l *ackLog) await(ctx context.Context, n int) error {
	return pollUntil(ctx, strconv.Itoa(n)+" acknowledged decisions", func() bool { return l.count() >= n })
}

// durabilityWriter appends decisions of one to three events to an aggregate
// of its own until stop is closed or an append fails (the server is gone).
// A failed append's outcome is unknown, so it is not recorded, and the
// writer stops: later events of the aggregate are not checked.
func durabilityWriter(ctx context.Context, t *testing.T, st events.Store, name string, rec *ackLog, stop <-chan struct{}) {
	ref := events.AggregateRef{Context: "order", ID: name}
	var version uint64
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		d := decision(ref, version, []string{"placed", "line_added", "confirmed"}[:1+i%3]...)
		actx, cancel := context.WithTimeout(ctx, durabilityAppendTimeout)
		a, err := st.Append(actx, d)
		cancel()
		if err != nil {
			if events.KindOf(err) != events.KindUnavailable {
				t.Errorf("append to %s at version %d: %v", ref, version, err)
			}
			rec.cut.Add(1)
			return
		}
		rec.add(acked{ref: ref, ids: ids(d.Events), result: a})
		version = a.Version
	}
}

// verifyAcknowledged checks every acknowledged decision against the log.
func verifyAcknowledged(ctx context.Context, t *testing.T, st events.Store, rec *ackLog) {
	t.Helper()
	loaded := make(map[events.AggregateRef][]events.Event)
	for _, a := range rec.decided {
		evs, ok := loaded[a.ref]
		if !ok {
			var err error
			if evs, err = st.Load(ctx, a.ref, 0); err != nil { // Load verifies the chain
				t.Fatalf("load %s after restart: %v", a.ref, err)
			}
			loaded[a.ref] = evs
		}
		first := a.result.Version - uint64(len(a.ids)) + 1
		if uint64(len(evs)) < a.result.Version {
			t.Errorf("%s: acknowledged up to version %d, only %d events after SIGKILL", a.ref, a.result.Version, len(evs))
			continue
		}
		for i, id := range a.ids {
			e := evs[first-1+uint64(i)]
			if e.ID != id || e.Position != a.result.FirstPosition+uint64(i) {
				t.Errorf("%s v%d: event %s at position %d, acknowledged %s at %d",
					a.ref, e.AggregateVersion, e.ID, e.Position, id, a.result.FirstPosition+uint64(i))
			}
		}
	}
	t.Logf("%d acknowledged decisions on %d aggregates verified after restart", len(rec.decided), len(loaded))
}

package projections

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/internal/logtest"
	"github.com/marketledger/ledger/projections/models"
)

func head(t testing.TB, env *logtest.Env) uint64 {
	t.Helper()
	p, err := env.Store.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func startEngine(t testing.TB, env *logtest.Env, reg prometheus.Registerer, ms ...models.Model) *Engine {
	t.Helper()
	if len(ms) == 0 {
		ms, _ = models.NewModels()
	}
	ctx := context.Background()
	eng, err := NewEngine(ctx, env.JS, EngineConfig{Models: ms, Registerer: reg, CheckpointEvery: 50,
		CheckpointInterval: 30 * time.Millisecond, SnapshotEvery: 40})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return eng
}

func waitHead(t testing.TB, env *logtest.Env, eng *Engine) {
	t.Helper()
	waitHeadWithin(t, env, eng, 30*time.Second)
}

// waitHeadWithin is waitHead with its own bound (large logs).
func waitHeadWithin(t testing.TB, env *logtest.Env, eng *Engine, bound time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := eng.WaitApplied(ctx, head(t, env)); err != nil {
		t.Fatal(err)
	}
}

func snapshots(t testing.TB, eng *Engine) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, n := range models.ModelNames() {
		err := eng.View(n, func(m models.Model) error {
			b, err := m.Snapshot()
			out[n] = b
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestEngineRestartAndRebuild runs the engine over a log, stops it, appends
// more, restarts it from its checkpoints, and checks that every model equals
// a rebuild from zero byte for byte, and that the lag gauge reaches zero.
func TestEngineRestartAndRebuild(t *testing.T) {
	env := startEnv(t)
	g := logtest.Generate(t, env.Store, logtest.Config{Seed: 11, Listings: 8, Flows: 60})
	reg := prometheus.NewRegistry()
	eng := startEngine(t, env, reg)
	waitHead(t, env, eng)
	if err := eng.Stop(); err != nil {
		t.Fatal(err)
	}
	st, _, _ := eng.st.loadCheckpoint(context.Background(), models.ModelOrders, 1)
	if st.Position != head(t, env) {
		t.Errorf("checkpoint at %d after stop, head %d", st.Position, head(t, env))
	}

	g.More(40, 4, 12)
	eng2 := startEngine(t, env, reg)
	defer eng2.Stop()
	waitHead(t, env, eng2)
	got := snapshots(t, eng2)
	evs, ps := logtest.ReadAll(t, env.Store)
	want := logtest.FoldMem(t, evs, ps, nil)
	for n := range want {
		if !bytes.Equal(got[n], want[n]) {
			t.Errorf("%s: engine after restart differs from a rebuild from zero", n)
		}
	}
	time.Sleep(100 * time.Millisecond) // one more publish after catching up
	if lag := testutil.ToFloat64(eng2.lag.WithLabelValues(models.ModelOrders, "1")); lag != 0 {
		t.Errorf("lag %v after catching up", lag)
	}
	applied := testutil.ToFloat64(eng2.applied.WithLabelValues(models.ModelOrders, "1"))
	if uint64(applied) != head(t, env) {
		t.Errorf("applied gauge %v, head %d", applied, head(t, env))
	}
	if n, err := testutil.GatherAndCount(reg, "ledger_projection_lag_events"); err != nil || n != len(models.ModelNames()) {
		t.Errorf("lag series %d (%v)", n, err)
	}
}

// TestEngineIdempotentAfterLostCheckpointAck feeds positions the model has applied
// again: they change nothing.
func TestEngineIdempotentAfterLostCheckpointAck(t *testing.T) {
	env := startEnv(t)
	logtest.Generate(t, env.Store, logtest.Config{Seed: 5, Listings: 4, Flows: 20})
	eng := startEngine(t, env, nil)
	waitHead(t, env, eng)
	before := snapshots(t, eng)
	eng.Stop()
	// Deliver the log from the start again, as a follower that lost its
	// place would, to a model that has applied it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := newRunner(eng, models.NewOrders())
	if err := r.restore(ctx); err != nil {
		t.Fatal(err)
	}
	n := uint64(0)
	errDone := errors.New("done")
	err := events.Follow(ctx, env.JS, []string{events.SubjectPrefix + ">"}, 1, time.Time{},
		func(m jetstream.Msg, meta *jetstream.MsgMetadata) error {
			if err := r.handle(ctx, m, meta); err != nil {
				return err
			}
			if n++; meta.Sequence.Stream >= r.ckpt.Position {
				return errDone
			}
			return nil
		})
	if !errors.Is(err, errDone) {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("nothing redelivered")
	}
	after, _ := r.m.Snapshot()
	if !bytes.Equal(after, before[models.ModelOrders]) {
		t.Errorf("redelivered positions changed the model")
	}
}

// TestBlueGreen builds orders v2 beside v1 and swaps it in once caught up.
func TestBlueGreen(t *testing.T) {
	env := startEnv(t)
	g := logtest.Generate(t, env.Store, logtest.Config{Seed: 9, Listings: 4, Flows: 30})
	eng := startEngine(t, env, prometheus.NewRegistry())
	defer eng.Stop()
	waitHead(t, env, eng)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- eng.Deploy(ctx, &ordersV2{models.NewOrders()}) }()
	g.More(10, 2, 10) // writes go on meanwhile
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st, err := eng.Status(models.ModelOrders)
	if err != nil || st.Version != 2 {
		t.Fatalf("active %+v %v", st, err)
	}
	waitHead(t, env, eng)
	v, _ := eng.st.activeVersion(ctx, models.ModelOrders)
	if v != 2 {
		t.Errorf("active version recorded %d", v)
	}
	evs, ps := logtest.ReadAll(t, env.Store)
	want := logtest.FoldMem(t, evs, ps, nil)[models.ModelOrders]
	eng.View(models.ModelOrders, func(m models.Model) error {
		got, _ := m.Snapshot()
		if !bytes.Equal(got, want) {
			t.Errorf("v2 differs from a rebuild")
		}
		return nil
	})
	if err := eng.Deploy(ctx, &ordersV2{models.NewOrders()}); err == nil {
		t.Error("deploying the running version again was accepted")
	}
}

// ordersV2 stands for a new build of the orders model.
type ordersV2 struct{ *models.Orders }

func (*ordersV2) Version() int { return 2 }

package projections

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/projections/internal/logtest"
	"github.com/marketledger/ledger/projections/models"
)

// durableConsumers lists the durable consumers on the LEDGER stream.
func durableConsumers(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	l := st.ListConsumers(ctx)
	for info := range l.Info() {
		if info.Config.Durable != "" {
			out = append(out, info.Name)
		}
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The read models follow the log through events.Follow from their
// checkpoints: the server keeps no consumer of theirs, running or stopped,
// and one an earlier engine left is removed. Before, each model version
// kept a durable consumer with acknowledgements that outlived the engine.
func TestEngineKeepsNoConsumerOnTheServer(t *testing.T) {
	env := startEnv(t)
	logtest.Generate(t, env.Store, logtest.Config{Seed: 3, Listings: 2, Flows: 10})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	legacy := "proj_" + models.ModelOrders + "_v1"
	if _, err := env.JS.CreateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{Durable: legacy,
		FilterSubject: events.SubjectPrefix + ">", AckPolicy: jetstream.AckAllPolicy}); err != nil {
		t.Fatal(err)
	}
	eng := startEngine(t, env, nil)
	waitHead(t, env, eng)
	if got := durableConsumers(t, env.JS); len(got) != 0 {
		t.Errorf("durable consumers while the engine runs: %v; want none", got)
	}
	if err := eng.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := durableConsumers(t, env.JS); len(got) != 0 {
		t.Errorf("durable consumers after the engine stopped: %v; want none", got)
	}
}

// copyLog copies every message of the LEDGER stream behind from into a new
// LEDGER stream behind to, at the same positions, on a stream that allows
// deleting messages, as a damaged block would lose them.
func copyLog(t *testing.T, from, to jetstream.JetStream) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := from.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := events.StreamConfig(1)
	cfg.DenyDelete = false
	dst, err := to.CreateStream(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	last := src.CachedInfo().State.LastSeq
	for seq := uint64(1); seq <= last; seq++ {
		m, err := src.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("read %d: %v", seq, err)
		}
		out := nats.NewMsg(m.Subject)
		for k, vs := range m.Header {
			if !strings.HasPrefix(k, "Nats-") { // the checks did their work when it was first stored
				out.Header[k] = vs
			}
		}
		out.Data = m.Data
		if ack, err := to.PublishMsg(ctx, out); err != nil || ack.Sequence != seq {
			t.Fatalf("copy %d: stored at %v, %v", seq, ack, err)
		}
	}
	return dst
}

// A position missing from the log fails the model, naming the position,
// after a bounded number of re-reads. Before, the runner reopened its
// consumer at the missing position for ever, and reported nothing.
func TestEngineFailsOnAPositionMissingFromTheLog(t *testing.T) {
	env := startEnv(t)
	logtest.Generate(t, env.Store, logtest.Config{Seed: 4, Listings: 2, Flows: 10})
	srv, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), Port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	dst := copyLog(t, env.JS, js)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := dst.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	missing := info.State.LastSeq / 2
	if err := dst.DeleteMsg(ctx, missing); err != nil {
		t.Fatal(err)
	}
	eng, err := NewEngine(ctx, js, EngineConfig{Models: []models.Model{models.NewOrders()}, CheckpointInterval: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer eng.Stop()
	err = eng.WaitApplied(ctx, missing)
	if events.KindOf(err) != events.KindIntegrity || !strings.Contains(err.Error(), "position "+strconv.FormatUint(missing, 10)) {
		t.Fatalf("WaitApplied past a missing position: %v; want an integrity error naming position %d", err, missing)
	}
	if st, _ := eng.Status(models.ModelOrders); st.Applied != missing-1 {
		t.Errorf("applied %d, want %d (up to the missing position)", st.Applied, missing-1)
	}
}

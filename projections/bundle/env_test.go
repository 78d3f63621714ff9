package bundle

import (
	"context"
	"testing"
	"time"

	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/internal/logtest"
	"github.com/marketledger/ledger/projections/models"
)

// startEnv starts an embedded node in a temporary directory and opens the
// log on it; the node stops when the test ends.
func startEnv(t testing.TB) *logtest.Env {
	t.Helper()
	dir := t.TempDir()
	srv, err := embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return logtest.Open(t, srv.ClientURL(), dir)
}

// runEngine runs the projection engine over the whole log, so that the
// bundle's as-of query starts from snapshots as it does in production, and
// stops it.
func runEngine(t testing.TB, env *logtest.Env) {
	t.Helper()
	ms, err := models.NewModels()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eng, err := projections.NewEngine(ctx, env.JS, projections.EngineConfig{Models: ms, CheckpointEvery: 50,
		CheckpointInterval: 30 * time.Millisecond, SnapshotEvery: 40})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer eng.Stop()
	head, err := env.Store.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.WaitApplied(ctx, head); err != nil {
		t.Fatal(err)
	}
}

// startNode starts an embedded node on dir for logtest.OpenStored.
func startNode(t testing.TB, dir string, lazy bool) (string, func()) {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort, LazyFsync: lazy})
	if err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), srv.Shutdown
}

package projections

import (
	"testing"

	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/projections/internal/logtest"
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

// startNode starts an embedded node on dir for logtest.OpenStored.
func startNode(t testing.TB, dir string, lazy bool) (string, func()) {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort, LazyFsync: lazy})
	if err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), srv.Shutdown
}

package models_test

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

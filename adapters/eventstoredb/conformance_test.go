package eventstoredb

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit"
)

// envURL names the EventStoreDB the server tests run against.
const envURL = "LEDGER_ESDB_URL"

// serverURL returns the EventStoreDB connection string of the environment
// or skips the test, saying that no server was reachable.
func serverURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv(envURL)
	if url == "" {
		t.Skipf("no EventStoreDB server was reachable: %s is not set (for example esdb://127.0.0.1:2113?tls=false); "+
			"this test did NOT run against a real server", envURL)
	}
	return url
}

// openServer opens a Store on the environment's server; an unreachable
// server fails the test, because the environment said there is one.
func openServer(t *testing.T, url string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatalf("%s=%s is set but no EventStoreDB server was reachable there: %v", envURL, url, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformanceEventStoreDB runs the Store conformance suite against the
// real EventStoreDB named by LEDGER_ESDB_URL.
func TestConformanceEventStoreDB(t *testing.T) {
	url := serverURL(t)
	openServer(t, url)
	testkit.RunStoreConformance(t, func(t *testing.T) events.Store { return openServer(t, url) }, conformanceOptions())
}

// TestConformanceModel runs the same suite against the in-memory model of
// EventStoreDB's semantics (model_test.go). It checks the adapter's logic
// (mapping, idempotency records, $all positions, catch-up hand-over) where
// no server is reachable; it is no evidence about a real server.
func TestConformanceModel(t *testing.T) {
	m := newModel()
	testkit.RunStoreConformance(t, func(t *testing.T) events.Store {
		s := newStore(m.client())
		t.Cleanup(func() { s.Close() })
		return s
	}, conformanceOptions())
}

func conformanceOptions() testkit.ConformanceOptions {
	return testkit.ConformanceOptions{
		Timeout: 60 * time.Second,
		// $all positions are log offsets: increasing, not dense.
		SparsePositions: true,
	}
}

package checkout

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/nodetest"
)

// A damaged checkpoint stops the runner at once with an error that names
// the bucket and key and says what a checkpoint must be, instead of
// reporting "checkpoint: <nil>" and reading it again forever.
func TestDamagedCheckpointStopsTheRunner(t *testing.T) {
	l := nodetest.Start(t, contracts.Fence())
	st, nc, js := l.Store, l.Conn, l.JS
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "ledger_checkout"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "position", []byte("abc")); err != nil {
		t.Fatal(err)
	}
	var heard []error
	r := New(Config{Store: st, Conn: nc, Clock: time.Now, OnError: func(err error) { heard = append(heard, err) }})
	err = r.Run(ctx)
	if events.KindOf(err) != events.KindIntegrity || !strings.Contains(err.Error(), "ledger_checkout/position") ||
		!strings.Contains(err.Error(), "found 3 bytes") {
		t.Fatalf("Run on a damaged checkpoint: %v; want an integrity error naming ledger_checkout/position and its size", err)
	}
	if ctx.Err() != nil || len(heard) != 1 {
		t.Errorf("the runner read the damaged checkpoint %d times (context %v), want once", len(heard), ctx.Err())
	}
}

package checkoutrun

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/nats-io/nats.go/jetstream"
)

// Start runs the checkout on cfg as `ledger serve` runs it (services/checkout
// following the log from its checkpoint, sending each step over the
// services' NATS subjects) until t ends or stop is called. Every test that
// needs the product's checkout (these tests, the scenarios) starts it here,
// so that there is one way to run it in tests.
func Start(t testing.TB, cfg checkout.Config) (r *checkout.Runner, stop func()) {
	t.Helper()
	r = checkout.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return r, stop
}

// Settle returns once the checkout's checkpoint (the KV bucket and key of
// its Config; "" for the defaults) has passed the last event of the log
// that the checkout acts on (it is sent no other, so its checkpoint stops
// there) and no event came after it meanwhile: every checkout the log holds
// is as far as the checkout takes it. It works across processes (a `ledger
// serve` child's runner), where checkout.Runner.Drain cannot be called; it
// polls, bounded by ctx.
func Settle(ctx context.Context, st *events.JetStreamStore, bucket, key string) error {
	if bucket == "" {
		bucket = "ledger_checkout"
	}
	if key == "" {
		key = "position"
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var kv jetstream.KeyValue
	last := uint64(0)
	for {
		head, err := st.PositionAt(ctx, time.Now())
		if err != nil {
			return fmt.Errorf("checkout settle: the log's last event: %w", err)
		}
		if kv == nil {
			kv, _ = st.JetStream().KeyValue(ctx, bucket) // not there until the runner's first start
		}
		var at uint64
		if kv != nil {
			if e, err := kv.Get(ctx, key); err == nil && len(e.Value()) == 8 {
				at = binary.BigEndian.Uint64(e.Value())
			}
		}
		step, err := checkout.LastStep(ctx, st, at, head)
		if err != nil {
			return fmt.Errorf("checkout settle: the checkout's events after its checkpoint %d: %w", at, err)
		}
		passed := step == 0
		if passed && head == last {
			return nil
		}
		if passed {
			last = head // passed: settled if nothing comes after it by the next look
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("checkout settle: checkpoint %d, the checkout's last event %d, the log's last event %d: %w", at, step, head, ctx.Err())
		case <-tick.C:
		}
	}
}

package checkoutrun

import (
	"context"
	"encoding/binary"
	"errors"
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

// settleReadWait bounds each read of the checkout's checkpoint bucket. A
// JetStream API request that reaches the cluster while the stream it names
// has lost its leader with a killed node is answered by no one: the old
// leader is gone, and the followers, which do not know it yet (until their
// Raft election time-out, 4 to 9 s), leave it to the leader. A read bounded
// only by the caller's deadline then waits for all of it (the failover
// test's own reads, one run in six); bounded by this, it is asked again at
// the next look, which the new leader answers. The log's reads (PositionAt,
// Read) bound each of their requests themselves.
const settleReadWait = 2 * time.Second

// Settle returns once the checkout's checkpoint (the KV bucket and key of
// its Config; "" for the defaults) has passed the last event of the log
// that the checkout acts on (it is sent no other, so its checkpoint stops
// there) and no event came after it meanwhile: every checkout the log holds
// is as far as the checkout takes it. It works across processes (a `ledger
// serve` child's runner), where checkout.Runner.Drain cannot be called; it
// polls, bounded by ctx, each read bounded by settleReadWait.
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
	var lastErr error
	for {
		at, head, step, err := settleLook(ctx, st, &kv, bucket, key)
		switch {
		case err != nil:
			lastErr = err
		case step == 0 && head == last:
			return nil
		case step == 0:
			last = head // passed: settled if nothing comes after it by the next look
		default:
			lastErr = fmt.Errorf("checkpoint %d, the checkout's last event %d, the log's last event %d", at, step, head)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("checkout settle: %v: %w", lastErr, ctx.Err())
		case <-tick.C:
		}
	}
}

// settleLook reads the checkpoint, the log's last event and the last event
// after the checkpoint that the checkout acts on (0: none).
func settleLook(ctx context.Context, st *events.JetStreamStore, kv *jetstream.KeyValue, bucket, key string) (at, head, step uint64, err error) {
	if head, err = st.PositionAt(ctx, time.Now()); err != nil {
		return 0, 0, 0, fmt.Errorf("the log's last event: %w", err)
	}
	if *kv == nil {
		kctx, cancel := context.WithTimeout(ctx, settleReadWait)
		*kv, err = st.JetStream().KeyValue(kctx, bucket)
		cancel()
		if err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) { // not there until the runner's first start
			return 0, 0, 0, fmt.Errorf("the checkout's checkpoint bucket: %w", err)
		}
	}
	if *kv != nil {
		gctx, cancel := context.WithTimeout(ctx, settleReadWait)
		e, err := (*kv).Get(gctx, key)
		cancel()
		switch {
		case err == nil && len(e.Value()) == 8:
			at = binary.BigEndian.Uint64(e.Value())
		case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
			return 0, 0, 0, fmt.Errorf("the checkout's checkpoint: %w", err)
		}
	}
	if step, err = checkout.LastStep(ctx, st, at, head); err != nil {
		return 0, 0, 0, fmt.Errorf("the checkout's events after its checkpoint %d: %w", at, err)
	}
	return at, head, step, nil
}

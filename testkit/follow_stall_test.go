package testkit_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit"
)

// stalledDeliverMax bounds how long Follow may take to deliver a message
// that its consumer holds back while still answering with heartbeats.
const stalledDeliverMax = 10 * time.Second

// TestFollowReplacesAConsumerThatStopsDelivering pauses the consumer that
// Follow reads through, so that it answers every pull with heartbeats and
// delivers nothing. Follow must notice that the stream holds a message it
// has not delivered and read it through a new consumer, rather than wait
// without bound.
func TestFollowReplacesAConsumerThatStopsDelivering(t *testing.T) {
	n := testkit.StartNode(t)
	st := n.NewStore(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*stalledDeliverMax)
	defer cancel()
	ref := events.AggregateRef{Context: "order", ID: "stall-1"}
	first, err := st.Append(ctx, events.Decision{Aggregate: ref, Events: []events.Event{event(ref, "order.placed")}})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan uint64, 16)
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- st.Follow(fctx, []string{ref.Subject()}, 1, time.Time{}, func(_ jetstream.Msg, meta *jetstream.MsgMetadata) error {
			got <- meta.Sequence.Stream
			return nil
		})
	}()
	defer func() { stop(); <-done }()
	await := func(pos uint64, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := time.After(within)
		for {
			select {
			case p := <-got:
				if p >= pos {
					return time.Since(start)
				}
			case <-deadline:
				t.Fatalf("position %d not delivered within %s", pos, within)
			}
		}
	}
	await(first.LastPosition, stalledDeliverMax)
	js := st.JetStream()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	paused := 0
	for name := range s.ConsumerNames(ctx).Name() {
		if _, err := js.PauseConsumer(ctx, events.StreamName, name, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		paused++
	}
	if paused == 0 {
		t.Fatal("no consumer to pause")
	}
	second, err := st.Append(ctx, events.Decision{Aggregate: ref, ExpectedVersion: 1, Events: []events.Event{event(ref, "order.confirmed")}})
	if err != nil {
		t.Fatal(err)
	}
	took := await(second.LastPosition, stalledDeliverMax)
	t.Logf("paused %d consumers; position %d delivered %s after its append", paused, second.LastPosition, took.Round(time.Millisecond))
}

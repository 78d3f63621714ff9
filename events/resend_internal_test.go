package events

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/node/embedded"
)

func startInternalStore(t *testing.T) (*JetStreamStore, jetstream.JetStream) {
	t.Helper()
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	if _, err := EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	st, err := NewJetStreamStore(ctx, nc, WithFence("policy"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, js
}

// injectFirst makes the first send of every batch for which match holds
// suffer f (once per batch: its resend goes through), running before (if
// set) first.
func injectFirst(t *testing.T, f fault, match func([]*nats.Msg) bool, before func()) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	seen := map[string]bool{}
	sendFault = func(msgs []*nats.Msg) fault {
		id := msgs[0].Header.Get(HeaderID)
		if seen[id] || !match(msgs) {
			return faultNone
		}
		seen[id] = true
		n.Add(1)
		if before != nil {
			before()
		}
		return f
	}
	t.Cleanup(func() { sendFault = nil })
	return &n
}

func any1([]*nats.Msg) bool { return true }

func testEvent(agg, typ string) Event {
	return Event{ID: NewID(), Type: typ, SchemaVersion: 1, Source: "/test", AggregateID: agg,
		OccurredAt: time.Now(), Data: []byte(`{"a":1}`)}
}

// countOn returns how many messages subject (a filter) holds.
func countOn(t *testing.T, js jetstream.JetStream, subject string) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// TestResendAfterALostAnswerIsStoredOnce: a batch stored whose answer is
// lost (as when the old leader commits it and the answer goes nowhere) is
// sent again; the resend is refused by the log, the store reads that the
// first send was stored and answers with its positions. Plain, keyed,
// fenced and policy decisions: nothing is stored twice.
func TestResendAfterALostAnswerIsStoredOnce(t *testing.T) {
	st, js := startInternalStore(t)
	ctx := context.Background()
	lost := injectFirst(t, faultLoseAnswer, any1, nil)
	fenced := testEvent("o2", "order.placed")
	decisions := []Decision{
		{Aggregate: AggregateRef{Context: "order", ID: "o1"}, Events: []Event{testEvent("o1", "order.placed"), testEvent("o1", "order.confirmed")}},
		{Aggregate: AggregateRef{Context: "order", ID: "o2"}, Events: []Event{fenced}, Fence: true, IdempotencyKey: "k2", CommandDigest: "d2"},
		{Aggregate: AggregateRef{Context: "policy", ID: "f1"}, Events: []Event{testEvent("f1", "policy.freeze_imposed")}, IdempotencyKey: "k3", CommandDigest: "d3"},
	}
	for _, d := range decisions {
		a, err := st.Append(ctx, d)
		if err != nil {
			t.Fatalf("%s: %v", d.Aggregate, err)
		}
		if got, want := countOn(t, js, d.Aggregate.Subject()), uint64(len(d.Events)); got != want {
			t.Errorf("%s: %d messages stored, want %d", d.Aggregate, got, want)
		}
		evs, err := st.Load(ctx, d.Aggregate, 0)
		if err != nil || len(evs) != len(d.Events) || evs[0].Position != a.FirstPosition || evs[len(evs)-1].Position != a.LastPosition {
			t.Errorf("%s: appended %+v, loaded %d events (%v)", d.Aggregate, a, len(evs), err)
		}
	}
	if got := st.Stats().ResolvedStored; got != uint64(len(decisions)) || lost.Load() != int64(len(decisions)) {
		t.Errorf("resolved as stored %d, answers lost %d; want %d each", got, lost.Load(), len(decisions))
	}
	if n := countOn(t, js, "ledger.*._idem.>"); n != 2 {
		t.Errorf("%d idempotency records, want 2", n)
	}
}

// TestResendAfterADroppedBatchDoesNotWait: a batch the old leader dropped
// is sent again at once and stored once.
func TestResendAfterADroppedBatchDoesNotWait(t *testing.T) {
	st, js := startInternalStore(t)
	ctx := context.Background()
	injectFirst(t, faultDrop, any1, nil)
	ref := AggregateRef{Context: "order", ID: "o1"}
	began := time.Now()
	if _, err := st.Append(ctx, Decision{Aggregate: ref, Events: []Event{testEvent("o1", "order.placed")}}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > firstAckWait {
		t.Errorf("append took %s after a dropped send", d)
	}
	if n := countOn(t, js, ref.Subject()); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
}

// TestResendRefusedForAnotherWritersDecisionIsAConflict: the first send is
// lost and another writer's decision on the same aggregate is stored before
// the resend: the resend is refused, the store reads that the first send
// can never be stored, and the caller gets a conflict, not a success.
func TestResendRefusedForAnotherWritersDecisionIsAConflict(t *testing.T) {
	st, js := startInternalStore(t)
	ctx := context.Background()
	ref := AggregateRef{Context: "order", ID: "o1"}
	other := func() {
		evs := []Event{testEvent("o1", "order.placed")}
		SealAt(evs, 0, GenesisHash, 0)
		m, err := Encode(&evs[0])
		if err != nil {
			t.Error(err)
			return
		}
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, ref.Subject())
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Error(err)
		}
	}
	injectFirst(t, faultDrop, any1, other)
	_, err := st.Append(ctx, Decision{Aggregate: ref, Events: []Event{testEvent("o1", "order.placed")}})
	if KindOf(err) != KindConflict {
		t.Fatalf("append after another writer's decision: %v, want a conflict", err)
	}
	if n := countOn(t, js, ref.Subject()); n != 1 {
		t.Errorf("%d messages stored, want 1 (the other writer's)", n)
	}
}

// TestResendOfAFencedBatchAfterAFreezeIsAPolicyConflict: the first send of
// a fenced decision is lost and a policy event is stored before the resend:
// the resend's fence is refused, the store reads that the first send can
// never be stored (its fence names a policy position that has moved), and
// the caller is told to decide again under the new policy.
func TestResendOfAFencedBatchAfterAFreezeIsAPolicyConflict(t *testing.T) {
	st, js := startInternalStore(t)
	ctx := context.Background()
	freeze := func() {
		evs := []Event{testEvent("f1", "policy.freeze_imposed")}
		SealAt(evs, 0, GenesisHash, 0)
		m, err := Encode(&evs[0])
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Error(err)
		}
	}
	injectFirst(t, faultDrop, any1, freeze)
	ref := AggregateRef{Context: "order", ID: "o1"}
	_, err := st.Append(ctx, Decision{Aggregate: ref, Events: []Event{testEvent("o1", "order.placed")}, Fence: true})
	if !IsPolicyConflict(err) {
		t.Fatalf("fenced append after a freeze: %v, want a policy conflict", err)
	}
	if n := countOn(t, js, ref.Subject()); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}

package testkit

import (
	"context"
	"testing"

	"github.com/marketledger/ledger/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// jetStreamer is what a JetStream-backed store exposes for the tamper tests.
type jetStreamer interface {
	JetStream() jetstream.JetStream
}

// testJetStreamTamper goes around the store, straight to the server, and
// tries every way of removing or rewriting history that the JetStream API
// offers. The server must refuse each one and leave the stream as it was.
func (s *suite) testJetStreamTamper(t *testing.T) {
	ctx, st := s.ctx(t), s.newStore(t)
	jsr, ok := st.(jetStreamer)
	if !ok {
		t.Fatalf("ConformanceOptions.JetStream is set but %T has no JetStream method", st)
	}
	js := jsr.JetStream()
	ref := s.ref("order")
	a := s.mustAppend(ctx, t, st, decision(ref, 0, "placed", "confirmed"))
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	before := streamState(ctx, t, stream)
	attempts := []struct {
		name string
		do   func() error
	}{
		{"DeleteMsg", func() error { return stream.DeleteMsg(ctx, a.FirstPosition) }},
		{"SecureDeleteMsg", func() error { return stream.SecureDeleteMsg(ctx, a.LastPosition) }},
		{"Purge", func() error { return stream.Purge(ctx) }},
		{"Purge of one subject", func() error { return stream.Purge(ctx, jetstream.WithPurgeSubject(ref.Subject())) }},
		{"Purge up to a position", func() error { return stream.Purge(ctx, jetstream.WithPurgeSequence(a.LastPosition)) }},
		{"Purge keeping the newest", func() error { return stream.Purge(ctx, jetstream.WithPurgeKeep(1)) }},
		{"allowing deletes", func() error { return updateStream(ctx, js, func(c *jetstream.StreamConfig) { c.DenyDelete = false }) }},
		{"allowing purges", func() error { return updateStream(ctx, js, func(c *jetstream.StreamConfig) { c.DenyPurge = false }) }},
		{"allowing rollups", func() error { return updateStream(ctx, js, func(c *jetstream.StreamConfig) { c.AllowRollup = true }) }},
		{"a rollup message", func() error { return publishRollup(ctx, js, ref) }},
	}
	for _, at := range attempts {
		if err := at.do(); err == nil {
			t.Errorf("%s through the JetStream API was accepted; it must be refused", at.name)
		}
	}
	after := streamState(ctx, t, stream)
	if after != before {
		t.Errorf("stream changed by refused tampering:\n before %+v\n after  %+v", before, after)
	}
	if evs := mustLoad(ctx, t, st, ref); len(evs) != 2 {
		t.Errorf("aggregate has %d events after tampering, want 2", len(evs))
	}
	if info, err := stream.Info(ctx); err != nil {
		t.Errorf("stream info after tampering: %v", err)
	} else if err := events.CheckStreamConfig(info.Config); err != nil {
		t.Errorf("stream settings after tampering: %v", err)
	}
}

// tamperState is the part of a stream's state that any removal changes.
type tamperState struct {
	Msgs, FirstSeq, LastSeq uint64
	NumDeleted              int
	Bytes                   uint64
}

func streamState(ctx context.Context, t *testing.T, stream jetstream.Stream) tamperState {
	t.Helper()
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	st := info.State
	return tamperState{Msgs: st.Msgs, FirstSeq: st.FirstSeq, LastSeq: st.LastSeq, NumDeleted: st.NumDeleted, Bytes: st.Bytes}
}

// updateStream tries to change the stream's settings through the API.
func updateStream(ctx context.Context, js jetstream.JetStream, change func(*jetstream.StreamConfig)) error {
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return err
	}
	cfg := stream.CachedInfo().Config
	change(&cfg)
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// publishRollup publishes a message that would, if rollups were allowed,
// purge every earlier message of the aggregate's subjects.
func publishRollup(ctx context.Context, js jetstream.JetStream, ref events.AggregateRef) error {
	m := nats.NewMsg(events.SubjectPrefix + ref.Context + "." + ref.ID + ".rolled_up")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
	m.Data = []byte(`{}`)
	_, err := js.PublishMsg(ctx, m)
	return err
}

package judge

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamName is the stream that holds the ledger.
const StreamName = "LEDGER"

// Check reads stream through js from sequence 1 to the last sequence the
// stream held when the read began, with an ordered consumer, and judges
// it. Messages appended while it reads are left for the next check. It
// returns an error only when the log cannot be read; what is wrong with
// the log is in the report.
func Check(ctx context.Context, js jetstream.JetStream, stream string) (*Report, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	j := New()
	state := s.CachedInfo().State
	if state.Msgs == 0 {
		if state.LastSeq != 0 {
			j.find(FindingGap, state.LastSeq, "", "the stream is empty but its last sequence is %d", state.LastSeq)
		}
		return j.Report(), nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("stream %s: ordered consumer: %w", stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("stream %s: read: %w", stream, err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("stream %s: read after sequence %d of %d: %w", stream, j.r.LastSeq, state.LastSeq, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return nil, fmt.Errorf("stream %s: metadata after sequence %d: %w", stream, j.r.LastSeq, err)
		}
		j.Add(Msg{Seq: md.Sequence.Stream, Subject: m.Subject(), Header: m.Headers(), Data: m.Data(), Recorded: md.Timestamp})
		if md.Sequence.Stream >= state.LastSeq {
			return j.Report(), nil
		}
	}
}

// CheckConn is Check on a plain connection, in its default JetStream
// domain.
func CheckConn(ctx context.Context, nc *nats.Conn, stream string) (*Report, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return Check(ctx, js, stream)
}

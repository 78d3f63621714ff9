package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bounds of Follow's consumer. A consumer is created anew after any failure
// (two missed heartbeats, a consumer gone with its node, a delivery out of
// sequence), each creation bounded by followCreateWait, so that following
// resumes within a few seconds of a new stream leader.
//
// The client's ordered consumer, used before, re-created itself with
// unbounded retries of a request that a stream without a leader, or a
// consumer placed on a node that is down, never answers: a checkout runner
// following the log waited over a minute after a node was killed
// (TestLeaderFailoverUnderLoadLosesNoAcknowledgedEvent), and a policy view
// up to 11 s.
const (
	followHeartbeat  = time.Second
	followCreateWait = 2 * time.Second
	followPause      = 100 * time.Millisecond
	// followInactive is how long the server keeps a consumer nobody pulls
	// from: one left behind on a node that came back.
	followInactive = time.Minute
)

// Follow delivers every message on subjects (the store's own records
// included) from position from (or from the first recorded at or after
// fromTime, when set), in order, each once, to fn, until ctx ends (it then
// returns ctx's error) or fn returns an error (Follow returns it). It reads
// through a consumer of its own, with no acks, in memory, which it creates
// again from the position after the last message delivered whenever it
// fails: a follower rides through a leader change or a killed node without
// a gap, a repeat or a long wait.
func (s *JetStreamStore) Follow(ctx context.Context, subjects []string, from uint64, fromTime time.Time,
	fn func(m jetstream.Msg, meta *jetstream.MsgMetadata) error) error {
	return follow(ctx, s.js, subjects, from, fromTime, nil, fn)
}

// Follow is JetStreamStore.Follow over the LEDGER stream behind js, for a
// reader that holds no store: a read model engine, a policy view on a bare
// connection. It is the same code, with the same bounds.
func Follow(ctx context.Context, js jetstream.JetStream, subjects []string, from uint64, fromTime time.Time,
	fn func(m jetstream.Msg, meta *jetstream.MsgMetadata) error) error {
	return follow(ctx, js, subjects, from, fromTime, nil, fn)
}

// follow is Follow that also tells created, if set, how many messages a
// consumer has pending when it is created, and from which position (0: by
// time); an error from created ends follow with it.
func (s *JetStreamStore) follow(ctx context.Context, subjects []string, from uint64, fromTime time.Time,
	created func(next uint64, pending uint64) error, fn func(m jetstream.Msg, meta *jetstream.MsgMetadata) error) error {
	return follow(ctx, s.js, subjects, from, fromTime, created, fn)
}

func follow(ctx context.Context, js jetstream.JetStream, subjects []string, from uint64, fromTime time.Time,
	created func(next uint64, pending uint64) error, fn func(m jetstream.Msg, meta *jetstream.MsgMetadata) error) error {
	next := max(from, 1)
	for {
		var stop error
		onCreate := func(pending uint64) error {
			if created == nil {
				return nil
			}
			at := next
			if !fromTime.IsZero() {
				at = 0
			}
			if err := created(at, pending); err != nil {
				stop = err
				return err
			}
			return nil
		}
		err := followOnce(ctx, js, subjects, next, fromTime, onCreate, func(m jetstream.Msg, meta *jetstream.MsgMetadata) error {
			if err := fn(m, meta); err != nil {
				stop = err
				return err
			}
			next, fromTime = meta.Sequence.Stream+1, time.Time{}
			return nil
		})
		switch {
		case stop != nil:
			return stop
		case ctx.Err() != nil:
			return ctx.Err()
		case KindOf(err) == KindIntegrity:
			return err
		case errors.Is(err, jetstream.ErrStreamNotFound):
			return &Error{Op: "events.Follow", Kind: KindUnavailable, Rule: "stream " + StreamName + " not found", Err: err}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(followPause):
		}
	}
}

// followOnce creates one consumer from next (or fromTime) and delivers what
// it sends until it fails or fn refuses a message.
func followOnce(ctx context.Context, js jetstream.JetStream, subjects []string, next uint64, fromTime time.Time,
	created func(pending uint64) error, fn func(m jetstream.Msg, meta *jetstream.MsgMetadata) error) error {
	cfg := jetstream.ConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy: jetstream.AckNonePolicy, Replicas: 1, MemoryStorage: true, InactiveThreshold: followInactive}
	switch {
	case !fromTime.IsZero():
		t := fromTime
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	case next > 1:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, next
	}
	cctx, cancel := context.WithTimeout(ctx, followCreateWait)
	cons, err := js.CreateConsumer(cctx, StreamName, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		// Best effort: a consumer on a node that is gone is removed by
		// followInactive.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), followCreateWait)
		defer cancel()
		_ = js.DeleteConsumer(dctx, StreamName, cons.CachedInfo().Name)
	}()
	if err := created(cons.CachedInfo().NumPending); err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024), jetstream.PullHeartbeat(followHeartbeat),
		jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for delivered := uint64(0); ; delivered++ {
		m, err := it.Next()
		if err != nil {
			return err
		}
		meta, err := m.Metadata()
		if err != nil {
			return &Error{Op: "events.Follow", Kind: KindIntegrity, Err: err}
		}
		if meta.Sequence.Consumer != delivered+1 {
			// A message the consumer skipped (a pull lost over a
			// reconnect): read again from the last one delivered.
			return fmt.Errorf("consumer delivered %d after %d", meta.Sequence.Consumer, delivered)
		}
		if err := fn(m, meta); err != nil {
			return err
		}
	}
}

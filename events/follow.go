package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
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
//
// followCreateWait was 2 s. Measured over 1,550 creations in the failover
// test (three nats-server processes on two cores, a node killed under
// load): a creation that was answered took p50 3 ms, p99 49 ms, p99.9
// 117 ms, at most 140 ms. An unanswered one is a stream without a leader
// (an election; the leader-elected advisory ends that wait at once) or a
// consumer placed on a node that is down (the server places a consumer on
// a killed node until it has missed it for long): 1 s is seven times the
// slowest answer, with room for a loaded machine, and is what such a
// placement costs before the next one.
const (
	followHeartbeat  = time.Second
	followCreateWait = time.Second
	followPause      = 100 * time.Millisecond
	// followInactive is how long the server keeps a consumer nobody pulls
	// from: one left behind on a node that came back.
	followInactive = time.Minute
	// followStallWait is how long Follow waits for its consumer's next
	// message before it asks the stream leader whether one is stored for it
	// (see stallWatch).
	followStallWait = time.Second
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
	elected := watchElections(js.Conn())
	defer elected.close()
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
		err := followOnce(ctx, js, elected, subjects, next, fromTime, onCreate, func(m jetstream.Msg, meta *jetstream.MsgMetadata) error {
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
func followOnce(ctx context.Context, js jetstream.JetStream, elected *elections, subjects []string, next uint64, fromTime time.Time,
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
	// A creation sent while the stream had no leader is never answered: it
	// is given up as soon as the stream elects one, and sent again.
	cctx, cancel := elected.until(ctx, followCreateWait)
	cons, err := js.CreateConsumer(cctx, StreamName, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		// Best effort, and not waited for: the delete of a consumer whose
		// node is gone is answered by no one, and waiting for it delayed
		// the next consumer by followCreateWait after every killed node.
		// One left behind is removed by followInactive.
		name := cons.CachedInfo().Name
		go func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), followCreateWait)
			defer cancel()
			_ = js.DeleteConsumer(dctx, StreamName, name)
		}()
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
	w := &stallWatch{nc: js.Conn(), subjects: subjects, stop: it.Stop}
	if fromTime.IsZero() {
		w.next.Store(next)
	}
	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	go w.run(wctx)
	for delivered := uint64(0); ; delivered++ {
		w.waiting.Store(time.Now().UnixNano())
		m, err := it.Next()
		w.waiting.Store(0)
		if err != nil {
			if stalled := w.stalled.Load(); stalled != nil {
				err = *stalled
			}
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
		w.next.Store(meta.Sequence.Stream + 1)
		if err := fn(m, meta); err != nil {
			return err
		}
	}
}

// errFollowStalled ends a consumer that stopped delivering.
var errFollowStalled = errors.New("the consumer delivered nothing while the stream leader held a message for it")

// stallWatch ends a consumer that stopped delivering what the stream holds
// for it while it still sends heartbeats, which the missing-heartbeat check
// cannot see: a consumer paused by an operator (nats-server pauses pull
// consumers and keeps answering pulls with heartbeats), or one whose
// replica stopped applying the stream. Without it a follower would wait on
// such a consumer without bound.
//
// While Follow has waited for its next message for followStallWait, the
// watch asks the stream leader for the first message on its subjects at or
// after the position it waits for. If the leader names one, and one
// followStallWait later Follow still waits for that position, the
// consumer is stalled: the watch stops it, and Follow creates another from
// the same position. Two looks rather than one message's age, so that no
// clock of the client is compared with the server's. A leader that does
// not answer (an election) leaves the consumer alone. An idle follower
// costs one leader read per subject per followStallWait; a stalled
// consumer is replaced within two to three of them.
type stallWatch struct {
	nc       *nats.Conn
	subjects []string
	stop     func()
	next     atomic.Uint64 // the position waited for; 0: not known yet (by time)
	waiting  atomic.Int64  // unix nanoseconds since Follow waits; 0: not waiting
	stalled  atomic.Pointer[error]
}

func (w *stallWatch) run(ctx context.Context) {
	tick := time.NewTicker(followStallWait)
	defer tick.Stop()
	var seen uint64 // the position a stored message was found for at the last look
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		since, next := w.waiting.Load(), w.next.Load()
		if since == 0 || next == 0 || time.Since(time.Unix(0, since)) < followStallWait {
			seen = 0
			continue
		}
		if seen == next {
			err := error(&Error{Op: "events.Follow", Kind: KindUnavailable, Field: fmt.Sprintf("position %d", next), Err: errFollowStalled})
			w.stalled.Store(&err)
			w.stop()
			return
		}
		seen = 0
		if w.stored(ctx, next) {
			seen = next
		}
	}
}

// stored reports whether the stream leader holds a message on the watched
// subjects at or after position next; no answer is taken as no.
func (w *stallWatch) stored(ctx context.Context, next uint64) bool {
	for _, subj := range w.subjects {
		body, _ := json.Marshal(map[string]any{"seq": next, "next_by_subj": subj})
		rctx, cancel := context.WithTimeout(ctx, followStallWait)
		resp, err := w.nc.RequestWithContext(rctx, "$JS.API.STREAM.MSG.GET."+StreamName, body)
		cancel()
		if err != nil {
			return false
		}
		var r struct {
			Error   *jetstream.APIError `json:"error"`
			Message *struct {
				Seq uint64 `json:"seq"`
			} `json:"message"`
		}
		if json.Unmarshal(resp.Data, &r) == nil && r.Error == nil && r.Message != nil && r.Message.Seq >= next {
			return true
		}
	}
	return false
}

// elections follows the LEDGER stream's leader-elected advisory for one
// Follow; every user of the log may subscribe to it (node/auth).
type elections struct {
	sub *nats.Subscription
	mu  sync.Mutex
	ch  chan struct{} // closed at the next election
}

func watchElections(nc *nats.Conn) *elections {
	e := &elections{ch: make(chan struct{})}
	// Without the advisory (no subscription), a creation waits out
	// followCreateWait instead: slower, never less safe.
	e.sub, _ = nc.Subscribe(leaderElectedSubject, func(*nats.Msg) {
		e.mu.Lock()
		close(e.ch)
		e.ch = make(chan struct{})
		e.mu.Unlock()
	})
	return e
}

// until returns a context that ends after d, at the next election, or
// with ctx, whichever comes first.
func (e *elections) until(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	e.mu.Lock()
	ch := e.ch
	e.mu.Unlock()
	ectx, cancel := context.WithTimeout(ctx, d)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ectx.Done():
		}
	}()
	return ectx, cancel
}

func (e *elections) close() {
	if e.sub != nil {
		_ = e.sub.Unsubscribe()
	}
}

package events

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"go.uber.org/zap"
)

// A batch sent while the stream changes leader can be dropped without an
// answer: nats-server v2.15.2 drops a batch that reaches the old leader after
// its Raft node stepped down and before it unsubscribed (ADR 0004). Rather
// than wait out batchTimeout for an answer that never comes, the store sends
// the same messages again as soon as it learns of the election (the stream's
// leader-elected advisory) or, without that news, after firstAckWait. A
// resend carries the same event ids (Nats-Msg-Id) and the same checks, so
// the log can hold at most one of the two sends: the per-aggregate check of a
// decision's first event fails once the decision is stored, the idempotency
// record's subject must be empty, the fence record checks the same policy
// position, and within the server's dedupe window a stored id is refused
// (10201). Whatever the resend is answered, the store learns which send, if
// any, was stored by reading the log (resolveBatch), never by assuming.

// firstAckWait is how long a batch waits for its answer before it is sent
// again. Measured on three nodes on two cores under the fault bench's 64
// clients without faults (fsync always, docs/performance.md "Leader
// changes"): a batch's answer took p50 3 ms, p99 16 ms, p99.9 30 ms and at
// most 42 ms over 7,475 batches, so half a second of silence (ten times the
// slowest, room for a loaded machine or the race detector) means the batch
// was lost, not slow. A slow batch sent again costs a refusal and a few
// reads, never a second store. A stepdown does not wait even this long:
// the leader-elected advisory wakes the batch.
const firstAckWait = 500 * time.Millisecond

// resendPauseMax bounds the pause before a resend that found no stream
// leader to take it (no responders): an election under way ends in well
// under a second on a healthy cluster.
const resendPauseMax = 100 * time.Millisecond

// leaderElectedSubject is the advisory the stream's new leader publishes.
const leaderElectedSubject = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED." + StreamName

// watchLeader follows the stream's leader elections.
func (s *JetStreamStore) watchLeader() error {
	sub, err := s.nc.Subscribe(leaderElectedSubject, func(*nats.Msg) { s.noteLeaderChange() })
	if err != nil {
		return err
	}
	s.advisory = sub
	return nil
}

// noteLeaderChange wakes every batch waiting for an answer.
func (s *JetStreamStore) noteLeaderChange() {
	s.mu.Lock()
	close(s.leaderChange)
	s.leaderChange = make(chan struct{})
	s.mu.Unlock()
	s.stats.leaderChanges.Add(1)
}

// leaderChanged returns a channel closed at the next leader election.
func (s *JetStreamStore) leaderChanged() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leaderChange
}

// sendFault, set by tests only, injects what a leader change does to one
// send of a batch.
var sendFault func(msgs []*nats.Msg) fault

type fault int

const (
	faultNone       fault = iota
	faultDrop             // the batch never reaches the log (no answer)
	faultLoseAnswer       // the batch is stored but its answer is lost
)

// errLeaderChanged is the cause of a send given up on because the stream
// elected a leader while it waited for its answer.
var errLeaderChanged = errors.New("the stream elected a new leader while the batch waited for its answer")

// publishOnce sends msgs as one atomic batch and waits for its answer at
// most wait, or until the stream elects a leader.
func (s *JetStreamStore) publishOnce(msgs []*nats.Msg, wait time.Duration) (*jetstreamext.BatchAck, error) {
	if f := sendFault; f != nil {
		switch f(msgs) {
		case faultDrop:
			return nil, context.DeadlineExceeded
		case faultLoseAnswer:
			jetstreamext.PublishMsgBatch(context.Background(), s.js, msgs, jetstreamext.BatchFlowControl{AckTimeout: wait})
			return nil, context.DeadlineExceeded
		}
	}
	ctx, cancel := context.WithTimeoutCause(context.Background(), wait, context.DeadlineExceeded)
	defer cancel()
	changed := s.leaderChanged()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-ctx.Done():
		}
	}()
	ack, err := jetstreamext.PublishMsgBatch(ctx, s.js, msgs, jetstreamext.BatchFlowControl{AckFirst: false, AckTimeout: wait})
	if err != nil && errors.Is(err, context.Canceled) {
		err = errLeaderChanged
	}
	return ack, err
}

// publishBatch commits msgs as one atomic batch within batchTimeout. A send
// without an answer is sent again (see the comment at the top of this file);
// a refusal that may be due to an earlier send of the same batch is resolved
// by reading: the batch stored by that send is answered as committed, and a
// refusal is returned only when that send can never be stored either. The
// error of a batch whose fate is still unknown at the deadline is returned
// for the caller to resolve (resolveUnknown).
func (s *JetStreamStore) publishBatch(msgs []*nats.Msg) (*jetstreamext.BatchAck, error) {
	deadline := time.Now().Add(batchTimeout)
	uncertain := false // an earlier send may have been stored
	inflight := 0
	for {
		ack, err := s.publishOnce(msgs, min(firstAckWait, max(time.Until(deadline), time.Millisecond)))
		if err == nil {
			return ack, nil
		}
		if isTooManyInflight(err) && inflight < inflightRetries {
			inflight++
			time.Sleep(time.Duration(inflight) * time.Millisecond)
			continue
		}
		if uncertain && apiCode(err) != 0 {
			switch first, state := s.resolveBatch(msgs); state {
			case batchStored:
				s.stats.resolvedStored.Add(1)
				return &jetstreamext.BatchAck{Stream: StreamName, Sequence: first + uint64(len(msgs)) - 1}, nil
			case batchDead:
				uncertain = false
			}
		}
		if !uncertain && apiCode(err) != 0 && !batchLost(err) {
			return nil, err // a refusal of this batch alone: nothing stored
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		// No answer (or a refusal that an earlier send may explain, or a
		// batch the server never received whole): send it again.
		uncertain = uncertain || apiCode(err) == 0 && !errors.Is(err, nats.ErrNoResponders)
		s.stats.resends.Add(1)
		if errors.Is(err, nats.ErrNoResponders) || apiCode(err) != 0 {
			s.pauseForLeader(resendPauseMax)
		}
		s.log.Debug("batch sent again", zap.Int("messages", len(msgs)), zap.Error(err))
	}
}

// pauseForLeader waits at most d, less if the stream elects a leader.
func (s *JetStreamStore) pauseForLeader(d time.Duration) {
	t := time.NewTimer(jitter(d) + time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.leaderChanged():
	}
}

// batchLost reports a refusal that says the server did not receive the
// batch whole (a leader change between its messages): nothing stored, and
// the same batch may be sent again.
func batchLost(err error) bool {
	switch apiCode(err) {
	case jetstreamext.JSErrCodeBatchPublishIncomplete, jetstreamext.JSErrCodeBatchPublishMissingSeq:
		return true
	}
	return false
}

type batchState int

const (
	batchPending batchState = iota // not stored yet; may still be
	batchStored                    // stored: first is its first position
	batchDead                      // not stored and never will be
)

// resolveBatch reads whether an earlier send of msgs was stored. The batch's
// first message is a decision's first event and checks that its aggregate's
// last position is e0: if the batch was stored, its first event is the
// aggregate's first message after e0. If another message is there instead,
// the batch's check can never pass again. If there is none, the batch is not
// stored yet; it is dead if another of its checks names a subject that
// holds a message after the expected position, provided the first read still
// finds nothing after that (the batch would have been stored before such a
// message, since its own check would have passed first).
func (s *JetStreamStore) resolveBatch(msgs []*nats.Msg) (uint64, batchState) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	first := msgs[0]
	slot := func() (uint64, batchState, bool) {
		subj, after, ok := checkOf(first)
		if !ok {
			return 0, batchPending, false
		}
		m, err := s.nextOnSubject(ctx, subj, after)
		switch {
		case err != nil:
			return 0, batchPending, false
		case m == nil:
			return 0, batchPending, true
		case m.Header.Get(HeaderID) == first.Header.Get(HeaderID):
			return m.Sequence, batchStored, true
		default:
			return 0, batchDead, true
		}
	}
	seq, state, ok := slot()
	if !ok || state != batchPending {
		return seq, state
	}
	for _, m := range msgs[1:] {
		subj, after, ok := checkOf(m)
		if !ok {
			continue
		}
		other, err := s.nextOnSubject(ctx, subj, after)
		if err != nil {
			return 0, batchPending
		}
		if other == nil {
			continue
		}
		// Something is stored after this check's position. Unless the
		// batch itself was stored meanwhile, its check can never pass.
		seq, state, ok := slot()
		if !ok {
			return 0, batchPending
		}
		if state == batchPending {
			return 0, batchDead
		}
		return seq, state
	}
	return 0, batchPending
}

// checkOf returns the subject and position a message's expected-sequence
// check names.
func checkOf(m *nats.Msg) (subject string, after uint64, ok bool) {
	v := m.Header.Get(jetstream.ExpectedLastSubjSeqHeader)
	if v == "" {
		return "", 0, false
	}
	after, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return "", 0, false
	}
	subject = m.Header.Get(jetstream.ExpectedLastSubjSeqSubjHeader)
	if subject == "" {
		subject = m.Subject
	}
	return subject, after, true
}

// nextOnSubject reads, from the stream leader, the first message after
// position after on subject (a filter), or nil if there is none.
func (s *JetStreamStore) nextOnSubject(ctx context.Context, subject string, after uint64) (*storedMsg, error) {
	return s.msgGet(ctx, map[string]any{"seq": after + 1, "next_by_subj": subject})
}

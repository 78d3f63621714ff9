package events

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"go.uber.org/zap"
)

// commitLoop is the group committer. It keeps up to s.depth batches in
// flight; while they are, new decisions queue, and the next batch takes all
// of them (up to MaxBatchMsgs). A decision on an aggregate that is already in
// a forming or in-flight batch waits: its expected version can only be
// checked once the earlier decision is settled. At most one batch with fenced
// decisions is in flight, because on a replicated stream concurrent checks on
// the same policy subject refuse each other (JetStream error 10164). Policy
// decisions win: while one waits or is in flight, no new batch with fenced
// decisions is sent (they would be refused after it anyway), so a freeze
// never queues behind this process's own fenced load.
func (s *JetStreamStore) commitLoop() {
	defer close(s.done)
	var carry []*pending
	inflight := 0
	busy := make(map[AggregateRef]bool)
	fencedBusy, sourceBusy := false, 0
	finished := make(chan []*pending, s.depth)
	release := func(b []*pending) {
		inflight--
		for _, p := range b {
			delete(busy, p.d.Aggregate)
			if p.d.Fence {
				fencedBusy = false
			}
			if s.isPolicy(p) {
				sourceBusy--
			}
		}
	}
	// Adaptive linger: under load the writers of the last batch come back
	// a moment after it settles, so with nothing in flight the next batch
	// waits (at most lingerMax) until as many decisions wait as went in the
	// last batch. When idle the last batch had one decision: no wait.
	lastBatch := 1
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	lingerArmed, lingerExpired := false, false
	for {
		waiting := len(carry) + len(s.queue)
		ready := len(carry) > 0 && inflight < s.depth &&
			(waiting >= fireAt || (inflight == 0 && (waiting >= min(lastBatch, fireAt) || lingerExpired)))
		if !ready {
			var lingerC <-chan time.Time
			if len(carry) > 0 && inflight == 0 && !lingerArmed && !lingerExpired {
				linger.Reset(lingerMax)
				lingerArmed = true
			}
			if lingerArmed {
				lingerC = linger.C
			}
			select {
			case p := <-s.queue:
				carry = append(carry, p)
			case b := <-finished:
				release(b)
			case <-s.closing:
				for ; inflight > 0; inflight-- {
					<-finished
				}
				s.failAll(carry)
				s.failQueued()
				return
			case <-lingerC:
				lingerArmed, lingerExpired = false, true
			}
			continue
		}
		batch, rest := s.collect(carry, busy, fencedBusy, sourceBusy > 0)
		carry = rest
		if len(batch) == 0 {
			release(<-finished) // everything waiting is behind an in-flight batch
			continue
		}
		lastBatch = len(batch)
		if lingerArmed {
			linger.Stop()
		}
		lingerArmed, lingerExpired = false, false
		inflight++
		for _, p := range batch {
			busy[p.d.Aggregate] = true
			fencedBusy = fencedBusy || p.d.Fence
			if s.isPolicy(p) {
				sourceBusy++
			}
		}
		go func() {
			s.commit(batch)
			finished <- batch
		}()
	}
}

// fireAt is how many decisions make a batch worth sending while another is
// still in flight.
var fireAt = 64

// lingerMax bounds the wait for the last batch's writers to come back.
var lingerMax = 1 * time.Millisecond

// isPolicy reports whether p is a policy decision: one that moves the fence.
func (s *JetStreamStore) isPolicy(p *pending) bool {
	return s.fenceSource != "" && p.d.Aggregate.Context == s.fenceSource
}

// collect builds one batch from the waiting decisions (oldest first) and
// whatever is queued now; what cannot go in this batch is returned in rest,
// in order. Fenced decisions are held back while a policy decision waits or
// is in flight (sourceBusy): the policy decision goes first.
func (s *JetStreamStore) collect(carry []*pending, busy map[AggregateRef]bool, fencedBusy, sourceBusy bool) (batch, rest []*pending) {
	in := make(map[AggregateRef]bool)
	n := 0
	fenced, source := fencedBusy, false
	policyWaits := sourceBusy
	for _, p := range carry {
		policyWaits = policyWaits || s.isPolicy(p)
	}
	take := func(p *pending) {
		isSource := s.isPolicy(p)
		// A batch never mixes fenced decisions with policy decisions: the
		// fence must be checked against the policy as it was before the batch.
		if busy[p.d.Aggregate] || in[p.d.Aggregate] || n+len(p.msgs) > MaxBatchMsgs-1 ||
			(isSource && fenced) || (p.d.Fence && (source || fencedBusy || policyWaits)) {
			rest = append(rest, p)
			return
		}
		in[p.d.Aggregate] = true
		fenced, source = fenced || p.d.Fence, source || isSource
		policyWaits = policyWaits || isSource
		n += len(p.msgs)
		batch = append(batch, p)
	}
	for _, p := range carry {
		take(p)
	}
	for n < MaxBatchMsgs-1 && len(rest) < AppendQueueMax {
		select {
		case p := <-s.queue:
			take(p)
		default:
			return batch, rest
		}
	}
	return batch, rest
}

func (s *JetStreamStore) failAll(ps []*pending) {
	for _, p := range ps {
		p.result <- appendResult{err: &Error{Op: "events.Append", Kind: KindUnavailable, Rule: "store closed before the decision was sent; nothing stored"}}
	}
}

func (s *JetStreamStore) failQueued() {
	for {
		select {
		case p := <-s.queue:
			p.result <- appendResult{err: &Error{Op: "events.Append", Kind: KindUnavailable, Rule: "store closed before the decision was sent; nothing stored"}}
		default:
			return
		}
	}
}

// commit sends a batch and settles every decision in it. Decisions whose
// head moved since they were sealed, and fenced decisions made under an older
// policy than another decision of the batch has seen, fail fast unsent.
func (s *JetStreamStore) commit(batch []*pending) {
	span := batchSpan(batch)
	defer span.End()
	if s.observer != nil {
		start, msgs := time.Now(), 0
		for _, p := range batch {
			msgs += len(p.msgs)
		}
		defer func() { s.observer.Committed(len(batch), msgs, time.Since(start)) }()
	}
	s.mu.Lock()
	for _, p := range batch {
		if p.d.Fence && p.d.Events[0].PolicyPosition > s.fenceHead {
			s.fenceHead = p.d.Events[0].PolicyPosition
		}
	}
	fenceHead := s.fenceHead
	s.mu.Unlock()
	live := batch[:0:0]
	for _, p := range batch {
		s.mu.Lock()
		h, ok := s.heads[p.d.Aggregate]
		s.mu.Unlock()
		switch {
		case ok && h.version > p.expect.version:
			s.stats.conflicts.Add(1)
			p.result <- appendResult{err: conflict(p.d.Aggregate, p.expect.version, h.version)}
		case p.d.Fence && p.d.Events[0].PolicyPosition < fenceHead:
			p.result <- appendResult{err: s.policyConflict(p.d.Events[0].PolicyPosition, fenceHead)}
		default:
			live = append(live, p)
		}
	}
	if len(live) > 0 {
		s.send(live)
	}
}

func (s *JetStreamStore) policyConflict(decided, now uint64) error {
	s.stats.policyConflicts.Add(1)
	return policyConflict(decided, now)
}

func policyConflict(decided, now uint64) error {
	return &Error{Op: "events.Append", Kind: KindConflict, Reason: ReasonPolicyMoved, Field: "policy_position",
		Rule: fmt.Sprintf("decided under policy position %d but the policy is at %d: decide again under the current policy", decided, now)}
}

// send commits live as one atomic batch. If any decision is fenced, the batch
// ends with a fence record that checks the policy position the fenced
// decisions were made under; a batch of policy decisions ends with a fence
// record that checks the policy head before it. The server refuses the whole
// batch if the check fails. A refused check splits the batch in halves until
// the failing decision is alone.
func (s *JetStreamStore) send(live []*pending) { s.sendAttempt(live, 0) }

// contendedRetries bounds the resends of a lone decision refused with 10164.
const contendedRetries = 3

// fencedYieldRetries bounds the resends of a whole fenced batch refused with
// 10164 while the policy head has not moved: another check on the policy
// subject is in flight, perhaps a policy batch, and the fenced batch yields to
// it (backs off for fencedYieldMax_ms, jittered) rather than splitting.
const fencedYieldRetries = 4

// fencedYieldMax is the longest back-off of a fenced batch that yields.
const fencedYieldMax = 8 * time.Millisecond

func (s *JetStreamStore) sendAttempt(live []*pending, attempt int) {
	// The fence checks the policy position the batch's fenced decisions
	// were made under, never the committer's newest: a batch split and
	// resent after the policy moved must still be refused.
	live, decidedAt, nfenced := s.sameFence(live)
	if len(live) == 0 {
		return
	}
	if s.hasPolicy(live) {
		s.sendPolicy(live)
		return
	}
	var msgs []*nats.Msg
	for _, p := range live {
		msgs = append(msgs, p.msgs...)
	}
	if nfenced > 0 {
		msgs = append(msgs, s.fenceMsg(live, decidedAt, nfenced))
	}
	ack, err := s.publishBatch(msgs)
	switch {
	case err == nil:
		s.settle(live, ack.Sequence-uint64(len(msgs))+1)
	case isCheckFailure(err) && nfenced > 0 && s.fenceMovedFrom(decidedAt):
		var unfenced []*pending
		for _, p := range live {
			if p.d.Fence {
				p.result <- appendResult{err: s.policyConflict(p.d.Events[0].PolicyPosition, s.currentFence())}
			} else {
				unfenced = append(unfenced, p)
			}
		}
		if len(unfenced) > 0 {
			s.send(unfenced)
		}
	case nfenced > 0 && apiCode(err) == jetstream.JSErrCodeStreamWrongLastSequenceConstant && attempt < fencedYieldRetries:
		// Another check on the policy subject is in flight. It may be a
		// policy batch from another process: yield to it, so that a freeze
		// is not starved by fenced load, and send the batch again whole.
		time.Sleep(jitter(fencedYieldMax))
		s.sendAttempt(live, attempt+1)
	case isCheckFailure(err) && len(live) > 1:
		mid := len(live) / 2
		s.send(live[:mid])
		s.send(live[mid:])
	case isCheckFailure(err) && apiCode(err) == jetstream.JSErrCodeStreamWrongLastSequenceConstant && attempt < contendedRetries:
		// On a replicated stream 10164 also means another append with the
		// same check is still in flight: try again before calling it a
		// conflict (a real conflict fails again, cheaply).
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
		s.sendAttempt(live, attempt+1)
	case isCheckFailure(err):
		s.aggregateConflict(live[0], err)
	case isRefusal(err):
		s.refused(live, err)
	default:
		s.resolveUnknown(live, err)
	}
}

// sourceRetryWindow bounds how long a batch of policy decisions keeps
// resending while its fence check loses to other checks on the policy subject
// (10164) or to another policy batch (the head moved). Fenced batches yield to
// it, so it loses only while one is in flight; the bound turns a stuck cluster
// into an error rather than a hang.
const sourceRetryWindow = 5 * time.Second

// sourceRetryMax bounds the resends of a policy batch within the window.
const sourceRetryMax = 5000

// sourceBackoffMax is the longest pause between two sends of a policy batch:
// short, so that it takes the first moment no fenced check is in flight.
const sourceBackoffMax = 1 * time.Millisecond

// sendPolicy commits live, which holds policy decisions (and perhaps
// unfenced ones, never fenced ones), as one atomic batch ending with the
// policy fence record. The record checks the policy head as it was before the
// batch: the server evaluates the check against stored messages only, never
// the batch's own. It is the batch's last message because on a replicated
// stream the server holds the check's in-flight marker (which refuses every
// other check on the policy subject with 10164) until the message carrying it
// is applied, and applies a batch message by message: a check on the first
// message would let a fenced check pass against a position inside the batch
// while the rest is applied.
func (s *JetStreamStore) sendPolicy(live []*pending) {
	deadline := time.Now().Add(sourceRetryWindow)
	for attempt := 0; ; attempt++ {
		head, err := s.policyHead()
		if err != nil {
			s.resolveUnknown(live, err)
			return
		}
		var msgs []*nats.Msg
		npolicy := 0
		for _, p := range live {
			msgs = append(msgs, p.msgs...)
			if s.isPolicy(p) {
				npolicy += len(p.msgs)
			}
		}
		msgs = append(msgs, s.sourceFenceMsg(head, len(live), npolicy))
		ack, err := s.publishBatch(msgs)
		retry := attempt < sourceRetryMax && time.Now().Before(deadline)
		switch {
		case err == nil:
			s.settle(live, ack.Sequence-uint64(len(msgs))+1)
			return
		case apiCode(err) == jetstream.JSErrCodeStreamWrongLastSequenceConstant && retry:
			// A check on the policy subject (a fenced batch, most
			// likely) or on one of the batch's aggregates is in flight.
			time.Sleep(jitter(sourceBackoffMax))
			continue
		case isCheckFailure(err) && retry && s.policyHeadMovedFrom(head):
			continue // another policy batch got in first: check the new head
		case isCheckFailure(err) && len(live) > 1:
			// A real conflict on one of the batch's aggregates.
			mid := len(live) / 2
			s.send(live[:mid])
			s.send(live[mid:])
		case isCheckFailure(err):
			s.aggregateConflict(live[0], err)
		case isRefusal(err):
			s.refused(live, err)
		default:
			s.resolveUnknown(live, err)
		}
		return
	}
}

// hasPolicy reports whether live holds a policy decision.
func (s *JetStreamStore) hasPolicy(live []*pending) bool {
	for _, p := range live {
		if s.isPolicy(p) {
			return true
		}
	}
	return false
}

// jitter returns a random pause in [0, max): concurrent writers that lost to
// the same check do not come back in step.
func jitter(max time.Duration) time.Duration { return rand.N(max) }

func (s *JetStreamStore) aggregateConflict(p *pending, err error) {
	s.stats.conflicts.Add(1)
	s.learnHead(p.d.Aggregate)
	p.result <- appendResult{err: &Error{Op: "events.Append", Kind: KindConflict, Reason: ReasonStaleVersion, Field: "expected_version",
		Rule: "aggregate " + p.d.Aggregate.String() + " changed since the decision was made", Err: err}}
}

func (s *JetStreamStore) refused(live []*pending, err error) {
	for _, p := range live {
		p.result <- appendResult{err: &Error{Op: "events.Append", Kind: KindInvalid, Rule: "refused by the server; nothing stored", Err: err}}
	}
}

// fenceMsg is a batch's fence record: it carries the policy check and says,
// for auditors, how many decisions of the batch were made under it.
func (s *JetStreamStore) fenceMsg(live []*pending, policyPos uint64, nfenced int) *nats.Msg {
	ctx := s.fenceSource
	for _, p := range live {
		if p.d.Fence {
			ctx = p.d.Aggregate.Context
			break
		}
	}
	m := nats.NewMsg(SubjectPrefix + ctx + "." + fenceToken)
	m.Data = []byte(`{"policy_position":` + strconv.FormatUint(policyPos, 10) + `,"decisions":` + strconv.Itoa(nfenced) + `}`)
	s.setPolicyCheck(m, policyPos)
	return m
}

// sourceFenceMsg is the fence record that ends a batch of policy decisions
// (ledger.policy._fence). It checks that the policy head is still previous,
// and states it, with the count of the batch's messages on the policy subject
// before it, so that a follower of ledger.policy.> can check that it missed
// nothing: every message it saw after previous and before the record belongs
// to the batch, and there are exactly policyMsgs of them.
func (s *JetStreamStore) sourceFenceMsg(previous uint64, ndecisions, policyMsgs int) *nats.Msg {
	m := nats.NewMsg(s.FenceRecordSubject())
	p := strconv.FormatUint(previous, 10)
	m.Data = []byte(`{"policy_position":` + p + `,"previous_policy_position":` + p +
		`,"decisions":` + strconv.Itoa(ndecisions) + `,"policy_messages":` + strconv.Itoa(policyMsgs) + `}`)
	s.setPolicyCheck(m, previous)
	return m
}

func (s *JetStreamStore) setPolicyCheck(m *nats.Msg, policyPos uint64) {
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(policyPos, 10))
	m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, s.FenceSubject())
}

// policyHead reads the policy head from the stream leader, bounded.
func (s *JetStreamStore) policyHead() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	return s.PolicyHead(ctx)
}

// policyHeadMovedFrom reports whether the policy head is no longer head.
func (s *JetStreamStore) policyHeadMovedFrom(head uint64) bool {
	now, err := s.policyHead()
	return err == nil && now != head
}

// sameFence keeps the fenced decisions of live made under the newest policy
// position among them (failing the others: a newer policy exists) and
// returns that position and how many fenced decisions remain.
func (s *JetStreamStore) sameFence(live []*pending) ([]*pending, uint64, int) {
	var newest uint64
	for _, p := range live {
		if p.d.Fence && p.d.Events[0].PolicyPosition > newest {
			newest = p.d.Events[0].PolicyPosition
		}
	}
	kept, n := live[:0:0], 0
	for _, p := range live {
		switch {
		case !p.d.Fence:
			kept = append(kept, p)
		case p.d.Events[0].PolicyPosition < newest:
			p.result <- appendResult{err: s.policyConflict(p.d.Events[0].PolicyPosition, newest)}
		default:
			kept = append(kept, p)
			n++
		}
	}
	return kept, newest, n
}

// fenceMovedFrom asks the leader for the newest policy position and reports
// whether it differs from decidedAt, the position a refused batch's fenced
// decisions were made under (updating the committer's fence head).
func (s *JetStreamStore) fenceMovedFrom(decidedAt uint64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	pos, err := s.PolicyHead(ctx)
	if err != nil {
		return false
	}
	s.mu.Lock()
	s.fenceHead = pos // the leader's answer is authoritative, up or down
	s.mu.Unlock()
	return pos != decidedAt
}

func (s *JetStreamStore) currentFence() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fenceHead
}

// settle records the positions of a committed batch whose first message is
// at position first; batch messages are stored contiguously.
func (s *JetStreamStore) settle(live []*pending, first uint64) {
	s.stats.batches.Add(1)
	s.stats.decisions.Add(uint64(len(live)))
	pos := first
	for _, p := range live {
		nev := uint64(len(p.d.Events))
		a := Appended{Version: p.last.version, FirstPosition: pos, LastPosition: pos + nev - 1}
		pos += uint64(len(p.msgs))
		s.remember(p.d.Aggregate, head{version: p.last.version, seq: a.LastPosition, hash: p.last.hash})
		p.result <- appendResult{a: a}
	}
}

// resolveUnknown settles decisions whose batch outcome is unknown (a timeout
// or a lost connection): a decision whose last event is the aggregate's last
// stored event was committed; any other gets KindUnavailable.
func (s *JetStreamStore) resolveUnknown(live []*pending, cause error) {
	s.log.Warn("batch outcome unknown; resolving per aggregate", zap.Int("decisions", len(live)), zap.Error(cause))
	for _, p := range live {
		s.forget(p.d.Aggregate)
		ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
		m, err := s.getLast(ctx, p.d.Aggregate.Subject())
		cancel()
		lastID := p.d.Events[len(p.d.Events)-1].ID
		if err == nil && m != nil && m.Header.Get(HeaderID) == lastID {
			nev := uint64(len(p.d.Events))
			a := Appended{Version: p.last.version, FirstPosition: m.Sequence - nev + 1, LastPosition: m.Sequence}
			s.remember(p.d.Aggregate, head{version: p.last.version, seq: m.Sequence, hash: p.last.hash})
			p.result <- appendResult{a: a}
			continue
		}
		p.result <- appendResult{err: &Error{Op: "events.Append", Kind: KindUnavailable,
			Rule: "the log did not answer; the decision was not stored when checked, retry with the same idempotency key", Err: cause}}
	}
}

func apiCode(err error) jetstream.ErrorCode {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode
	}
	return 0
}

// isCheckFailure: 10071 (wrong last sequence) on one node, 10164 on a
// replicated stream; both mean a check in the batch failed, nothing stored.
func isCheckFailure(err error) bool {
	c := apiCode(err)
	return c == jetstream.JSErrCodeStreamWrongLastSequence || c == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

func isTooManyInflight(err error) bool {
	c := apiCode(err)
	return c == jetstreamext.JSErrCodeAtomicPublishTooManyInflight || c == jetstreamext.JSErrCodeBatchPublishTooManyInflight
}

// isRefusal: the server answered with any other API error; nothing stored.
func isRefusal(err error) bool {
	return apiCode(err) != 0
}

// learnHead replaces the cached head of an aggregate with the leader's, so
// that the caller's reload is not served older data than the conflict it
// just lost (a lagging replica would answer a direct get).
func (s *JetStreamStore) learnHead(ref AggregateRef) {
	s.forget(ref)
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	m, err := s.getLast(ctx, ref.Subject())
	if err != nil || m == nil {
		return
	}
	if e, err := decode(m.Subject, m.Header, m.Data); err == nil {
		s.remember(ref, head{version: e.AggregateVersion, seq: m.Sequence, hash: e.Hash})
	}
}

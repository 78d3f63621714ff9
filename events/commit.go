package events

import (
	"context"
	"errors"
	"fmt"
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
// the same policy subject refuse each other (JetStream error 10164).
func (s *JetStreamStore) commitLoop() {
	defer close(s.done)
	var carry []*pending
	inflight := 0
	busy := make(map[AggregateRef]bool)
	fencedBusy := false
	finished := make(chan []*pending, s.depth)
	release := func(b []*pending) {
		inflight--
		for _, p := range b {
			delete(busy, p.d.Aggregate)
			if p.d.Fence {
				fencedBusy = false
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
		batch, rest := s.collect(carry, busy, fencedBusy)
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

// collect builds one batch from the waiting decisions (oldest first) and
// whatever is queued now; what cannot go in this batch is returned in rest,
// in order.
func (s *JetStreamStore) collect(carry []*pending, busy map[AggregateRef]bool, fencedBusy bool) (batch, rest []*pending) {
	in := make(map[AggregateRef]bool)
	n := 0
	fenced, source := fencedBusy, false
	take := func(p *pending) {
		isSource := p.d.Aggregate.Context == fenceContext
		// A batch never mixes fenced decisions with policy decisions: the
		// fence must be checked against the policy as it was before the batch.
		if busy[p.d.Aggregate] || in[p.d.Aggregate] || n+len(p.msgs) > MaxBatchMsgs-1 ||
			(isSource && fenced) || (p.d.Fence && (source || fencedBusy)) {
			rest = append(rest, p)
			return
		}
		in[p.d.Aggregate] = true
		fenced, source = fenced || p.d.Fence, source || isSource
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
	return &Error{Op: "events.Append", Kind: KindConflict, Field: "policy_position",
		Rule: fmt.Sprintf("decided under policy position %d but the policy is at %d: decide again under the current policy", decided, now)}
}

// send commits live as one atomic batch. If any decision is fenced, the batch
// ends with a fence record that checks the newest policy position; the server
// refuses the whole batch if a policy event was stored since. A refused
// check splits the batch in halves until the failing decision is alone.
func (s *JetStreamStore) send(live []*pending) { s.sendAttempt(live, 0) }

// contendedRetries bounds the resends of a lone decision refused with 10164.
const contendedRetries = 3

func (s *JetStreamStore) sendAttempt(live []*pending, attempt int) {
	// The fence checks the policy position the batch's fenced decisions
	// were made under, never the committer's newest: a batch split and
	// resent after the policy moved must still be refused.
	live, decidedAt, nfenced := s.sameFence(live)
	if len(live) == 0 {
		return
	}
	var msgs []*nats.Msg
	sourceHead, isSource, err := s.sourceFence(live)
	if err != nil {
		s.resolveUnknown(live, err)
		return
	}
	if isSource {
		// Policy decisions carry the same check as fenced ones, on the
		// newest policy position: on a replicated stream the server then
		// never has a policy append and a fenced batch in flight at once
		// (it refuses the second with 10164), so a fence cannot miss a
		// policy event that is proposed but not yet applied.
		msgs = append(msgs, fenceMsg(live, sourceHead, len(live)))
	}
	for _, p := range live {
		msgs = append(msgs, p.msgs...)
	}
	if nfenced > 0 {
		msgs = append(msgs, fenceMsg(live, decidedAt, nfenced))
	}
	ack, err := s.publishBatch(msgs)
	switch {
	case err == nil:
		first := ack.Sequence - uint64(len(msgs)) + 1
		if isSource {
			first++ // the source fence comes first
		}
		s.settle(live, first)
	case isCheckFailure(err) && isSource && attempt < sourceRetries:
		// Another policy event, or a fenced batch, got in first: read the
		// new head and try again (a real aggregate conflict fails again).
		time.Sleep(time.Duration(attempt+1) * 2 * time.Millisecond)
		s.sendAttempt(live, attempt+1)
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
		p := live[0]
		s.stats.conflicts.Add(1)
		s.learnHead(p.d.Aggregate)
		p.result <- appendResult{err: &Error{Op: "events.Append", Kind: KindConflict, Field: "expected_version",
			Rule: "aggregate " + p.d.Aggregate.String() + " changed since the decision was made", Err: err}}
	case isRefusal(err):
		for _, p := range live {
			p.result <- appendResult{err: &Error{Op: "events.Append", Kind: KindInvalid, Rule: "refused by the server; nothing stored", Err: err}}
		}
	default:
		s.resolveUnknown(live, err)
	}
}

// fenceMsg is the batch's fence record: it carries the policy check and
// says, for auditors, how many decisions of the batch were made under it.
func fenceMsg(live []*pending, policyPos uint64, nfenced int) *nats.Msg {
	ctx := fenceContext
	for _, p := range live {
		if p.d.Fence {
			ctx = p.d.Aggregate.Context
			break
		}
	}
	m := nats.NewMsg(SubjectPrefix + ctx + "." + fenceToken)
	m.Data = []byte(`{"policy_position":` + strconv.FormatUint(policyPos, 10) + `,"decisions":` + strconv.Itoa(nfenced) + `}`)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(policyPos, 10))
	m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, FenceSubject)
	return m
}

// sourceRetries bounds the resends of a policy batch whose head check lost.
const sourceRetries = 8

// sourceFence reports whether live holds policy decisions (a batch never
// mixes them with fenced ones) and, if so, the policy head to check.
func (s *JetStreamStore) sourceFence(live []*pending) (uint64, bool, error) {
	if len(live) == 0 || live[0].d.Aggregate.Context != fenceContext {
		return 0, false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	head, err := s.PolicyHead(ctx)
	return head, true, err
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

func (s *JetStreamStore) publishBatch(msgs []*nats.Msg) (*jetstreamext.BatchAck, error) {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
		ack, err := jetstreamext.PublishMsgBatch(ctx, s.js, msgs, jetstreamext.BatchFlowControl{AckFirst: false, AckTimeout: batchTimeout})
		cancel()
		if err == nil || attempt >= inflightRetries || !isTooManyInflight(err) {
			return ack, err
		}
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
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

package policyview

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
)

// Source is what the view needs from the log: a way to follow the policy
// subjects and the store's answer to "what is the newest policy position
// now?". *events.JetStreamStore implements it; a reader with a bare
// connection implements Follow with events.Follow. A Source that also has a
// method Logger() *zap.Logger gives the view its logger.
//
// Follow must behave as events.Follow does: deliver every message on
// subjects (the store's own records included) from position from, in
// order, each once, riding through the loss of its consumer, until ctx
// ends or fn returns an error, which it returns.
type Source interface {
	Follow(ctx context.Context, subjects []string, from uint64, fromTime time.Time,
		fn func(m jetstream.Msg, meta *jetstream.MsgMetadata) error) error
	PolicyHead(ctx context.Context) (uint64, error)
}

// RereadsMax bounds how many times in a row the view re-reads the policy log
// from its last verified record after finding it not continuous. A message
// the server skipped once is read again; one that is gone from the stream is
// not, and the view then stays closed until an operator acts.
const RereadsMax = 3

// rereadPause is the pause before the first re-read; the n-th waits n times
// as long.
const rereadPause = 200 * time.Millisecond

// followPause is the pause before following again after Follow gave up
// for another reason than a gap (the stream not found).
const followPause = 100 * time.Millisecond

// DefaultWaitMax bounds how long Snapshot waits for the view to catch up
// with the policy head. A view that cannot catch up within it refuses to
// hand out snapshots (KindUnavailable) rather than decide on stale rules.
const DefaultWaitMax = 10 * time.Second

// View follows ledger.policy.> and keeps the rules folded so far.
//
// The view checks that it misses no policy message: every policy batch ends
// with a record (events.PolicyFence) naming the policy position before the
// batch and the count of the batch's policy messages, and the view compares
// them with what it applied. On a mismatch it fails closed (Snapshot and Err
// report a *Discontinuity, KindUnavailable), goes back to the rules as of its
// last verified record and re-reads the log from there, at most RereadsMax
// times in a row; it opens again once a re-read verifies the record that
// showed the gap. Records of the older layout (first in their batch, no
// previous position) cannot be checked and are accepted.
//
// Concurrency contract: Snapshot, Position, Rules, Err and Breaks are safe
// for concurrent use by many goroutines; one goroutine started by Start
// applies events in log order. A snapshot is immutable: later events build a
// new Rules slice.
type View struct {
	src     Source
	waitMax time.Duration
	log     *zap.Logger
	// drop, set by tests only, hides the messages it returns true for, as a
	// server that skips a damaged block would.
	drop func(pos uint64) bool

	mu      sync.Mutex
	rules   Rules         // rules.Position: the newest message of ledger.policy.> applied
	changed chan struct{} // closed (and replaced) whenever pos moves
	err     error         // terminal: the view stopped and must not be trusted
	broken  error         // failed closed: the policy log is not continuous (a *Discontinuity inside)
	breaks  uint64        // gaps found so far

	// Owned by the follower goroutine.
	trail    trail  // positions applied since the last verified record
	good     Rules  // the rules as of the last verified record (or none)
	brokenAt uint64 // the record that showed the current gap
	rereads  int    // re-reads since the view was last continuous
	legacy   bool   // a record of the older layout was logged

	cancel context.CancelFunc
	done   chan struct{}
}

// Start begins following the policy events of src and waits, at most
// DefaultWaitMax, until the view has applied every policy event stored when
// it was called. A view that finds the policy log not continuous is returned
// failed closed (Err reports why), so that the operations it does not fence
// keep working. Close stops it.
func Start(ctx context.Context, src Source) (*View, error) {
	return start(ctx, src, nil)
}

func start(ctx context.Context, src Source, drop func(pos uint64) bool) (*View, error) {
	head, err := src.PolicyHead(ctx)
	if err != nil {
		return nil, err
	}
	log := zap.NewNop()
	if l, ok := src.(interface{ Logger() *zap.Logger }); ok && l.Logger() != nil {
		log = l.Logger().Named("policyview")
	}
	runCtx, cancel := context.WithCancel(context.Background())
	v := &View{src: src, waitMax: DefaultWaitMax, log: log, drop: drop, changed: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go v.follow(runCtx)
	if err := v.waitFor(ctx, head); err != nil {
		var gap *Discontinuity
		if errors.As(err, &gap) {
			return v, nil
		}
		v.Close()
		return nil, err
	}
	return v, nil
}

// Close stops following the log. Snapshots taken later fail.
func (v *View) Close() {
	v.cancel()
	<-v.done
}

// Snapshot returns the rules with the position they include. With refresh
// set (the store refused a decision with a policy conflict) it first asks
// the store for the policy head and waits, bounded, until the view has
// applied it, so the next decision is made under the newest policy.
func (v *View) Snapshot(ctx context.Context, refresh bool) (command.Policy[Rules], error) {
	if refresh {
		head, err := v.src.PolicyHead(ctx)
		if err != nil {
			return command.Policy[Rules]{}, err
		}
		if err := v.waitFor(ctx, head); err != nil {
			return command.Policy[Rules]{}, err
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.errLocked(); err != nil {
		return command.Policy[Rules]{}, err
	}
	return command.Policy[Rules]{Position: v.rules.Position, Rules: v.rules}, nil
}

// Err returns nil while the view hands out snapshots, and otherwise why it
// refuses to: it stopped, or it failed closed because the policy log it read
// is not continuous (the error then wraps a *Discontinuity). Readiness
// checks report it.
func (v *View) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.errLocked()
}

func (v *View) errLocked() error {
	if v.err != nil {
		return v.err
	}
	return v.broken
}

// Breaks returns how many times the view found the policy log not
// continuous since it started.
func (v *View) Breaks() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.breaks
}

// Position returns the position of the newest policy message applied.
func (v *View) Position() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.rules.Position
}

// Rules returns the rules folded so far.
func (v *View) Rules() Rules {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.rules
}

// waitFor blocks until the view has applied position target.
func (v *View) waitFor(ctx context.Context, target uint64) error {
	timer := time.NewTimer(v.waitMax)
	defer timer.Stop()
	for {
		v.mu.Lock()
		pos, err, ch := v.rules.Position, v.errLocked(), v.changed
		v.mu.Unlock()
		switch {
		case err != nil:
			return err
		case pos >= target:
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return &events.Error{Op: "policyview.Snapshot", Kind: events.KindUnavailable, Err: ctx.Err()}
		case <-timer.C:
			return &events.Error{Op: "policyview.Snapshot", Kind: events.KindUnavailable, Field: "policy_position",
				Rule: fmt.Sprintf("view at %d did not reach policy head %d within %s", pos, target, v.waitMax)}
		}
	}
}

// follow reads ledger.policy.> through the source's Follow until ctx ends.
// Follow itself rides through the loss of its consumer; the view follows
// again only after a gap, from its last verified record, at most
// RereadsMax times in a row, or after the log was unreachable (the stream
// not found), after a pause.
func (v *View) follow(ctx context.Context) {
	defer close(v.done)
	for ctx.Err() == nil {
		from := v.Position() + 1
		err := v.src.Follow(ctx, []string{contracts.PolicySubject}, from, time.Time{},
			func(m jetstream.Msg, meta *jetstream.MsgMetadata) error { return v.apply(m, meta) })
		if err == nil || ctx.Err() != nil {
			break
		}
		pause := followPause
		var gap *Discontinuity
		switch {
		case errors.As(err, &gap):
			v.rereads++
			if v.rereads > RereadsMax {
				v.closeForGood(gap)
				return
			}
			pause = time.Duration(v.rereads) * rereadPause
			v.log.Warn("re-reading the policy log from the last verified record", zap.Uint64("from", v.good.Position+1),
				zap.Int("reread", v.rereads), zap.Int("rereads_max", RereadsMax))
		case events.KindOf(err) == events.KindIntegrity:
			v.fail(err)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
	v.fail(&events.Error{Op: "policyview", Kind: events.KindUnavailable, Rule: "policy view closed"})
}

// closeForGood leaves the view failed closed: the gap is still there after
// RereadsMax re-reads, so the message is gone from the stream as this server
// serves it.
func (v *View) closeForGood(gap *Discontinuity) {
	v.log.Error("policy log still not continuous after re-reading it; fenced decisions stay refused until an operator acts (docs/operations.md)",
		zap.Uint64("record", gap.Record), zap.Uint64("previous_policy_position", gap.Previous),
		zap.Uint64("last_applied", gap.LastApplied), zap.Int("rereads", RereadsMax), zap.Error(gap))
	v.mu.Lock()
	defer v.mu.Unlock()
	v.broken = &events.Error{Op: "policyview", Kind: events.KindUnavailable, Field: "policy_position",
		Rule: fmt.Sprintf("still missing after %d re-reads; an operator must restore the stream and restart the service", RereadsMax), Err: gap}
	v.notifyLocked()
}

// apply folds one message. Control records on policy subjects (the store's
// fences and idempotency records) move the position without changing the
// rules: the store's fence compares against every message on the subjects.
// A policy batch's record is first checked against the messages applied
// since the previous one; a gap returns a *Discontinuity and leaves the view
// failed closed at its last verified record.
func (v *View) apply(m jetstream.Msg, meta *jetstream.MsgMetadata) error {
	pos := meta.Sequence.Stream
	if v.drop != nil && v.drop(pos) {
		return nil
	}
	var payload any
	verified := false
	switch {
	case m.Subject() == contracts.PolicyFenceRecordSubject:
		f, err := events.DecodePolicyFence(m.Data())
		if err != nil {
			return &events.Error{Op: "policyview", Kind: events.KindIntegrity, Field: fmt.Sprint(pos), Err: err}
		}
		if f.Legacy() {
			v.noteLegacy(pos)
			break
		}
		if gap := v.trail.check(pos, f); gap != nil {
			return v.breakAt(gap)
		}
		verified = true
	case !events.IsControlSubject(m.Subject()):
		e, err := events.Decode(m.Subject(), m.Headers(), m.Data())
		if err != nil {
			return &events.Error{Op: "policyview", Kind: events.KindIntegrity, Field: fmt.Sprint(pos), Err: err}
		}
		if payload, err = contracts.Decode(e.Type, e.SchemaVersion, e.Data); err != nil {
			return &events.Error{Op: "policyview", Kind: events.KindIntegrity, Field: fmt.Sprint(pos), Err: err}
		}
	}
	v.mu.Lock()
	v.rules = v.rules.Apply(pos, payload)
	recovered := false
	if verified {
		v.good = v.rules
		if v.broken != nil && pos >= v.brokenAt {
			v.broken, recovered = nil, true
		}
	}
	v.notifyLocked()
	v.mu.Unlock()
	if !verified {
		v.trail.add(pos)
		return nil
	}
	v.trail.restart(pos)
	if recovered {
		v.rereads = 0
		v.log.Info("policy log continuous again after re-reading it", zap.Uint64("record", pos))
	}
	return nil
}

// breakAt fails the view closed at the gap gap shows, and goes back to the
// rules as of the last verified record, from where the follower re-reads.
func (v *View) breakAt(gap *Discontinuity) error {
	err := &events.Error{Op: "policyview", Kind: events.KindUnavailable, Field: "policy_position", Err: gap}
	v.log.Error("policy log not continuous; refusing fenced decisions", zap.Uint64("record", gap.Record),
		zap.Uint64("previous_policy_position", gap.Previous), zap.Uint64("last_applied", gap.LastApplied),
		zap.Int("policy_messages", gap.Messages), zap.Int("seen", gap.Seen), zap.Error(gap))
	v.mu.Lock()
	v.broken, v.brokenAt = err, gap.Record
	v.breaks++
	v.rules = v.good
	v.notifyLocked()
	v.mu.Unlock()
	v.trail.restart(v.good.Position)
	return err
}

// noteLegacy accepts a record of the older layout (first in its batch, no
// previous_policy_position): its batch's continuity cannot be checked. Its
// policy_position is not the previous message on a cluster either (a batch
// could start inside another one being applied), so it is not compared.
func (v *View) noteLegacy(pos uint64) {
	if !v.legacy {
		v.legacy = true
		v.log.Info("policy fence records of the older layout cannot be checked for continuity; accepted",
			zap.Uint64("first_record", pos))
	}
}

func (v *View) notifyLocked() {
	close(v.changed)
	v.changed = make(chan struct{})
}

func (v *View) fail(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.err == nil {
		v.err = err
	}
	v.notifyLocked()
}

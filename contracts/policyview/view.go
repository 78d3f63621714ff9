package policyview

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/events/command"
	"github.com/nats-io/nats.go/jetstream"
)

// Source is what the view needs from the log: the stream to follow and the
// store's answer to "what is the newest policy position now?".
// *events.JetStreamStore implements it.
type Source interface {
	JetStream() jetstream.JetStream
	PolicyHead(ctx context.Context) (uint64, error)
}

// DefaultWaitMax bounds how long Snapshot waits for the view to catch up
// with the policy head. A view that cannot catch up within it refuses to
// hand out snapshots (KindUnavailable) rather than decide on stale rules.
const DefaultWaitMax = 10 * time.Second

// View follows ledger.policy.> and keeps the rules folded so far.
//
// Concurrency contract: Snapshot, Position and Rules are safe for concurrent
// use by many goroutines; one goroutine started by Start applies events in
// log order. A snapshot is immutable: later events build a new Rules slice.
type View struct {
	src     Source
	waitMax time.Duration

	mu      sync.Mutex
	rules   Rules         // rules.Position: the newest message of ledger.policy.> applied
	changed chan struct{} // closed (and replaced) whenever pos moves
	err     error         // terminal: the view stopped and must not be trusted

	cancel context.CancelFunc
	done   chan struct{}
}

// Start begins following the policy events of src and waits, at most
// DefaultWaitMax, until the view has applied every policy event stored when
// it was called. Close stops it.
func Start(ctx context.Context, src Source) (*View, error) {
	head, err := src.PolicyHead(ctx)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	v := &View{src: src, waitMax: DefaultWaitMax, changed: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go v.follow(runCtx)
	if err := v.waitFor(ctx, head); err != nil {
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
	if v.err != nil {
		return command.Policy[Rules]{}, v.err
	}
	return command.Policy[Rules]{Position: v.rules.Position, Rules: v.rules}, nil
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
		pos, err, ch := v.rules.Position, v.err, v.changed
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

// follow consumes ledger.policy.> until ctx ends, re-creating the consumer
// from the next position after a failure.
func (v *View) follow(ctx context.Context) {
	defer close(v.done)
	for ctx.Err() == nil {
		err := v.consume(ctx)
		if err == nil || ctx.Err() != nil {
			break
		}
		if events.KindOf(err) == events.KindIntegrity {
			v.fail(err)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	v.fail(&events.Error{Op: "policyview", Kind: events.KindUnavailable, Rule: "policy view closed"})
}

func (v *View) consume(ctx context.Context) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.FenceSubject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if from := v.Position() + 1; from > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cons, err := v.src.JetStream().OrderedConsumer(ctx, events.StreamName, cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			return err
		}
		if err := v.apply(m); err != nil {
			return err
		}
	}
}

// apply folds one message. Control records on policy subjects (the store's
// fences and idempotency records) move the position without changing the
// rules: the store's fence compares against every message on the subjects.
func (v *View) apply(m jetstream.Msg) error {
	meta, err := m.Metadata()
	if err != nil {
		return &events.Error{Op: "policyview", Kind: events.KindIntegrity, Err: err}
	}
	var payload any
	if !events.IsControlSubject(m.Subject()) {
		e, err := events.Decode(m.Subject(), m.Headers(), m.Data())
		if err != nil {
			return &events.Error{Op: "policyview", Kind: events.KindIntegrity, Field: fmt.Sprint(meta.Sequence.Stream), Err: err}
		}
		if payload, err = contracts.Decode(e.Type, e.SchemaVersion, e.Data); err != nil {
			return &events.Error{Op: "policyview", Kind: events.KindIntegrity, Field: fmt.Sprint(meta.Sequence.Stream), Err: err}
		}
	}
	v.mu.Lock()
	v.rules = v.rules.Apply(meta.Sequence.Stream, payload)
	close(v.changed)
	v.changed = make(chan struct{})
	v.mu.Unlock()
	return nil
}

func (v *View) fail(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.err == nil {
		v.err = err
	}
	close(v.changed)
	v.changed = make(chan struct{})
}

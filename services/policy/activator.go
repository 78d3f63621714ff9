package policy

import (
	"context"
	"fmt"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
)

// ActivatorTick is how often RunActivator looks at the clock when no due
// instant is nearer. On the real clock an activation is appended at most
// this long after its instant (plus one append); a simulated clock that
// jumps calls ActivateDue itself at every step.
const ActivatorTick = 50 * time.Millisecond

// ActivateDue appends, on the service's clock, the policy.rule_activated of
// every scheduled change (freeze, lift, floor, floor lift) whose instant
// has come and that is not yet activated, and returns what it appended
// (one result per rule activated).
// Each activation is decided on the rule's aggregate with its expected
// version, so several instances running it at once store it exactly once:
// the loser reloads, finds it activated and decides nothing.
//
// An activation is a policy event: it moves the fence, so a fenced decision
// made under an older policy position and sent after it is refused and
// decided again under the rule (ADR 0004).
func (s *Service) ActivateDue(ctx context.Context) ([]command.Result[State], error) {
	out, _, err := s.activateDue(ctx)
	return out, err
}

// activateDue is ActivateDue that also returns the earliest instant at which
// a further activation will be due (zero: none pending).
func (s *Service) activateDue(ctx context.Context) ([]command.Result[State], time.Time, error) {
	pt, err := s.activatorTimeline(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	now := s.runner.Clock()
	var out []command.Result[State]
	for _, r := range pt {
		if len(r.PendingAt(now)) == 0 {
			continue
		}
		res, err := s.activate(ctx, r.RuleID)
		if err != nil {
			return out, time.Time{}, fmt.Errorf("activating rule %s: %w", r.RuleID, err)
		}
		if len(res.Events) > 0 {
			out = append(out, res)
		}
	}
	var next time.Time
	for _, r := range pt {
		if at, ok := r.NextDue(); ok && at.After(now) && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	return out, next, nil
}

// activate decides the due activations of one rule.
func (s *Service) activate(ctx context.Context, id string) (command.Result[State], error) {
	cmd := ActivateDue{RuleID: id}
	meta := command.Meta{CommandID: events.NewID(), Command: cmd}
	return command.Run[State, struct{}](ctx, s.runner, aggregate, id, meta, nil,
		func(st State, _ struct{}, now time.Time) ([]any, error) { return Decide(st, cmd, Inputs{}, now) })
}

// RunActivator calls ActivateDue until ctx ends: at every tick, and sooner
// when the service's clock is about to reach a scheduled instant. An error
// is reported to onErr (nil: dropped) and tried again at the next tick: the
// clock rule of the services keeps refusing from the instant meanwhile, and
// the fence makes the activation exact whenever it lands.
func (s *Service) RunActivator(ctx context.Context, tick time.Duration, onErr func(error)) {
	if tick <= 0 {
		tick = ActivatorTick
	}
	for {
		_, next, err := s.activateDue(ctx)
		if err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
		wait := tick
		if !next.IsZero() {
			if d := next.Sub(s.runner.Clock()); d < wait {
				wait = max(d, time.Millisecond)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// activatorTimeline returns the policy timeline to the head, reading only
// what was appended since the previous call: the activator asks at every
// tick, and reading the whole policy history each time would grow with it.
func (s *Service) activatorTimeline(ctx context.Context) (contracts.PolicyTimeline, error) {
	s.tlMu.Lock()
	defer s.tlMu.Unlock()
	pt, last, err := s.foldTimeline(ctx, s.tl, s.tlPos+1, 0)
	if err != nil {
		return nil, err
	}
	s.tl, s.tlPos = pt, last
	return pt, nil
}

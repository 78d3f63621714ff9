package policy

import (
	"context"
	"fmt"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/events/command"
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
	pt, err := s.timeline(ctx, 0)
	if err != nil {
		return nil, err
	}
	now := s.runner.Clock()
	var out []command.Result[State]
	for _, r := range pt {
		if len(r.PendingAt(now)) == 0 {
			continue
		}
		res, err := s.activate(ctx, r.RuleID)
		if err != nil {
			return out, fmt.Errorf("activating rule %s: %w", r.RuleID, err)
		}
		if len(res.Events) > 0 {
			out = append(out, res)
		}
	}
	return out, nil
}

// activate decides the due activations of one rule.
func (s *Service) activate(ctx context.Context, id string) (command.Result[State], error) {
	cmd := ActivateDue{RuleID: id}
	meta := command.Meta{CommandID: events.NewID(), Command: cmd}
	return command.Run[State, struct{}](ctx, s.runner, aggregate, id, meta, nil,
		func(st State, _ struct{}, now time.Time) ([]any, error) { return Decide(st, cmd, now) })
}

// nextDue returns the earliest instant at which an activation will be due,
// and false when none is pending.
func nextDue(pt contracts.PolicyTimeline) (time.Time, bool) {
	var next time.Time
	for _, r := range pt {
		if at, ok := r.NextDue(); ok && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	return next, !next.IsZero()
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
		if _, err := s.ActivateDue(ctx); err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
		wait := tick
		if pt, err := s.timeline(ctx, 0); err == nil {
			if at, ok := nextDue(pt); ok {
				if d := at.Sub(s.runner.Clock()); d < wait {
					wait = max(d, time.Millisecond)
				}
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

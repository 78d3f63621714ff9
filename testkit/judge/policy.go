package judge

import (
	"slices"
	"time"
)

// scope is a rule's scope: each non-empty list narrows it.
type scope struct {
	All           bool     `json:"all"`
	Jurisdictions []string `json:"jurisdictions"`
	Channels      []string `json:"channels"`
	Categories    []string `json:"categories"`
	Sellers       []string `json:"sellers"`
}

// target is the trade a transaction event was decided on.
type target struct {
	Jurisdiction, Channel, Category, Seller, Origin string
}

func (s scope) covers(t target) bool {
	in := func(list []string, v string) bool { return len(list) == 0 || slices.Contains(list, v) }
	return in(s.Jurisdictions, t.Jurisdiction) && in(s.Channels, t.Channel) &&
		in(s.Categories, t.Category) && in(s.Sellers, t.Seller)
}

// money is an amount in integer minor units of a currency.
type money struct {
	AmountMinor int64  `json:"amount_minor"`
	Currency    string `json:"currency"`
}

// changeBody is the part of a policy change event (freeze or floor,
// imposed, set or lifted) the judge reads.
type changeBody struct {
	RuleID            string    `json:"rule_id"`
	Scope             scope     `json:"scope"`
	BlockedOperations []string  `json:"blocked_operations"`
	Amount            *money    `json:"amount"`
	Origin            string    `json:"origin"`
	EffectiveAt       time.Time `json:"effective_at"`
	Activation        string    `json:"activation"`
}

// activationBody is policy.rule_activated.
type activationBody struct {
	RuleID      string    `json:"rule_id"`
	Activates   string    `json:"activates"`
	ScheduledAt time.Time `json:"scheduled_at"`
}

// The stored activation modes, and the judge's names for a change stored
// without one.
const (
	modeOnRecording     = "on_recording"
	modeScheduled       = "scheduled"
	modeLegacyNow       = "legacy_now"
	modeLegacyScheduled = "legacy_scheduled"
)

// change is one policy change (the rule's imposition or its lift) as the
// log holds it.
type change struct {
	Pos      uint64
	Recorded time.Time
	Decided  time.Time
	// Effective is the stated effective_at: the instant E of a scheduled
	// change, informational for one in force on recording.
	Effective time.Time
	Mode      string
	// ActivationPos is the position of its rule_activated event, 0 until
	// one is stored (and for a change in force on recording, whose own
	// position is its activation).
	ActivationPos uint64
}

// newChange reads the activation mode. A change stored without the field
// (before activation events existed) is in force from its own position when
// its effective instant was not after its decision instant (ce-time: the
// policy service's clock, the one every decision of the log is stamped
// with), and otherwise by decision instant from its effective instant.
//
// The decision instant, not the server's recorded time, tells "now" from
// "scheduled", as the spec's rule 1 does: a simulated day (the demo's 4
// October 2023, recorded years later) states instants on its business
// clock, and comparing them with the server's clock would read a freeze
// scheduled for 17:00 as in force from the morning it was imposed.
func newChange(e *event, b changeBody) *change {
	c := &change{Pos: e.Seq, Recorded: e.Recorded, Decided: e.Decided, Effective: b.EffectiveAt, Mode: b.Activation}
	if c.Mode == "" {
		c.Mode = modeLegacyNow
		if b.EffectiveAt.After(e.Decided) {
			c.Mode = modeLegacyScheduled
		}
	}
	return c
}

// liveSkew bounds how far a change's decision instant may be from its
// recording for the log to count as stamped by a live clock.
const liveSkew = time.Hour

// liveClock reports whether the change was decided on a clock close to the
// server's. Only then can a recorded time (the server's clock) be compared
// with its instant (the deciding clock): a simulated day replayed years
// later has every event recorded after every business instant, and none of
// them is in flight.
func (c *change) liveClock() bool {
	d := c.Recorded.Sub(c.Decided)
	return d < liveSkew && d > -liveSkew
}

func (c *change) scheduled() bool { return c.Mode == modeScheduled || c.Mode == modeLegacyScheduled }

// activation returns the position from which the change is in force
// positionally, 0 if it is not (yet).
func (c *change) activation() uint64 {
	if c.Mode == modeOnRecording || c.Mode == modeLegacyNow {
		return c.Pos
	}
	return c.ActivationPos
}

// activeBefore reports whether the change, as a lift, is activated at a
// position before p (spec rule 2). A legacy scheduled lift (no activation
// event) also counts from its instant for an event positioned after it and
// decided at or after it: that is how the services that wrote it lifted.
func (c *change) activeBefore(p uint64, decided time.Time) bool {
	if a := c.activation(); a != 0 && a < p {
		return true
	}
	return c.Mode == modeLegacyScheduled && c.Pos < p && !decided.Before(c.Effective)
}

// activeBy is activeBefore(pp+1): activated at a position at or before
// the policy position pp the event was decided under.
func (c *change) activeBy(pp uint64, decided time.Time) bool {
	return c.activeBefore(pp+1, decided)
}

// rule is one freeze or floor price with its change and lift.
type rule struct {
	ID     string
	Kind   string
	Scope  scope
	Ops    []string
	Floor  *money
	Origin string
	Set    *change
	Lift   *change
	count  RuleCount
}

// matches reports whether the rule covers op on t at unit price price,
// whatever the time: the scope, the blocked operations and, for a floor, the
// origin and a price below it or in another currency.
func (r *rule) matches(op string, t target, price *money) bool {
	if !slices.Contains(r.Ops, op) || !r.Scope.covers(t) {
		return false
	}
	if r.Kind == "freeze" {
		return true
	}
	if r.Floor == nil || (r.Origin != "" && r.Origin != t.Origin) {
		return false
	}
	if price == nil {
		return true // no price to compare: judged as below, the strict reading
	}
	return price.Currency != r.Floor.Currency || price.AmountMinor < r.Floor.AmountMinor
}

// judge returns how the accepted transaction x breaks the rule (spec rule
// 4), and whether it is in flight at the rule's instant (rule 4's last
// paragraph), given that the rule matches it.
func (r *rule) judge(x *tx) (kinds []ViolationKind, inFlight bool) {
	lifted := r.Lift != nil && r.Lift.activeBefore(x.Pos, x.Decided)
	if a := r.Set.activation(); a != 0 && a < x.Pos && !lifted {
		kinds = append(kinds, ViolationPositional)
	}
	if r.Set.scheduled() {
		known := r.Set.Pos <= x.PolicyPos
		if r.Set.Mode == modeLegacyScheduled {
			// Without an activation event the change itself is the only
			// position: stored after it counts as known.
			known = known || r.Set.Pos < x.Pos
		}
		liftedBy := r.Lift != nil && r.Lift.activeBy(x.PolicyPos, x.Decided)
		if known && !x.Decided.Before(r.Set.Effective) && !liftedBy {
			kinds = append(kinds, ViolationDecisionInstant)
		}
		a := r.Set.activation()
		if len(kinds) == 0 && r.Set.liveClock() && !x.Recorded.Before(r.Set.Effective) && x.Decided.Before(r.Set.Effective) &&
			(a == 0 || x.Pos < a) && !lifted {
			inFlight = true
		}
	}
	return kinds, inFlight
}

// relevant reports whether x lies where the rule could have stopped it:
// stored after its change and before its lift took effect.
func (r *rule) relevant(x *tx) bool {
	return r.Set.Pos < x.Pos && !(r.Lift != nil && r.Lift.activeBefore(x.Pos, x.Decided))
}

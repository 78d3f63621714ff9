package contracts

import (
	"testing"
	"time"
)

// TestTimelineInForce folds a scheduled freeze, its activation and a lift
// effective on recording, and checks the positional and clock readings at
// every position around them.
func TestTimelineInForce(t *testing.T) {
	e := time.Date(2023, 10, 4, 10, 0, 0, 0, time.UTC)
	var pt PolicyTimeline
	pt = pt.Apply(10, FreezeImposed{RuleID: "fz", Scope: Scope{All: true}, BlockedOperations: FreezeOperations,
		EffectiveAt: e, Activation: ActivationScheduled})
	r, _ := pt.Find("fz")
	if r.InForceAt(11) || !r.DueBy(10, e) || r.DueBy(10, e.Add(-time.Nanosecond)) || r.DueBy(9, e) {
		t.Errorf("scheduled, not activated: %+v", r)
	}
	if got := r.PendingAt(e.Add(-time.Nanosecond)); len(got) != 0 {
		t.Errorf("pending before E: %v", got)
	}
	if got := r.PendingAt(e); len(got) != 1 || got[0] != ChangeFreezeImposed {
		t.Errorf("pending at E: %v", got)
	}
	pt = pt.Apply(20, RuleActivated{RuleID: "fz", Activates: ChangeFreezeImposed, ScheduledAt: e})
	pt = pt.Apply(30, FreezeLifted{RuleID: "fz", EffectiveAt: e.Add(time.Hour), Activation: ActivationOnRecording})
	r, _ = pt.Find("fz")
	for _, tc := range []struct {
		p    uint64
		want bool
	}{{20, false}, {21, true}, {30, true}, {31, false}} {
		if got := r.InForceAt(tc.p); got != tc.want {
			t.Errorf("InForceAt(%d) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if r.DueBy(30, e.Add(time.Hour)) || !r.DueBy(29, e) || r.Enforced(30, e.Add(2*time.Hour)) || !r.Enforced(29, e.Add(-time.Hour)) {
		t.Errorf("after the lift: %+v", r)
	}
	if got := r.PendingAt(e.Add(time.Hour)); len(got) != 0 {
		t.Errorf("pending after everything: %v", got)
	}
}

// TestTimelineScheduledLiftIsNotEarly checks that a lift scheduled at L is
// honoured only from its activation, never by the clock.
func TestTimelineScheduledLiftIsNotEarly(t *testing.T) {
	l := time.Date(2023, 10, 5, 0, 0, 0, 0, time.UTC)
	pt := PolicyTimeline(nil).
		Apply(1, FreezeImposed{RuleID: "fz", Scope: Scope{All: true}, BlockedOperations: FreezeOperations, Activation: ActivationOnRecording}).
		Apply(2, FreezeLifted{RuleID: "fz", EffectiveAt: l, Activation: ActivationScheduled})
	r, _ := pt.Find("fz")
	if !r.Enforced(2, l.Add(time.Hour)) {
		t.Error("lift honoured by the clock before its activation")
	}
	if got := r.PendingAt(l); len(got) != 1 || got[0] != ChangeFreezeLifted {
		t.Errorf("pending at L: %v", got)
	}
	r, _ = pt.Apply(3, RuleActivated{RuleID: "fz", Activates: ChangeFreezeLifted, ScheduledAt: l}).Find("fz")
	if r.Enforced(3, l) || !r.InForceAt(3) {
		t.Errorf("after the lift's activation: %+v", r)
	}
}

// TestTimelineLegacyChangeIsScheduled checks that a change written before
// activations existed is read as scheduled at its effective instant.
func TestTimelineLegacyChangeIsScheduled(t *testing.T) {
	e := time.Date(2023, 10, 4, 10, 0, 0, 0, time.UTC)
	r, _ := PolicyTimeline(nil).Apply(5, FloorPriceSet{RuleID: "fl", EffectiveAt: e, Amount: Money{AmountMinor: 1, Currency: "USD"}}).Find("fl")
	if r.ActivationPosition != 0 || !r.ScheduledAt.Equal(e) || !r.Enforced(5, e) || r.Enforced(5, e.Add(-time.Second)) {
		t.Errorf("legacy floor: %+v", r)
	}
}

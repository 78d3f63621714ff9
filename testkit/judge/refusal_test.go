package judge

import (
	"slices"
	"testing"
	"time"
)

// TestRefusalRecords: a record of a command a rule refused moves nothing
// and is counted for its rule; one naming a rule the log does not hold
// before it, or decided under a policy position before the rule, is a
// reference finding.
func TestRefusalRecords(t *testing.T) {
	w := startLog(t)
	f := w.put(ev{Type: "policy.freeze_imposed", Agg: "fz", Body: freeze("fz", "toys", time.Now(), modeOnRecording)})
	refusal := func(rule string, pos uint64) map[string]any {
		return map[string]any{"refusal_id": "rf-1", "command": "order.place", "aggregate_id": "o1", "rule_id": rule,
			"rule_kind": "freeze", "legal_basis": "Permendag 31/2023", "detail": "frozen", "command_digest": "00", "policy_position": pos}
	}
	w.put(ev{Type: "enforcement.command_refused", Agg: "rf-1", Policy: f, Body: refusal("fz", f)})
	unknown := w.put(ev{Type: "enforcement.command_refused", Agg: "rf-2", Policy: f, Body: refusal("nope", f)})
	early := w.put(ev{Type: "enforcement.command_refused", Agg: "rf-3", Policy: f - 1, Body: refusal("fz", f-1)})
	r := w.check()
	if got, want := kinds(r), []FindingKind{FindingReference, FindingReference}; !slices.Equal(got, want) {
		t.Fatalf("findings %v, want references at %d and %d", r.Findings, unknown, early)
	}
	if r.Findings[0].Position != unknown || r.Findings[1].Position != early {
		t.Errorf("findings %v, want at %d and %d", r.Findings, unknown, early)
	}
	if len(r.Violations) != 0 || r.Checked != 0 || r.Rules[0].Refused != 2 {
		t.Errorf("violations %v, %d judged, rule %+v: want none, none, 2 refused", r.Violations, r.Checked, r.Rules[0])
	}
}

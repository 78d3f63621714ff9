package events

import "testing"

// The records the committer writes must decode as followers read them: a
// policy batch's record states the previous head and the count, a fenced
// batch's record (and a policy record of the older layout) does not.
func TestPolicyFenceRecordsDecode(t *testing.T) {
	s := &JetStreamStore{fenceSource: "policy"}
	m := s.sourceFenceMsg(41, 3, 5)
	if want := "ledger.policy._fence"; m.Subject != want || s.FenceRecordSubject() != want {
		t.Errorf("policy batch record on %q (FenceRecordSubject %q), want %q", m.Subject, s.FenceRecordSubject(), want)
	}
	f, err := DecodePolicyFence(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if f.Legacy() || *f.PreviousPolicyPosition != 41 || f.PolicyPosition != 41 || f.PolicyMessages != 5 || f.Decisions != 3 {
		t.Errorf("decoded %+v (previous %v), want previous 41, 5 policy messages, 3 decisions", f, f.PreviousPolicyPosition)
	}
	legacy, err := DecodePolicyFence([]byte(`{"policy_position":7,"decisions":2}`))
	if err != nil || !legacy.Legacy() || legacy.PolicyPosition != 7 {
		t.Errorf("legacy record: %+v, %v; want legacy at 7", legacy, err)
	}
	if _, err := DecodePolicyFence([]byte(`{"policy_position":"x"}`)); KindOf(err) != KindIntegrity {
		t.Errorf("unreadable record: got %v, want an integrity error", err)
	}
}

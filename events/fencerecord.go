package events

import (
	"encoding/json"
)

// PolicyFence is the body of a record on PolicyFenceSubject
// (docs/events.md, "Control records").
//
// Since the record ends its batch, it states the policy head before the batch
// (PreviousPolicyPosition) and how many of the batch's messages on
// FenceSubject precede it (PolicyMessages): a follower of the policy subject
// that saw, since the message at PreviousPolicyPosition, a different number of
// messages before the record has missed one. Records written before that
// layout came first in their batch and state neither: Legacy reports them,
// and no follower can check its continuity against them.
type PolicyFence struct {
	// PolicyPosition is the position the record's check expected as the
	// newest on FenceSubject when the batch was stored.
	PolicyPosition uint64 `json:"policy_position"`
	// PreviousPolicyPosition is the policy head before the batch (0 if none);
	// nil in a legacy record.
	PreviousPolicyPosition *uint64 `json:"previous_policy_position"`
	// Decisions counts the batch's decisions.
	Decisions int `json:"decisions"`
	// PolicyMessages counts the batch's messages on FenceSubject before the
	// record (events and idempotency records).
	PolicyMessages int `json:"policy_messages"`
}

// Legacy reports whether the record is in the layout where it came first in
// its batch and did not state the previous policy head.
func (f PolicyFence) Legacy() bool { return f.PreviousPolicyPosition == nil }

// DecodePolicyFence parses the body of a record on PolicyFenceSubject.
func DecodePolicyFence(data []byte) (PolicyFence, error) {
	var f PolicyFence
	if err := json.Unmarshal(data, &f); err != nil {
		return PolicyFence{}, &Error{Op: "events.DecodePolicyFence", Kind: KindIntegrity, Field: "policy_fence",
			Rule: "must be a JSON object with policy_position", Err: err}
	}
	if f.PolicyMessages < 0 || f.Decisions < 0 {
		return PolicyFence{}, &Error{Op: "events.DecodePolicyFence", Kind: KindIntegrity, Field: "policy_messages",
			Rule: "counts must not be negative"}
	}
	return f, nil
}

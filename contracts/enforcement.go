package contracts

import (
	"crypto/sha256"
	"encoding/hex"
)

// ServiceEnforcement is the context of the refusal records: every service
// that refuses a command by a policy rule (listing, order, payment) appends
// one to ledger.enforcement.<refusal_id>.command_refused, under the source
// "/ledger/enforcement" (ADR 0020).
const ServiceEnforcement = "enforcement"

// CommandRefused records that a service refused a command because a policy
// rule blocked it, so that enforcement is on record and not only absence:
// nothing else of the refused command is ever appended. Its aggregate is
// the refusal itself, whose id is derived from the command (its name, its
// aggregate and its idempotency key, or its digest when it has none), so a
// command refused again adds no second record. It moves no money or stock.
//
// The envelope carries the rest: ce-time is the decision instant, the
// correlation and causation ids are the refused command's, and the policy
// position is the one the refusal was decided under (repeated in the body
// for readers of the body alone).
type CommandRefused struct {
	RefusalID      string    `json:"refusal_id" schema:"id" doc:"the refusal (aggregate id), derived from the command's name, aggregate and idempotency key (or digest)"`
	Command        Operation `json:"command" doc:"the refused command, as a policy rule names the operation it blocks"`
	AggregateID    string    `json:"aggregate_id" schema:"id" doc:"the aggregate the command was decided on, in the command's own context"`
	RuleID         string    `json:"rule_id" schema:"id" doc:"the policy rule that refused it"`
	RuleKind       RuleKind  `json:"rule_kind" doc:"that rule's kind"`
	LegalBasis     string    `json:"legal_basis" schema:"text=500" doc:"that rule's legal basis"`
	Detail         string    `json:"detail" schema:"text=1000" doc:"the refusal as the caller was answered it (the rule its problem states)"`
	Actor          string    `json:"actor,omitempty" schema:"id" doc:"the buyer or seller the command acts for, when the decider knows one"`
	Principal      string    `json:"principal,omitempty" schema:"text=200" doc:"the authenticated caller that sent the command, when the edge knew one"`
	IdempotencyKey string    `json:"idempotency_key,omitempty" schema:"key" doc:"the command's idempotency key, when it had one"`
	CommandDigest  string    `json:"command_digest" schema:"hex64" doc:"SHA-256 of the command's JSON: which command was refused"`
	PolicyPosition uint64    `json:"policy_position" schema:"min=1" doc:"the policy position the refusal was decided under"`
}

// RefusalID returns the id of the refusal record of a command: a digest of
// its name, the aggregate it was decided on and its identity (the
// idempotency key, or the command's digest when it has no key), so that
// the same command refused again names the same record.
func RefusalID(command, aggregateID, identity string) string {
	sum := sha256.Sum256([]byte(command + "\x00" + aggregateID + "\x00" + identity))
	return "rf-" + hex.EncodeToString(sum[:20])
}

// Package payment decides payments: authorize (a pending two-phase
// transfer from the buyer to the order's escrow), capture, void, refund and
// settle to the seller less the platform fee. Every money movement is a set
// of double-entry postings in integer minor units that sum to zero per
// currency, checked before append (contracts.CheckPostings) and again when
// the payment is replayed (Evolve).
//
// The aggregate is one payment, id = payment_id (context "payment"). The
// decider is pure; the handler loads, decides and appends through
// runtime/command, fenced by the policy timeline so that a freeze or a floor
// price is honoured exactly. An authorization and a capture are judged by
// the order they pay for as the log has it (the order's own events), never
// by what the caller says the order is. The package must never import another service, and the decider
// must never do I/O or read the clock.
package payment

// Package policy decides regulatory policy: impose and lift a freeze, set
// and lift a floor price. Each rule is its own aggregate (context "policy",
// id = rule_id); its events on ledger.policy.> are the timeline every other
// service folds and fences its decisions against.
//
// The decider is pure; the handler checks the issuer's role, then loads,
// decides and appends through runtime/command. Policy decisions are not
// fenced: they are the fence's source. The package must never import
// another service, and the decider must never do I/O or read the clock.
package policy

// Package judge checks a ledger from its raw JetStream log alone, sharing no
// code with what it judges.
//
// It reads every message of the stream in order with an ordered consumer,
// parses the CloudEvents binary-mode headers and the JSON bodies it needs
// into its own small types, recomputes each event's canonical hash and
// each aggregate's chain, and judges every accepted transaction of a
// blockable operation against the policy rules as the shared policy spec
// defines "in force" (positionally from a rule's activation, and by decision
// instant for a scheduled rule the deciding service knew of).
//
// The package must never import a package of this repository (contracts,
// events, projections, services, the rest of testkit): a checker that
// shares the definitions it checks shares their mistakes. Its only
// dependencies are the Go standard library and the NATS client. A test in
// this package fails when that changes. The wire format it reads is
// described in docs/events.md and ADR 0002; what it checks in docs/judge.md.
package judge

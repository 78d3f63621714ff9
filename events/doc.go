// Package events is the ledger's log: the event envelope and its codec
// (CloudEvents 1.0 in binary mode over NATS headers), the per-aggregate hash
// chain, the small Store interface and its JetStream implementation on the
// single stream LEDGER, and the embedded nats-server that hosts it by default.
//
// The package knows nothing about orders, payments or policies. It must never
// decide business rules, never store a partial decision, and never hand back
// an event whose integrity it did not check.
package events

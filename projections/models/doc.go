// Package models holds the ledger's read models: orders, balances, the
// catalogue, the policy timeline, the violations audit and seller sales.
// Each is a pure fold of events (Apply) with a canonical snapshot
// (Snapshot, Restore) and a table for people (Rows).
//
// The package must never do I/O: no NATS, no network, no files. What runs
// the models over the log (package projections) builds on it, so a model
// can be tested, replayed and audited from events in memory.
package models

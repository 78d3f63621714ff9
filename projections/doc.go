// Package projections runs the read models of projections/models over the
// ledger's log: the engine folds them from durable JetStream consumers,
// checkpoints them and stores their snapshots; Fold and Rebuild build them
// from a range of the log; as-of queries answer by position, server time or
// business time from a snapshot plus the tail. The notary
// (projections/notary) and the regulator bundle (projections/bundle) build
// on it.
//
// A read model must never be the source of truth: everything here can be
// rebuilt from the log, and a rebuild must give the same bytes. The package
// never appends to the log and never decides trade.
package projections

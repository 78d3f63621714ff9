// Package projections turns the ledger's log into read models and proves what
// they say. It holds the read models (pure folds of events), the projection
// engine that runs them from durable JetStream consumers with checkpoints,
// as-of queries by position, server time and business time, the notary that
// folds the log into a signed Merkle tree, and the regulator bundle.
//
// A read model must never be the source of truth: everything here can be
// rebuilt from the log, and a rebuild must give the same bytes. The package
// never appends anything but notary checkpoints, and never decides trade.
package projections

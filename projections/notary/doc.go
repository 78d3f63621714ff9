// Package notary folds the ledger's log into a Merkle tree, one leaf per
// event in position order, and appends signed checkpoints of it to the log,
// so that anyone holding the public key can prove an event was in the log
// and that a later log extends an earlier one.
//
// It never appends anything but notary checkpoints.
package notary

// Package bundle writes the regulator bundle, every read model as of an
// instant with the notary's Merkle root, signed, and verifies one offline
// or against the log by folding it again.
//
// It only reads the log; it never appends to it.
package bundle

// Package fault injects the faults a ledger meets in production and checks
// that nothing acknowledged is lost and no invariant breaks: a stream
// leader's process killed under load on a three-node cluster, and a seeded
// simulation (Sim) that interleaves many actors' commands with conflicts,
// timeouts and process restarts, checking the ledger's invariants after
// every step and printing the seed and the history when one breaks.
//
// Everything listens on 127.0.0.1 on free ports and keeps its data in the
// test's temporary directory; processes are only ever signalled by their
// own pid.
package fault

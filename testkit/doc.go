// Package testkit holds what the ledger's tests share: embedded JetStream
// servers (a single node and a 3-node cluster in one process, with fault
// injection such as leader stepdown and node restart), and the conformance
// suite that every events.Store implementation must pass.
//
// Everything here listens on 127.0.0.1 on free ports and keeps its data in
// the test's temporary directory. The package is for tests only: production
// code must never import it.
package testkit

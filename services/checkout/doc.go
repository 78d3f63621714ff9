// Package checkout is the one checkout of the marketplace: a pure saga
// decider (state folded from the log's events of one order, the next step
// from it) and a runner that follows the log, sends each step to the
// service it belongs to over that service's NATS subject, and checkpoints.
// `ledger serve`, `ledger demo`, the scenarios and the fault simulation all
// run it (ADR 0016).
//
// It must never import another service: it knows the order, the listing
// and the payment only through their contracts, their events in the log and
// their NATS subjects.
package checkout

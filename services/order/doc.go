// Package order is the order service: a pure decider for orders (place,
// confirm, cancel, ship, complete, reject), its command handling through
// runtime/command, a NATS micro service exposing the commands, and the
// checkout process manager that drives an order through stock reservation
// and payment authorization to confirmation.
//
// It must never import another service: it reads listings from the log
// through its own view of the listing contract events, and talks to the
// listing and payment services only over NATS request-reply. Placement is
// decided under the policy and fenced by the store; cancellation never is.
package order

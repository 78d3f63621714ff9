// Package listing is the listing service: a pure decider for listings
// (create, change price, change stock, delist, reserve and release stock
// for orders), its command handling through runtime/command, and a NATS
// micro service exposing the commands.
//
// It must never import another service and never call one: it shares only
// the contracts and the log. Policy rules reach it through the log alone
// (runtime/policyview), and only creation and price changes are decided
// under them, so that listings stay visible during a freeze.
package listing

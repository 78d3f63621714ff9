// Package contracts is the one thing the ledger's services share: the Go
// types of every command and event, their JSON Schemas (draft 2020-12), the
// registry that names who publishes and who may subscribe, the upcasters that
// turn stored old versions into current types, and validation at the edge.
//
// Services are deployed independently, so a contract change is a change to
// the published wire format. The package must never hold business state,
// never perform I/O outside tests and generators, and never change a
// published (type, version) incompatibly: a breaking change is a new version
// with an upcaster from the old one.
//
// Money is always integer minor units with an ISO 4217 code; instants are
// RFC 3339 with an offset. Errors are *events.Error of kind KindInvalid whose
// Field is the JSON pointer of the offending value and whose Rule names the
// rule it broke.
package contracts

//go:generate go test -run "TestSchemasAgree|TestAsyncAPIFresh|TestCatalogue" -update .

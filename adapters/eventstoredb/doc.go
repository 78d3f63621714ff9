// Package eventstoredb stores the ledger's log in EventStoreDB (KurrentDB)
// through its gRPC client, for teams that already run one.
//
// The mapping, in short (docs/eventstoredb.md has the whole of it):
//
//   - one EventStoreDB stream per aggregate, named "<context>-<aggregate_id>",
//     so that the server's $ce-<context> category projection groups a
//     context's aggregates;
//   - an event's ESDB event id is its ledger id (a UUIDv7), its ESDB event
//     type its CloudEvents type, its data the JSON body, and its metadata a
//     JSON object of the CloudEvents attributes and the ledger's extensions
//     (the same values the JetStream store writes as ce- headers);
//   - ExpectedVersion v maps to the expected stream revision: NoStream for 0,
//     Revision(v-1) otherwise;
//   - Position is the event's position in $all (its log position), which is
//     increasing but not dense: positions are byte offsets, not counts;
//   - Decision.Fence is refused: it needs an append that is atomic across the
//     aggregate's stream and the policy streams, which EventStoreDB does not
//     offer before KurrentDB 25.1.
package eventstoredb

package auth

import (
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Roles of the ledger's NATS users. Each service role may append only to its
// own context; projections may also append notary checkpoints; the
// investigator only reads; the operator administers everything but the
// LEDGER stream's history (see shrinkLedger).
const (
	RoleListing      = "listing"
	RoleOrder        = "order"
	RolePayment      = "payment"
	RolePolicy       = "policy"
	RoleProjections  = "projections"
	RoleInvestigator = "investigator"
	RoleOperator     = "operator"
)

// Roles lists every role, in the order credentials are generated.
func Roles() []string {
	return []string{RoleListing, RoleOrder, RolePayment, RolePolicy, RoleProjections, RoleInvestigator, RoleOperator}
}

// Bucket names the roles' JetStream KV and Object Store buckets. They repeat
// the names the services and projections use (services/checkout Config,
// projections StateBucket and SnapshotBucket): this package sits below them
// and cannot import them.
const (
	CheckoutBucket    = "ledger_checkout"
	ProjectionsBucket = "LEDGER_PROJECTIONS"
	SnapshotsBucket   = "LEDGER_SNAPSHOTS"
)

const (
	stream = "LEDGER"
	api    = "$JS.API."
	// responseTTL bounds how long a responder may answer a request it
	// received; service replies (micro, $SRV discovery) are single messages.
	responseTTL = time.Minute
)

// serviceRequests lists, per service role, the services it calls: the
// checkout (services/checkout), which runs as the order role, reserves
// stock at listing, authorizes and captures at payment, and confirms,
// rejects and cancels at order, over their NATS subjects.
var serviceRequests = map[string][]string{
	RoleOrder: {RoleListing, RolePayment, RoleOrder},
}

// enforcementSubjects is where the services that refuse commands by a
// policy rule (those with fenced commands) record each refusal: the
// enforcement context of the log, with its idempotency records under the
// same prefix (docs/adr/0020-refusals-on-record.md). The policy service
// refuses nothing by a rule and may not write there.
const enforcementSubjects = "ledger.enforcement.>"

// refusers are the roles that record refusals.
var refusers = map[string]bool{RoleListing: true, RoleOrder: true, RolePayment: true}

// Permissions returns the default permissions of role. No role may shorten
// or remove the LEDGER stream: every seed is written to the data directory,
// and a credential kept next to the log must not be able to rewrite what
// the log says (docs/adr/0012-the-log-cannot-shrink.md). It panics on an
// unknown role: roles are constants.
func Permissions(role string) *server.Permissions {
	switch role {
	case RoleListing, RoleOrder, RolePayment, RolePolicy:
		return servicePermissions(role)
	case RoleProjections:
		return projectionsPermissions()
	case RoleInvestigator:
		return investigatorPermissions()
	case RoleOperator:
		return operatorPermissions()
	}
	panic("auth: unknown role " + role)
}

// shrinkLedger is every JetStream API request that can take history out of
// the LEDGER stream or replace it: changing its settings (limits that
// discard old messages, a max age, turning off deny-delete), deleting it
// (after which a new, empty one could be created under the same name),
// purging it, deleting one message, restoring over it from a snapshot,
// removing a peer (which on a cluster drops that replica's copy), and
// purging the whole account. The stream's deny-delete and deny-purge flags
// refuse some of these already; the permissions refuse all of them before
// the request reaches JetStream, whatever the stream's settings. Creating
// the stream stays allowed: on an existing stream with other settings it
// fails, so it cannot replace one.
func shrinkLedger() []string {
	return []string{
		api + "STREAM.UPDATE." + stream,
		api + "STREAM.DELETE." + stream,
		api + "STREAM.PURGE." + stream,
		api + "STREAM.MSG.DELETE." + stream,
		api + "STREAM.RESTORE." + stream,
		api + "STREAM.PEER.REMOVE." + stream,
		api + "ACCOUNT.PURGE.>",
	}
}

// readLedger is what every reader of the log needs: stream info, the
// leader's message get (last by subject: aggregate heads, idempotency
// records, the policy fence), direct gets, and ordered consumers, which the
// client creates as ephemeral consumers under a generated name, pulls from
// and deletes when it resets. The optional filter subject of the create
// request is part of its subject, hence the two forms.
func readLedger() []string {
	return []string{
		api + "INFO",
		api + "STREAM.INFO." + stream,
		api + "STREAM.MSG.GET." + stream,
		api + "DIRECT.GET." + stream,
		api + "DIRECT.GET." + stream + ".>",
		api + "CONSUMER.CREATE." + stream + ".*",
		api + "CONSUMER.CREATE." + stream + ".*.>",
		api + "CONSUMER.INFO." + stream + ".*",
		api + "CONSUMER.DELETE." + stream + ".*",
		api + "CONSUMER.MSG.NEXT." + stream + ".*",
	}
}

// readBuckets is read-only use of the read models' buckets: as-of queries
// (snapshots, diffs, bundles) start from the snapshot the projections
// stored nearest before the instant asked for.
func readBuckets() []string {
	return append(bucketRead("KV_"+ProjectionsBucket), bucketRead("OBJ_"+SnapshotsBucket)...)
}

// kvBucket is full use of one KV bucket: create or update its stream, read
// (direct and leader gets, watchers), write and purge keys.
func kvBucket(bucket string) []string {
	s := "KV_" + bucket
	return append(bucketStream(s), "$KV."+bucket+".>")
}

// objectBucket is full use of one Object Store bucket: chunks and metadata
// are messages on $O.<bucket>.C.> and $O.<bucket>.M.>; deleting an object
// purges its chunk subject.
func objectBucket(bucket string) []string {
	s := "OBJ_" + bucket
	return append(bucketStream(s), "$O."+bucket+".>")
}

// bucketStream is the JetStream API of a bucket's own stream: reading it,
// and creating, changing and writing it.
func bucketStream(s string) []string {
	return append(bucketRead(s),
		api+"STREAM.CREATE."+s,
		api+"STREAM.UPDATE."+s,
		api+"STREAM.PURGE."+s,
		api+"STREAM.MSG.DELETE."+s,
		"$JS.ACK."+s+".>",
	)
}

// bucketRead is reading a bucket's stream: a KV key is a direct or leader
// get, an object an ordered consumer on its chunks (with flow control).
func bucketRead(s string) []string {
	return []string{
		api + "STREAM.INFO." + s,
		api + "STREAM.MSG.GET." + s,
		api + "DIRECT.GET." + s,
		api + "DIRECT.GET." + s + ".>",
		api + "CONSUMER.CREATE." + s + ".>",
		api + "CONSUMER.INFO." + s + ".*",
		api + "CONSUMER.DELETE." + s + ".*",
		api + "CONSUMER.MSG.NEXT." + s + ".*",
		"$JS.FC." + s + ".>",
	}
}

// inbox is where JetStream API answers, publish acknowledgements, pulled
// messages and service replies arrive.
const inbox = "_INBOX.>"

// leaderElected is the advisory the LEDGER stream's new leader publishes:
// every user that opens the log follows it, so that a batch the old leader
// dropped is sent again at once (events.JetStreamStore). It says only which
// server leads.
const leaderElected = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED." + stream

// servicePermissions: append to ledger.<ctx>.> (events, the idempotency
// records ledger.<ctx>._idem.* and fence records ledger.<ctx>._fence of the
// same atomic batch) and, for the services that refuse by a policy rule, to
// ledger.enforcement.>, read the log, serve svc.ledger.<ctx>.> and micro
// discovery, and call the services the role depends on.
func servicePermissions(role string) *server.Permissions {
	pub := append(readLedger(), "ledger."+role+".>")
	if refusers[role] {
		pub = append(pub, enforcementSubjects)
	}
	for _, other := range serviceRequests[role] {
		pub = append(pub, "svc.ledger."+other+".>")
	}
	if role == RoleOrder {
		pub = append(pub, kvBucket(CheckoutBucket)...)
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub, Deny: shrinkLedger()},
		Subscribe: &server.SubjectPermission{Allow: []string{inbox, leaderElected, "svc.ledger." + role + ".>", "$SRV.>"}},
		Response:  &server.ResponsePermission{MaxMsgs: 1, Expires: responseTTL},
	}
}

// projectionsPermissions: read everything, manage durable consumers on the
// log (create, update, delete, pull, acknowledge), keep checkpoints and
// snapshots in its buckets, and append notary checkpoints.
func projectionsPermissions() *server.Permissions {
	pub := append(readLedger(),
		api+"CONSUMER.DURABLE.CREATE."+stream+".*",
		api+"CONSUMER.LIST."+stream,
		api+"CONSUMER.NAMES."+stream,
		"$JS.ACK."+stream+".>",
		"ledger.notary.>",
	)
	pub = append(pub, kvBucket(ProjectionsBucket)...)
	pub = append(pub, objectBucket(SnapshotsBucket)...)
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub, Deny: shrinkLedger()},
		Subscribe: &server.SubjectPermission{Allow: []string{inbox, leaderElected}},
	}
}

// operatorPermissions: everything (creating the LEDGER stream on first
// start, the buckets, any JetStream API the stock CLI uses, appending
// through any context) but shrinkLedger. Real maintenance that must change
// the stream's settings uses a break-glass administrator that is never
// written to the data directory (BreakGlass).
func operatorPermissions() *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Deny: shrinkLedger()},
	}
}

// investigatorPermissions: read and replay the log, list streams; never
// append, never change a stream, never write a bucket. The deny list
// repeats what the allow list already leaves out, so that a later widening
// of the allow list cannot grant these by accident.
func investigatorPermissions() *server.Permissions {
	// The parking stream's info: serve's ledger_parked_stream_messages.
	pub := append(readLedger(), api+"STREAM.NAMES", api+"STREAM.LIST", api+"STREAM.INFO."+parkedStream)
	pub = append(pub, readBuckets()...)
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: pub, Deny: append(shrinkLedger(),
			"ledger.>",
			api+"STREAM.CREATE.>",
			api+"STREAM.UPDATE.>",
			api+"STREAM.DELETE.>",
			api+"STREAM.PURGE.>",
			api+"STREAM.MSG.DELETE.>",
			api+"STREAM.SNAPSHOT.>",
			api+"STREAM.RESTORE.>",
			api+"CONSUMER.DURABLE.CREATE.>",
			"$KV.>",
			"$O.>",
		)},
		Subscribe: &server.SubjectPermission{Allow: []string{inbox, leaderElected}},
	}
}

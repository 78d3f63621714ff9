package auth

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// RoleSubscriber is the role of a service outside the ledger that follows
// the log with the subscriber SDK (runtime/subscriber). Unlike the other
// roles it has one user per team, minted on demand (MintSubscriber), each
// allowed only its own subscriptions.
const RoleSubscriber = "subscriber"

// Names the subscriber SDK gives a subscription's server-side things. They
// repeat runtime/subscriber's (ConsumerPrefix, ParkedStreamName,
// ParkedSubjectPrefix, DedupeBucketPrefix): this package sits below it and
// cannot import it; Example_leastPrivilege (runtime/subscriber) runs the SDK as this role.
const (
	subConsumerPrefix   = "sub-"
	parkedStream        = "LEDGER_PARKED"
	parkedSubjectPrefix = "parked."
	dedupeBucketPrefix  = "sub-dedupe-"
)

// SubscribersDir is where the subscriber users' seeds and credentials are,
// under the credentials directory: one <team>.nk, <team>.creds and
// <team>.context.json per team.
const SubscribersDir = "subscribers"

// maxTeamLen bounds a team name: a subscription name is at most 64 bytes
// (runtime/subscriber MaxNameLen) and starts with the team's.
const maxTeamLen = 48

// maxSubscriptionLen is runtime/subscriber's MaxNameLen.
const maxSubscriptionLen = 64

// maxSubscriptions bounds a team's subscriptions: each adds about 1.5 KB
// of permissions to the team's JWT, which must fit a CONNECT line
// (MaxControlLine).
const maxSubscriptions = 32

// ValidateTeam checks a team name: letters, digits, '-' and '_', starting
// with a letter or digit, at most 48 bytes.
func ValidateTeam(team string) error {
	if !validName(team, maxTeamLen) {
		return fmt.Errorf("team %q: 1..%d letters, digits, '-' or '_', starting with a letter or digit", team, maxTeamLen)
	}
	return nil
}

// validName reports whether name is 1..max letters, digits, '-' or '_',
// starting with a letter or digit: one subject token, one consumer name.
func validName(name string, max int) bool {
	if name == "" || len(name) > max {
		return false
	}
	for i, c := range name {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '-' && c != '_') {
			return false
		}
	}
	return true
}

// subscriptionsOf checks a team's subscription names and returns them
// sorted, the team's own name when none is given. NATS permissions match
// whole subject tokens, and a consumer or bucket name is one token, so a
// prefix cannot be granted as a wildcard: each name is granted exactly,
// and each must be the team's name or start with "<team>-", so that two
// teams' names can never meet.
func subscriptionsOf(team string, names []string) ([]string, error) {
	if len(names) == 0 {
		names = []string{team}
	}
	out := slices.Clone(names)
	if len(out) > maxSubscriptions {
		return nil, fmt.Errorf("subscriptions: %d, at most %d per team", len(out), maxSubscriptions)
	}
	for _, n := range out {
		if n != team && !strings.HasPrefix(n, team+"-") {
			return nil, fmt.Errorf("subscription %q: must be the team's name %q or start with %q", n, team, team+"-")
		}
		if !validName(n, maxSubscriptionLen) {
			return nil, fmt.Errorf("subscription %q: 1..%d letters, digits, '-' or '_'", n, maxSubscriptionLen)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// SubscriberPermissions returns the permissions of a subscriber user whose
// subscriptions are names: reading the log (stream info, a message by
// position or by subject), and for each name only its own durable
// consumer "sub-<name>" on LEDGER (create, update, read, pull,
// acknowledge, delete), its parked events "parked.<name>.>" in
// LEDGER_PARKED (append, read back with an ordered consumer filtered to
// them) and its dedupe bucket "sub-dedupe-<name>". Nothing else: no other
// consumer on the log (so no team can change or delete another's), no
// append to the log, no stream created but its dedupe bucket's (the
// parking stream is created by `ledger serve`).
func SubscriberPermissions(names []string) *server.Permissions {
	pub := []string{
		api + "INFO",
		api + "STREAM.INFO." + stream,
		api + "STREAM.MSG.GET." + stream,
		api + "DIRECT.GET." + stream,
		api + "DIRECT.GET." + stream + ".>",
		api + "STREAM.INFO." + parkedStream,
		// Reading parked events back: an ordered consumer under a generated
		// name, its filter in the subject, so only the team's own.
		api + "CONSUMER.INFO." + parkedStream + ".*",
		api + "CONSUMER.DELETE." + parkedStream + ".*",
		api + "CONSUMER.MSG.NEXT." + parkedStream + ".*",
	}
	for _, n := range names {
		c := subConsumerPrefix + n
		pub = append(pub,
			api+"CONSUMER.CREATE."+stream+"."+c,
			api+"CONSUMER.CREATE."+stream+"."+c+".>",
			api+"CONSUMER.DURABLE.CREATE."+stream+"."+c,
			api+"CONSUMER.INFO."+stream+"."+c,
			api+"CONSUMER.DELETE."+stream+"."+c,
			api+"CONSUMER.MSG.NEXT."+stream+"."+c,
			"$JS.ACK."+stream+"."+c+".>",
			parkedSubjectPrefix+n+".>",
			api+"CONSUMER.CREATE."+parkedStream+".*."+parkedSubjectPrefix+n+".>",
		)
		pub = append(pub, kvBucket(dedupeBucketPrefix+n)...)
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub, Deny: append(shrinkLedger(), "ledger.>")},
		Subscribe: &server.SubjectPermission{Allow: []string{inbox}},
	}
}

// Subscriber is a minted subscriber user: its team, subscriptions, public
// key and files.
type Subscriber struct {
	Team          string   `json:"team"`
	Subscriptions []string `json:"subscriptions"`
	Nkey          string   `json:"nkey"`
	SeedFile      string   `json:"seed_file"`
	CredsFile     string   `json:"creds_file"`
	ContextFile   string   `json:"context_file"`
}

// MintSubscriber creates, or updates, team's subscriber user in dataDir:
// its seed (kept if present, so re-minting with more subscriptions keeps
// the key), a .creds file whose JWT carries the permissions of
// SubscriberPermissions and a NATS context for url, and its entry in
// auth.json. A running server that trusts the ledger's account admits the
// new JWT at once; the revocation of the team's older JWT (fewer
// subscriptions) reaches the embedded server on its next start and a
// cluster with the configuration `ledger credentials server-config`
// prints next.
func MintSubscriber(dataDir, team string, subscriptions []string, url string) (Subscriber, error) {
	if err := ValidateTeam(team); err != nil {
		return Subscriber{}, err
	}
	names, err := subscriptionsOf(team, subscriptions)
	if err != nil {
		return Subscriber{}, err
	}
	set, err := Ensure(dataDir)
	if err != nil {
		return Subscriber{}, err
	}
	dir := filepath.Join(set.dir, SubscribersDir)
	if err := mkdirPrivate(dir); err != nil {
		return Subscriber{}, err
	}
	seed := filepath.Join(dir, team+SeedExt)
	pub, _, err := ensureSeed(seed)
	if err != nil {
		return Subscriber{}, err
	}
	u := User{Role: RoleSubscriber, Team: team, Subscriptions: names, Nkey: pub, Permissions: SubscriberPermissions(names)}
	i := slices.IndexFunc(set.users, func(o User) bool { return o.Role == RoleSubscriber && o.Team == team })
	if i >= 0 {
		set.users[i] = u
	} else {
		set.users = append(set.users, u)
	}
	if err := writeConfig(filepath.Join(set.dir, ConfigFile), fileConfig{Version: configVersion, Users: set.users, Retired: set.retired}); err != nil {
		return Subscriber{}, err
	}
	s := Subscriber{Team: team, Subscriptions: names, Nkey: pub, SeedFile: seed,
		CredsFile: filepath.Join(dir, team+CredsExt), ContextFile: filepath.Join(dir, team+ContextExt)}
	// Mints the team's JWT with its permissions, signed by the account
	// key: a server that trusts the account admits it at once.
	if err := set.ensureTrust(); err != nil {
		return Subscriber{}, err
	}
	if err := writeContext(s.ContextFile, "ledger subscriber "+team, url, s.CredsFile); err != nil {
		return Subscriber{}, err
	}
	return s, nil
}

// checkSubscriberUser checks a subscriber user read from auth.json: a valid
// team, seen once, its subscriptions the team's, a public user key.
func checkSubscriberUser(u User, seen map[string]bool) error {
	if err := ValidateTeam(u.Team); err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	if seen["subscriber/"+u.Team] {
		return fmt.Errorf("subscriber team %s appears twice", u.Team)
	}
	seen["subscriber/"+u.Team] = true
	if len(u.Subscriptions) == 0 {
		return fmt.Errorf("subscriber team %s: subscriptions: none", u.Team)
	}
	if _, err := subscriptionsOf(u.Team, u.Subscriptions); err != nil {
		return fmt.Errorf("subscriber team %s: %w", u.Team, err)
	}
	if !nkeys.IsValidPublicUserKey(u.Nkey) {
		return fmt.Errorf("subscriber team %s: nkey is not a public user key", u.Team)
	}
	return nil
}

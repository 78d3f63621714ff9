package listing

import (
	"context"
	"maps"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/policyview"
	"github.com/marketledger/ledger/runtime/service"
)

// ServiceName is the micro service name, as `nats micro ls` shows it.
const ServiceName = "ledger-listing"

// SubjectPrefix is the subject group of the service's endpoints: a command
// "listing.<verb>" is served on "svc.ledger.listing.<verb>".
const SubjectPrefix = "svc.ledger.listing"

// MaxInFlight bounds the requests one Serve decides at the same time; more
// wait in the subscription's pending queue.
const MaxInFlight = 256

// Aggregate is the listing decider as the command runner sees it.
var Aggregate = command.Aggregate[Listing]{Context: contracts.ServiceListing, Initial: Initial, Evolve: Evolve, Clone: Clone}

// Clone returns a deep copy of a listing, so that the command runner can
// keep it between commands.
func Clone(l Listing) Listing {
	l.Reserved = maps.Clone(l.Reserved)
	l.Released = maps.Clone(l.Released)
	return l
}

// PolicySnapshot returns the policy a decision is made under; refresh asks
// for the store's newest policy after a fenced append was refused.
// (*policyview.View).Snapshot is one.
type PolicySnapshot func(ctx context.Context, refresh bool) (command.Policy[policyview.Rules], error)

// Service handles the listing commands: validate, load, decide, append.
// It is safe for concurrent use.
type Service struct {
	runner *command.Runner
	policy PolicySnapshot
}

// New returns a listing service deciding with r. Creations and price
// changes are decided under policy and fenced by the store; a nil policy
// decides them under no rule, which only tests should do.
func New(r *command.Runner, policy PolicySnapshot) *Service {
	return &Service{runner: r, policy: policy}
}

// Load returns a listing's current state and version.
func (s *Service) Load(ctx context.Context, id string) (Listing, uint64, error) {
	return command.Load(ctx, s.runner, Aggregate, id)
}

// run decides an already validated command on listing id.
func (s *Service) run(ctx context.Context, id, key string, cmd any, fenced bool) (command.Result[Listing], error) {
	meta := command.Meta{CommandID: events.NewID(), IdempotencyKey: key, Command: cmd}
	var policy func(context.Context, bool) (command.Policy[policyview.Rules], error)
	if fenced && s.policy != nil {
		policy = s.policy
	}
	return command.Run(ctx, s.runner, Aggregate, id, meta, policy,
		func(st Listing, rules policyview.Rules, now time.Time) ([]any, error) {
			return Decide(st, cmd, Inputs{Rules: rules}, now)
		})
}

// Reply is what a command answers: the listing after it and where its events
// went.
type Reply = service.Reply[Listing]

func reply(id string, r command.Result[Listing]) Reply { return service.NewReply(id, r) }

// Problem is the RFC 9457 body of a refused command.
type Problem = service.Problem

// Serve exposes every listing command as a NATS micro endpoint of service
// "ledger-listing": endpoint "listing_<verb>" on subject
// "svc.ledger.listing.<verb>", its request the command's contract JSON, its
// reply a Reply, its refusal a micro error with a Problem body.
func (s *Service) Serve(nc *nats.Conn, opts ...service.Option) (micro.Service, error) {
	cfg := service.Config{Name: ServiceName, Description: "listing commands of the marketplace ledger",
		Context: contracts.ServiceListing, Commands: Commands, Prefix: SubjectPrefix, MaxInFlight: MaxInFlight,
		Handle:    func(ctx context.Context, name string, body []byte) (any, error) { return s.Handle(ctx, name, body) },
		Correlate: command.WithCorrelationID}
	for _, o := range opts {
		o(&cfg)
	}
	return service.Serve(nc, cfg)
}

package order

import (
	"context"
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
const ServiceName = "ledger-order"

// SubjectPrefix is the subject group of the service's endpoints: a command
// "order.<verb>" is served on "svc.ledger.order.<verb>".
const SubjectPrefix = "svc.ledger.order"

// MaxInFlight bounds the requests one Serve decides at the same time; more
// wait in the subscription's pending queue.
const MaxInFlight = 256

// Aggregate is the order decider as the command runner sees it.
// An Order holds only values, so a copy is a clone: the command runner may
// keep it between commands.
var Aggregate = command.Aggregate[Order]{Context: contracts.ServiceOrder, Initial: Initial, Evolve: Evolve,
	Clone: func(o Order) Order { return o }}

// PolicySnapshot returns the policy a decision is made under; refresh asks
// for the store's newest policy after a fenced append was refused.
// (*policyview.View).Snapshot is one.
type PolicySnapshot func(ctx context.Context, refresh bool) (command.Policy[policyview.Rules], error)

// Service handles the order commands: validate, load, decide, append.
// It is safe for concurrent use.
type Service struct {
	runner *command.Runner
	policy PolicySnapshot
}

// New returns an order service deciding with r. Placements are decided
// under policy and fenced by the store; a nil policy decides them under no
// rule, which only tests should do.
func New(r *command.Runner, policy PolicySnapshot) *Service {
	return &Service{runner: r, policy: policy}
}

// Load returns an order's current state and version.
func (s *Service) Load(ctx context.Context, id string) (Order, uint64, error) {
	return command.Load(ctx, s.runner, Aggregate, id)
}

// run decides an already validated command on order id. A placement reads
// the listing at every attempt, right before deciding, so the order copies
// the listing's price and attributes as they are at decision time.
func (s *Service) run(ctx context.Context, id, key string, cmd any, fenced bool) (command.Result[Order], error) {
	meta := command.Meta{CommandID: events.NewID(), IdempotencyKey: key, Command: cmd}
	var policy func(context.Context, bool) (command.Policy[policyview.Rules], error)
	if fenced && s.policy != nil {
		policy = s.policy
	}
	return command.Run(ctx, s.runner, Aggregate, id, meta, policy,
		func(st Order, rules policyview.Rules, now time.Time) ([]any, error) {
			var l Listing
			if p, ok := cmd.(contracts.PlaceOrder); ok {
				var err error
				if l, _, err = command.Load(ctx, s.runner, ListingAggregate, p.ListingID); err != nil {
					return nil, err
				}
			}
			return Decide(st, cmd, Inputs{Listing: l, Rules: rules}, now)
		})
}

// Reply is what a command answers: the order after it and where its events
// went.
type Reply = service.Reply[Order]

func reply(id string, r command.Result[Order]) Reply { return service.NewReply(id, r) }

// Problem is the RFC 9457 body of a refused command.
type Problem = service.Problem

// Serve exposes every order command as a NATS micro endpoint of service
// "ledger-order": endpoint "order_<verb>" on subject "svc.ledger.order.<verb>",
// its request the command's contract JSON, its reply a Reply, its refusal a
// micro error with a Problem body.
func (s *Service) Serve(nc *nats.Conn, opts ...service.Option) (micro.Service, error) {
	cfg := service.Config{Name: ServiceName, Description: "order commands of the marketplace ledger",
		Context: contracts.ServiceOrder, Commands: Commands, Prefix: SubjectPrefix, MaxInFlight: MaxInFlight,
		Handle:    func(ctx context.Context, name string, body []byte) (any, error) { return s.Handle(ctx, name, body) },
		Correlate: command.WithCorrelationID}
	for _, o := range opts {
		o(&cfg)
	}
	return service.Serve(nc, cfg)
}

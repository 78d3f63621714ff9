package order

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/contracts/policyview"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/events/command"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
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

type correlationKey struct{}

// WithCorrelationID returns a context whose commands record id as their
// correlation id, tying them to one business flow.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// Load returns an order's current state and version.
func (s *Service) Load(ctx context.Context, id string) (Order, uint64, error) {
	return command.Load(ctx, s.runner, Aggregate, id)
}

// run decides an already validated command on order id. A placement reads
// the listing at every attempt, right before deciding, so the order copies
// the listing's price and attributes as they are at decision time.
func (s *Service) run(ctx context.Context, id, key string, cmd any, fenced bool) (command.Result[Order], error) {
	corr, _ := ctx.Value(correlationKey{}).(string)
	meta := command.Meta{CommandID: events.NewID(), CorrelationID: corr, IdempotencyKey: key, Command: cmd}
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
			return Decide(st, cmd, l, rules, now)
		})
}

// Reply is the JSON answer to a command served over NATS.
type Reply struct {
	AggregateID string `json:"aggregate_id"`
	// Version is the order's version after the command.
	Version uint64 `json:"version"`
	// Replayed is true when the idempotency key had been used by the same
	// command: nothing new was appended.
	Replayed bool `json:"replayed,omitempty"`
	// Events are the types of the events appended, in order.
	Events []string `json:"events,omitempty"`
	// FirstPosition and LastPosition are the global positions of the
	// appended events (0 when none were appended).
	FirstPosition uint64 `json:"first_position,omitempty"`
	LastPosition  uint64 `json:"last_position,omitempty"`
	State         Order  `json:"state"`
}

func reply(id string, r command.Result[Order]) Reply {
	out := Reply{AggregateID: id, Version: r.Version, Replayed: r.Replayed, State: r.State,
		FirstPosition: r.Appended.FirstPosition, LastPosition: r.Appended.LastPosition}
	for _, e := range r.Events {
		out.Events = append(out.Events, e.Type)
	}
	return out
}

// Problem is the JSON body of an error reply (RFC 9457 problem details,
// with the field and rule of the events.Error).
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Field  string `json:"field,omitempty"`
	Rule   string `json:"rule,omitempty"`
}

// ProblemOf maps an error to its status code and problem body: 422 for
// invalid input, 404, 409 for conflicts and reused keys, 423 when a policy
// rule blocks the command, 503 when the log is unavailable.
func ProblemOf(err error) Problem {
	p := Problem{Status: 500, Detail: err.Error()}
	var e *events.Error
	if errors.As(err, &e) {
		p.Field, p.Rule = e.Field, e.Rule
		switch e.Kind {
		case events.KindInvalid:
			p.Status = 422
		case events.KindNotFound:
			p.Status = 404
		case events.KindConflict, events.KindDuplicate:
			p.Status = 409
		case events.KindFrozen:
			p.Status = 423
		case events.KindUnavailable:
			p.Status = 503
		}
		p.Type, p.Title = "urn:ledger:problem:"+e.Kind.String(), e.Kind.String()
	} else {
		p.Type, p.Title = "urn:ledger:problem:other", "other"
	}
	return p
}

// ServeOption changes how Serve exposes the service.
type ServeOption func(*serveConfig)

type serveConfig struct{ prefix string }

// WithSubjectPrefix serves the endpoints under prefix instead of
// SubjectPrefix. While the LEDGER stream captures every subject under
// "ledger.>", requests on SubjectPrefix are also stored by JetStream, which
// answers them with a publish acknowledgement; deployments and tests use a
// prefix outside the stream until the stream's subjects exclude the
// services' request subjects.
func WithSubjectPrefix(prefix string) ServeOption {
	return func(c *serveConfig) { c.prefix = prefix }
}

// Serve exposes every order command over NATS request-reply as the micro
// service ServiceName: the command "order.<verb>" is the endpoint
// "order.<verb>" on subject "svc.ledger.order.<verb>", its request the
// command's JSON body and its reply a Reply, or a micro error whose code is
// the problem status ("423 frozen" for a policy refusal) and whose data is
// the JSON Problem.
func (s *Service) Serve(nc *nats.Conn, opts ...ServeOption) (micro.Service, error) {
	cfg := serveConfig{prefix: SubjectPrefix}
	for _, o := range opts {
		o(&cfg)
	}
	svc, err := micro.AddService(nc, micro.Config{Name: ServiceName, Version: "1.0.0",
		Description: "order commands of the marketplace ledger"})
	if err != nil {
		return nil, err
	}
	sem := make(chan struct{}, MaxInFlight)
	g := svc.AddGroup(cfg.prefix)
	for _, name := range Commands {
		verb := name[len(contracts.ServiceOrder)+1:]
		h := micro.HandlerFunc(func(req micro.Request) {
			// Decisions wait on the log; deciding them one at a time per
			// endpoint would serialise unrelated orders.
			// The reply is published on the connection, not through req:
			// micro reads req's state when the handler returns.
			sem <- struct{}{}
			out := responder{nc: nc, reply: req.Reply()}
			data, corr := req.Data(), req.Headers().Get("Ledger-Correlation-Id")
			go func() {
				defer func() { <-sem }()
				s.respond(name, data, corr, out)
			}()
		})
		if err := g.AddEndpoint(contracts.ServiceOrder+"_"+verb, h, micro.WithEndpointSubject(verb),
			micro.WithEndpointMetadata(map[string]string{"command": name})); err != nil {
			svc.Stop()
			return nil, err
		}
	}
	return svc, nil
}

func (s *Service) respond(name string, data []byte, corr string, out responder) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if corr != "" {
		ctx = WithCorrelationID(ctx, corr)
	}
	if !json.Valid(data) {
		out.fail(Problem{Type: "urn:ledger:problem:malformed", Title: "malformed", Status: 400,
			Detail: "the request body is not one JSON value"})
		return
	}
	r, err := s.Handle(ctx, name, data)
	if err != nil {
		out.fail(ProblemOf(err))
		return
	}
	out.ok(r)
}

// responder answers one request in the micro service's wire format.
type responder struct {
	nc    *nats.Conn
	reply string
}

func (r responder) ok(v any) {
	body, err := json.Marshal(v)
	if err != nil {
		r.fail(ProblemOf(err))
		return
	}
	_ = r.nc.Publish(r.reply, body)
}

// fail sends a micro error: the status as the code ("423 frozen" for a
// policy refusal), the detail as the description, the Problem as the body.
func (r responder) fail(p Problem) {
	body, _ := json.Marshal(p)
	code := itoa(p.Status)
	if p.Status == 423 {
		code = "423 frozen"
	}
	m := nats.NewMsg(r.reply)
	m.Header.Set(micro.ErrorHeader, p.Detail)
	m.Header.Set(micro.ErrorCodeHeader, code)
	m.Data = body
	_ = r.nc.PublishMsg(m)
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

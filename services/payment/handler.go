package payment

import (
	"context"
	"errors"
	"fmt"
	"sort"
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
const ServiceName = "ledger-payment"

// SubjectPrefix is the subject group of the service's endpoints:
// svc.ledger.payment.<verb>. It is deliberately outside "ledger.>": the
// LEDGER stream captures every subject under ledger., so a request sent
// there would be stored in the log (and acknowledged by the stream
// instead of answered by the service).
const SubjectPrefix = "svc.ledger.payment"

// RequestTimeout bounds one request served over NATS.
const RequestTimeout = 10 * time.Second

// MaxInFlight bounds the requests one instance decides at once; further
// requests wait in the subscription's pending queue.
const MaxInFlight = 256

// PolicySnapshot returns the policy rules known to the service, tagged with
// the position of the newest policy event they include; refresh asks for a
// fresh read of the timeline (after a fenced append was refused).
type PolicySnapshot func(ctx context.Context, refresh bool) (command.Policy[policyview.Rules], error)

// Config configures a Service.
type Config struct {
	// Store is the log. Required.
	Store events.Store
	// Clock is the decision clock; time.Now when nil.
	Clock func() time.Time
	// Skew, when set, measures Clock against the log server's from the
	// service's appends and refuses fenced commands beyond its bound.
	Skew *command.Skew
	// FeeBasisPoints is the platform fee at settlement (0..MaxFeeBasisPoints).
	FeeBasisPoints int64
	// Policy is the policy snapshot. When nil, New starts a
	// runtime/policyview.View following ledger.policy.>, which needs a
	// Store that is also a policyview.Source (*events.JetStreamStore is).
	Policy PolicySnapshot
	// Refusals, when set, is told of every command a policy rule refused,
	// to put it on record (runtime/enforcement).
	Refusals command.RefusalRecorder
}

// Service handles payment commands: load, decide, append, with bounded
// retry, idempotency keys and the policy fence (runtime/command). It is safe
// for concurrent use.
type Service struct {
	runner *command.Runner
	// feeBasisPoints is the platform fee at settlement, an input of every
	// decision.
	feeBasisPoints int64
	policy         PolicySnapshot
	view           *policyview.View // started by New, closed by Close; nil when Config.Policy was given
}

// New returns a Service, refusing a configuration it cannot run with. It
// waits (bounded) until its policy view has caught up with the log.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("payment: Config.Store is required")
	}
	if _, err := Fee(0, cfg.FeeBasisPoints); err != nil {
		return nil, fmt.Errorf("payment: Config.FeeBasisPoints %d: %w", cfg.FeeBasisPoints, err)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	s := &Service{
		runner:         &command.Runner{Store: cfg.Store, Codec: contracts.Codec{}, Source: contracts.Source(contracts.ServicePayment), Clock: cfg.Clock, Skew: cfg.Skew, Refusals: cfg.Refusals},
		feeBasisPoints: cfg.FeeBasisPoints,
		policy:         cfg.Policy,
	}
	if s.policy == nil {
		src, ok := cfg.Store.(policyview.Source)
		if !ok {
			return nil, errors.New("payment: Config.Policy is required with a store that is not a policyview.Source")
		}
		v, err := policyview.Start(ctx, src)
		if err != nil {
			return nil, fmt.Errorf("payment: policy view: %w", err)
		}
		s.view, s.policy = v, v.Snapshot
	}
	return s, nil
}

// Close stops the policy view New started. Commands that need the policy
// fail afterwards.
func (s *Service) Close() {
	if s.view != nil {
		s.view.Close()
	}
}

// Load returns a payment's current state and version (0: unknown).
func (s *Service) Load(ctx context.Context, id string) (State, uint64, error) {
	return command.Load(ctx, s.runner, aggregate, id)
}

// Reply is the JSON answer to a successful command.
type Reply struct {
	PaymentID string `json:"payment_id"`
	// Version is the payment's version after the command.
	Version uint64 `json:"version"`
	// Replayed is true when an idempotency key answered with the first
	// result: the same events and the payment as that command left it.
	Replayed bool `json:"replayed,omitempty"`
	// Events are the events appended, in order.
	Events  []EventRef `json:"events"`
	Payment View       `json:"payment"`
}

// EventRef names one appended event.
type EventRef struct {
	ID             string `json:"id"`
	Type           string `json:"type"`
	Position       uint64 `json:"position"`
	PolicyPosition uint64 `json:"policy_position"`
}

// View is the JSON view of a payment's state.
type View struct {
	Status          Status              `json:"status"`
	OrderID         string              `json:"order_id"`
	BuyerID         string              `json:"buyer_id"`
	SellerID        string              `json:"seller_id"`
	Currency        string              `json:"currency"`
	AuthorizedMinor int64               `json:"authorized_minor"`
	CapturedMinor   int64               `json:"captured_minor"`
	RefundedMinor   int64               `json:"refunded_minor"`
	Settled         bool                `json:"settled"`
	FeeMinor        int64               `json:"fee_minor"`
	Balances        []contracts.Posting `json:"balances"`
}

// NewReply builds the JSON answer of a command result.
func NewReply(id string, r command.Result[State]) Reply {
	out := Reply{PaymentID: id, Version: r.Version, Replayed: r.Replayed, Events: []EventRef{}, Payment: viewOf(r.State)}
	pos := r.Appended.FirstPosition
	for _, e := range r.Events {
		// The events of one decision are stored contiguously from FirstPosition.
		out.Events = append(out.Events, EventRef{ID: e.ID, Type: e.Type, Position: pos, PolicyPosition: e.PolicyPosition})
		pos++
	}
	return out
}

func viewOf(s State) View {
	v := View{Status: s.Status, OrderID: s.OrderID, BuyerID: s.BuyerID, SellerID: s.SellerID, Currency: s.Currency,
		AuthorizedMinor: s.AuthorizedMinor, CapturedMinor: s.CapturedMinor, RefundedMinor: s.RefundedMinor,
		Settled: s.Settled, FeeMinor: s.FeeMinor, Balances: []contracts.Posting{}}
	for k, b := range s.Balances {
		if b != 0 {
			v.Balances = append(v.Balances, contracts.Posting{Account: k.Account, AmountMinor: b, Currency: k.Currency})
		}
	}
	sort.Slice(v.Balances, func(i, j int) bool {
		return v.Balances[i].Account+v.Balances[i].Currency < v.Balances[j].Account+v.Balances[j].Currency
	})
	return v
}

// Serve exposes every payment command as a NATS micro endpoint of service
// "ledger-payment": endpoint "payment_<verb>" on subject
// "svc.ledger.payment.<verb>", its request the command's contract JSON, its
// reply a Reply, its refusal a micro error with a Problem body.
func (s *Service) Serve(nc *nats.Conn, opts ...service.Option) (micro.Service, error) {
	names := make([]string, len(routes))
	for i, r := range routes {
		names[i] = r.name
	}
	cfg := service.Config{Name: ServiceName,
		Description: "payments: authorize, capture, void, refund, settle, with double-entry postings",
		Context:     contracts.ServicePayment, Commands: names, Prefix: SubjectPrefix, MaxInFlight: MaxInFlight,
		Timeout: RequestTimeout, Correlate: command.WithCorrelationID,
		Handle: func(ctx context.Context, name string, body []byte) (any, error) {
			cmd, err := contracts.DecodeCommand(name, body)
			if err != nil {
				return nil, err
			}
			res, err := s.Handle(ctx, cmd)
			if err != nil {
				return nil, err
			}
			return NewReply(res.State.ID, res), nil
		}}
	for _, o := range opts {
		o(&cfg)
	}
	return service.Serve(nc, cfg)
}

// Problem is the RFC 9457 body of a refused command.
type Problem = service.Problem

// NewProblem maps an error to its problem and status.
func NewProblem(err error) Problem { return service.ProblemOf(err) }

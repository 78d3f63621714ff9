package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/contracts/policyview"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/events/command"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
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
	// FeeBasisPoints is the platform fee at settlement (0..MaxFeeBasisPoints).
	FeeBasisPoints int64
	// Policy is the policy snapshot. When nil, New starts a
	// contracts/policyview.View following ledger.policy.>, which needs a
	// Store that is also a policyview.Source (*events.JetStreamStore is).
	Policy PolicySnapshot
}

// Service handles payment commands: load, decide, append, with bounded
// retry, idempotency keys and the policy fence (events/command). It is safe
// for concurrent use.
type Service struct {
	runner  *command.Runner
	decider Decider
	policy  PolicySnapshot
	view    *policyview.View // started by New, closed by Close; nil when Config.Policy was given
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
		runner:  &command.Runner{Store: cfg.Store, Codec: contractsCodec{}, Source: contracts.Source(contracts.ServicePayment), Clock: cfg.Clock},
		decider: Decider{FeeBasisPoints: cfg.FeeBasisPoints},
		policy:  cfg.Policy,
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

// contractsCodec adapts the contracts package to command.Codec.
type contractsCodec struct{}

func (contractsCodec) Encode(v any) (string, int, []byte, error) { return contracts.Encode(v) }
func (contractsCodec) Decode(typ string, version int, data []byte) (any, error) {
	return contracts.Decode(typ, version, data)
}

// Reply is the JSON answer to a successful command.
type Reply struct {
	PaymentID string `json:"payment_id"`
	// Version is the payment's version after the command.
	Version uint64 `json:"version"`
	// Replayed is true when an idempotency key answered with the first
	// result; Events is then empty.
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

// Serve exposes every command as a NATS micro endpoint of service
// "ledger-payment" on subject ledger.svc.payment.<verb> (authorize,
// capture, void, refund, settle). A request body is the command's JSON
// (contracts); the reply is a Reply, or a micro error whose code is the
// HTTP status and whose body is a Problem. The header Correlation-Id, when
// present, becomes the events' correlation id.
func (s *Service) Serve(nc *nats.Conn) (micro.Service, error) {
	svc, err := micro.AddService(nc, micro.Config{Name: ServiceName, Version: "1.0.0",
		Description: "payments: authorize, capture, void, refund, settle, with double-entry postings"})
	if err != nil {
		return nil, err
	}
	g := svc.AddGroup(SubjectPrefix)
	sem := make(chan struct{}, MaxInFlight)
	for _, r := range routes {
		if err := g.AddEndpoint(r.verb, s.endpoint(r, sem), micro.WithEndpointMetadata(map[string]string{"command": r.name})); err != nil {
			svc.Stop()
			return nil, err
		}
	}
	return svc, nil
}

// endpoint decides each request on its own goroutine (at most MaxInFlight
// at once): a micro subscription delivers serially, and one slow append
// must not hold up unrelated payments.
func (s *Service) endpoint(r route, sem chan struct{}) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			s.serveOne(r, req)
		}()
	})
}

func (s *Service) serveOne(r route, req micro.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	if id := req.Headers().Get("Correlation-Id"); id != "" {
		ctx = WithCorrelationID(ctx, id)
	}
	cmd, err := contracts.DecodeCommand(r.name, req.Data())
	if err != nil {
		respondError(req, http400(err))
		return
	}
	res, err := s.Handle(ctx, cmd)
	if err != nil {
		respondError(req, err)
		return
	}
	_ = req.RespondJSON(NewReply(res.State.ID, res))
}

// badRequest marks an input that failed its contract at the edge (400), as
// opposed to a valid command a business rule refused (422).
type badRequest struct{ error }

func (b badRequest) Unwrap() error { return b.error }

func http400(err error) error { return badRequest{err} }

// Problem is the JSON body of an error reply (RFC 9457 problem details,
// with the ledger's field and rule).
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Field  string `json:"field,omitempty"`
	Rule   string `json:"rule,omitempty"`
}

// NewProblem classifies err: 400 input against its contract, 422 a rule
// refused a valid command, 404 unknown aggregate, 409 conflict or reused
// idempotency key, 423 frozen by policy, 503 log unavailable, 500 other.
func NewProblem(err error) Problem {
	k := events.KindOf(err)
	p := Problem{Type: "urn:marketledger:problem:" + k.String(), Detail: err.Error()}
	var e *events.Error
	if errors.As(err, &e) {
		p.Field, p.Rule = e.Field, e.Rule
	}
	var br badRequest
	switch {
	case errors.As(err, &br):
		p.Status, p.Title, p.Type = 400, "input breaks its contract", "urn:marketledger:problem:bad_request"
	case k == events.KindInvalid:
		p.Status, p.Title = 422, "refused by a business rule"
	case k == events.KindNotFound:
		p.Status, p.Title = 404, "not found"
	case k == events.KindConflict || k == events.KindDuplicate:
		p.Status, p.Title = 409, "conflict"
	case k == events.KindFrozen:
		p.Status, p.Title = 423, "frozen by policy"
	case k == events.KindUnavailable:
		p.Status, p.Title = 503, "log unavailable; retry with the same idempotency key"
	default:
		p.Status, p.Title = 500, "internal error"
	}
	return p
}

func respondError(req micro.Request, err error) {
	p := NewProblem(err)
	body, _ := json.Marshal(p)
	_ = req.Error(fmt.Sprint(p.Status), p.Detail, body, micro.WithHeaders(micro.Headers{"Content-Type": {"application/problem+json"}}))
}

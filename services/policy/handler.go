package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/events/command"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// ServiceName is the micro service name, as `nats micro ls` shows it.
const ServiceName = "ledger-policy"

// SubjectPrefix is the subject group of the service's endpoints:
// svc.ledger.policy.<verb>. It is deliberately outside "ledger.>": the
// LEDGER stream captures every subject under ledger., so a request sent
// there would be stored in the log.
const SubjectPrefix = "svc.ledger.policy"

// RequestTimeout bounds one request served over NATS.
const RequestTimeout = 10 * time.Second

// Config configures a Service.
type Config struct {
	// Store is the log. Required.
	Store events.Store
	// Clock is the decision clock; time.Now when nil.
	Clock func() time.Time
	// Authorizer tells the issuer's roles. Required: no policy event is
	// appended without a role check.
	Authorizer Authorizer
}

// Service handles policy commands and the list query. It is safe for
// concurrent use.
type Service struct {
	runner *command.Runner
	auth   Authorizer
	store  events.Store
}

// New returns a Service, refusing a configuration it cannot run with.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Authorizer == nil {
		return nil, errors.New("policy: Config.Store and Config.Authorizer are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Service{
		runner: &command.Runner{Store: cfg.Store, Codec: contractsCodec{}, Source: contracts.Source(contracts.ServicePolicy), Clock: cfg.Clock},
		auth:   cfg.Authorizer,
		store:  cfg.Store,
	}, nil
}

// contractsCodec adapts the contracts package to command.Codec.
type contractsCodec struct{}

func (contractsCodec) Encode(v any) (string, int, []byte, error) { return contracts.Encode(v) }
func (contractsCodec) Decode(typ string, version int, data []byte) (any, error) {
	return contracts.Decode(typ, version, data)
}

// Reply is the JSON answer to a successful command.
type Reply struct {
	RuleID   string     `json:"rule_id"`
	Version  uint64     `json:"version"`
	Replayed bool       `json:"replayed,omitempty"`
	Events   []EventRef `json:"events"`
	Rule     RuleView   `json:"rule"`
}

// EventRef names one appended event.
type EventRef struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Position uint64 `json:"position"`
}

// NewReply builds the JSON answer of a command result.
func NewReply(r command.Result[State]) Reply {
	out := Reply{RuleID: r.State.ID, Version: r.Version, Replayed: r.Replayed, Events: []EventRef{}, Rule: viewOf(r.State.Rule, time.Time{})}
	pos := r.Appended.FirstPosition
	for _, e := range r.Events {
		out.Events = append(out.Events, EventRef{ID: e.ID, Type: e.Type, Position: pos})
		pos++
	}
	return out
}

// Serve exposes every command as a NATS micro endpoint of service
// "ledger-policy" on svc.ledger.policy.<verb> (impose_freeze, lift_freeze,
// set_floor_price, lift_floor_price) and the query "list". A command
// request is the command's JSON (contracts) and its reply a Reply; a list
// request is a ListRequest and its reply a Listing. Errors are micro errors
// whose code is the HTTP status and whose body is a Problem. Policy
// commands are rare: each endpoint decides its requests in order.
func (s *Service) Serve(nc *nats.Conn) (micro.Service, error) {
	svc, err := micro.AddService(nc, micro.Config{Name: ServiceName, Version: "1.0.0",
		Description: "regulatory policy: freezes and floor prices, and the policy timeline"})
	if err != nil {
		return nil, err
	}
	g := svc.AddGroup(SubjectPrefix)
	for _, r := range routes {
		if err := g.AddEndpoint(r.verb, s.endpoint(r), micro.WithEndpointMetadata(map[string]string{"command": r.name})); err != nil {
			svc.Stop()
			return nil, err
		}
	}
	if err := g.AddEndpoint("list", micro.HandlerFunc(s.serveList)); err != nil {
		svc.Stop()
		return nil, err
	}
	return svc, nil
}

func (s *Service) endpoint(r route) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
		defer cancel()
		cmd, err := contracts.DecodeCommand(r.name, req.Data())
		if err != nil {
			respondError(req, badRequest{err})
			return
		}
		res, err := s.Handle(ctx, cmd)
		if err != nil {
			respondError(req, err)
			return
		}
		_ = req.RespondJSON(NewReply(res))
	})
}

func (s *Service) serveList(req micro.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	var q ListRequest
	if len(req.Data()) > 0 {
		if err := json.Unmarshal(req.Data(), &q); err != nil {
			respondError(req, badRequest{&events.Error{Op: "policy.list", Kind: events.KindInvalid, Field: "/as_of", Rule: "RFC 3339 instant: " + err.Error()}})
			return
		}
	}
	l, err := s.List(ctx, q.AsOf)
	if err != nil {
		respondError(req, err)
		return
	}
	_ = req.RespondJSON(l)
}

// badRequest marks an input that failed its contract at the edge (400), as
// opposed to a valid command a business rule refused (422).
type badRequest struct{ error }

func (b badRequest) Unwrap() error { return b.error }

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
// refused a valid command (an issuer without the role included), 404
// unknown rule, 409 conflict or reused idempotency key, 503 log
// unavailable, 500 other.
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
		p.Status, p.Title = 503, "unavailable; retry with the same idempotency key"
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

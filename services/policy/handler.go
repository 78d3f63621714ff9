package policy

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/service"
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
	// Skew, when set, measures Clock against the log server's from the
	// service's appends and refuses fenced commands beyond its bound.
	Skew *command.Skew
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

	// The activator's timeline and the position it was read to.
	tlMu  sync.Mutex
	tl    contracts.PolicyTimeline
	tlPos uint64
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
		runner: &command.Runner{Store: cfg.Store, Codec: contracts.Codec{}, Source: contracts.Source(contracts.ServicePolicy), Clock: cfg.Clock, Skew: cfg.Skew},
		auth:   cfg.Authorizer,
		store:  cfg.Store,
	}, nil
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

// NewReply builds the JSON answer of a command result. Its rule says
// in_force from the state after the command, by position: an effective-now
// freeze is in force from its own event, whose position the reply names.
func NewReply(r command.Result[State]) Reply {
	out := Reply{RuleID: r.State.ID, Version: r.Version, Replayed: r.Replayed, Events: []EventRef{}}
	st := r.State
	rv := RuleView{RuleID: st.Rule.RuleID, Kind: st.Rule.Kind, Scope: st.Rule.Scope, BlockedOperations: st.Rule.BlockedOperations,
		Floor: st.Rule.Floor, Origin: st.Rule.Origin, EffectiveAt: st.Rule.EffectiveAt, ScheduledAt: st.ScheduledAt,
		LegalBasis: st.Rule.LegalBasis, Issuer: st.Rule.Issuer, LiftedAt: st.Rule.LiftedAt, InForce: st.InForce()}
	pos := r.Appended.FirstPosition
	var pt contracts.PolicyTimeline
	for _, e := range r.Events {
		out.Events = append(out.Events, EventRef{ID: e.ID, Type: e.Type, Position: pos})
		if p, err := contracts.Decode(e.Type, e.SchemaVersion, e.Data); err == nil {
			pt = pt.Apply(pos, p)
		}
		pos++
	}
	// The positions this answer knows: those of the events it appended.
	if tl, ok := pt.Find(st.ID); ok {
		rv.ActivationPosition, rv.LiftActivationPosition = tl.ActivationPosition, tl.LiftActivationPosition
	}
	out.Rule = rv
	return out
}

// Serve exposes every command as a NATS micro endpoint of service
// "ledger-policy": endpoint "policy_<verb>" on svc.ledger.policy.<verb>
// (impose_freeze, lift_freeze, set_floor_price, lift_floor_price) and the
// query "list". A command request is the command's JSON (contracts) and its
// reply a Reply; a list request is a ListRequest and its reply a Listing.
// Errors are micro errors whose code is the HTTP status and whose body is a
// Problem.
func (s *Service) Serve(nc *nats.Conn, opts ...service.Option) (micro.Service, error) {
	names := make([]string, len(routes))
	for i, r := range routes {
		names[i] = r.name
	}
	cfg := service.Config{Name: ServiceName,
		Description: "regulatory policy: freezes and floor prices, and the policy timeline",
		Context:     contracts.ServicePolicy, Commands: names, Prefix: SubjectPrefix, Timeout: RequestTimeout,
		Correlate: command.WithCorrelationID,
		Handle: func(ctx context.Context, name string, body []byte) (any, error) {
			cmd, err := contracts.DecodeCommand(name, body)
			if err != nil {
				return nil, err
			}
			res, err := s.Handle(ctx, cmd)
			if err != nil {
				return nil, err
			}
			return NewReply(res), nil
		}}
	for _, o := range opts {
		o(&cfg)
	}
	svc, err := service.Serve(nc, cfg)
	if err != nil {
		return nil, err
	}
	list := micro.HandlerFunc(func(req micro.Request) { s.serveList(service.NewResponder(nc, req.Reply()), req.Data()) })
	if err := svc.AddGroup(SubjectPrefix).AddEndpoint("list", list); err != nil {
		svc.Stop()
		return nil, err
	}
	return svc, nil
}

func (s *Service) serveList(out service.Responder, data []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	var q ListRequest
	if len(data) > 0 {
		if err := json.Unmarshal(data, &q); err != nil {
			out.Fail(NewProblem(&events.Error{Kind: events.KindInvalid, Reason: events.ReasonMalformed,
				Field: "/as_of", Rule: "RFC 3339 instant with offset", Err: err}))
			return
		}
	}
	l, err := s.List(ctx, q.AsOf)
	if err != nil {
		out.Fail(NewProblem(err))
		return
	}
	out.OK(l)
}

// Problem is the RFC 9457 body of a refused command.
type Problem = service.Problem

// NewProblem maps an error to its problem and status.
func NewProblem(err error) Problem { return service.ProblemOf(err) }

package policy

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
)

// route ties a micro endpoint verb to its contract command name.
type route struct {
	verb string // endpoint name and last subject token: svc.ledger.policy.<verb>
	name string // contracts command name: policy.<verb>
}

// routes are the policy service's commands, in the order they are served.
var routes = []route{
	{"impose_freeze", "policy.impose_freeze"},
	{"lift_freeze", "policy.lift_freeze"},
	{"set_floor_price", "policy.set_floor_price"},
	{"lift_floor_price", "policy.lift_floor_price"},
}

// RolePolicyIssuer is the role an issuer must hold to append policy events.
const RolePolicyIssuer = "policy_issuer"

// Authorizer tells which roles an issuer holds. Implementations must be
// safe for concurrent use.
type Authorizer interface {
	Roles(ctx context.Context, issuer string) ([]string, error)
}

// StaticRoles is an Authorizer from a fixed table: issuer -> roles.
type StaticRoles map[string][]string

// Roles implements Authorizer.
func (m StaticRoles) Roles(_ context.Context, issuer string) ([]string, error) { return m[issuer], nil }

// aggregate describes the policy decider to the command runner.
var aggregate = command.Aggregate[State]{Context: contracts.ServicePolicy, Initial: Initial, Evolve: Evolve}

// Handle runs one decoded policy command (a contracts command value).
func (s *Service) Handle(ctx context.Context, cmd any) (command.Result[State], error) {
	switch c := cmd.(type) {
	case contracts.ImposeFreeze:
		return s.ImposeFreeze(ctx, c)
	case contracts.LiftFreeze:
		return s.LiftFreeze(ctx, c)
	case contracts.SetFloorPrice:
		return s.SetFloorPrice(ctx, c)
	case contracts.LiftFloorPrice:
		return s.LiftFloorPrice(ctx, c)
	}
	return command.Result[State]{}, &events.Error{Op: "policy.Handle", Kind: events.KindInvalid,
		Rule: fmt.Sprintf("%T is not a policy command", cmd)}
}

// HandleDecoded runs a command contracts.DecodeCommand already decoded and
// validated and returns its reply, as every service's does.
func (s *Service) HandleDecoded(ctx context.Context, cmd any) (Reply, error) {
	res, err := s.Handle(ctx, cmd)
	if err != nil {
		return Reply{}, err
	}
	return NewReply(res), nil
}

// ImposeFreeze appends a freeze, if its issuer holds the policy role.
func (s *Service) ImposeFreeze(ctx context.Context, c contracts.ImposeFreeze) (command.Result[State], error) {
	return s.run(ctx, "policy.impose_freeze", c.RuleID, c.Issuer, c.IdempotencyKey, c)
}

// LiftFreeze ends an imposed freeze from its effective instant.
func (s *Service) LiftFreeze(ctx context.Context, c contracts.LiftFreeze) (command.Result[State], error) {
	return s.run(ctx, "policy.lift_freeze", c.RuleID, c.Issuer, c.IdempotencyKey, c)
}

// SetFloorPrice appends a floor price rule.
func (s *Service) SetFloorPrice(ctx context.Context, c contracts.SetFloorPrice) (command.Result[State], error) {
	return s.run(ctx, "policy.set_floor_price", c.RuleID, c.Issuer, c.IdempotencyKey, c)
}

// LiftFloorPrice ends a floor price rule from its effective instant.
func (s *Service) LiftFloorPrice(ctx context.Context, c contracts.LiftFloorPrice) (command.Result[State], error) {
	return s.run(ctx, "policy.lift_floor_price", c.RuleID, c.Issuer, c.IdempotencyKey, c)
}

// run checks the issuer's role, then loads, decides and appends. Policy
// decisions are not fenced: they are what the fence is made of.
func (s *Service) run(ctx context.Context, op, id, issuer, key string, cmd any) (command.Result[State], error) {
	if err := events.ValidateAggregateID(id); err != nil {
		return command.Result[State]{}, &events.Error{Op: op, Kind: events.KindInvalid, Field: "/rule_id",
			Rule: "pattern ^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"}
	}
	if err := s.authorize(ctx, op, issuer); err != nil {
		return command.Result[State]{}, err
	}
	meta := command.Meta{CommandID: events.NewID(), IdempotencyKey: key, Command: cmd}
	return command.Run[State, struct{}](ctx, s.runner, aggregate, id, meta, nil,
		func(st State, _ struct{}, now time.Time) ([]any, error) { return Decide(st, cmd, Inputs{}, now) })
}

func (s *Service) authorize(ctx context.Context, op, issuer string) error {
	roles, err := s.auth.Roles(ctx, issuer)
	if err != nil {
		return &events.Error{Op: op, Kind: events.KindUnavailable, Field: "/issuer", Rule: "roles could not be looked up", Err: err}
	}
	if !slices.Contains(roles, RolePolicyIssuer) {
		return &events.Error{Op: op, Kind: events.KindPermission, Field: "/issuer", Rule: "issuer lacks the " + RolePolicyIssuer + " role"}
	}
	return nil
}

package payment

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/policyview"
	"github.com/marketledger/ledger/runtime/service"
)

// route ties a micro endpoint verb to its contract command name.
type route struct {
	verb string // endpoint name and last subject token: ledger.svc.payment.<verb>
	name string // contracts command name: payment.<verb>
}

// routes are the payment service's commands, in the order they are served.
var routes = []route{
	{"authorize", "payment.authorize"},
	{"capture", "payment.capture"},
	{"void", "payment.void"},
	{"refund", "payment.refund"},
	{"settle", "payment.settle"},
}

// Handle runs one decoded payment command (a contracts command value) and
// returns what it did.
func (s *Service) Handle(ctx context.Context, cmd any) (command.Result[State], error) {
	_, res, err := service.Dispatch(ctx, contracts.ServicePayment, s.run, cmd)
	return res, err
}

// HandleDecoded runs a command contracts.DecodeCommand already decoded and
// validated and returns its reply, as every service's does.
func (s *Service) HandleDecoded(ctx context.Context, cmd any) (Reply, error) {
	id, res, err := service.Dispatch(ctx, contracts.ServicePayment, s.run, cmd)
	if err != nil {
		return Reply{}, err
	}
	return NewReply(id, res), nil
}

// aggregate describes the payment decider to the command runner.
var aggregate = command.Aggregate[State]{Context: contracts.ServicePayment, Initial: Initial, Evolve: Evolve, Clone: Clone}

// Clone returns a deep copy of a payment, so that the command runner can
// keep it between commands.
func Clone(s State) State {
	s.RefundIDs = slices.Clone(s.RefundIDs)
	s.Pending = slices.Clone(s.Pending)
	s.Balances = maps.Clone(s.Balances)
	return s
}

// Authorize reserves the order's total as a pending transfer, fenced by the
// policy timeline: it is refused with KindFrozen while a freeze in its
// scope is in force.
func (s *Service) Authorize(ctx context.Context, c contracts.AuthorizePayment) (command.Result[State], error) {
	return s.Handle(ctx, c)
}

// Capture posts an authorization into escrow, fenced like Authorize.
func (s *Service) Capture(ctx context.Context, c contracts.CapturePayment) (command.Result[State], error) {
	return s.Handle(ctx, c)
}

// Void releases an uncaptured authorization. No policy rule blocks it.
func (s *Service) Void(ctx context.Context, c contracts.VoidPayment) (command.Result[State], error) {
	return s.Handle(ctx, c)
}

// Refund returns captured money to the buyer. No policy rule blocks it.
func (s *Service) Refund(ctx context.Context, c contracts.RefundPayment) (command.Result[State], error) {
	return s.Handle(ctx, c)
}

// Settle pays a captured payment out to the seller less the platform fee.
// No policy rule blocks it.
func (s *Service) Settle(ctx context.Context, c contracts.SettlePayment) (command.Result[State], error) {
	return s.Handle(ctx, c)
}

// run loads, decides and appends one command. Only the operations a rule
// can block (authorize, capture: contracts.CommandSpec.Fenced) are decided
// under a policy snapshot and fenced; the others neither need the policy
// nor should be slowed by it.
func (s *Service) run(ctx context.Context, id, key string, cmd any, fenced bool) (command.Result[State], error) {
	if err := events.ValidateAggregateID(id); err != nil {
		return command.Result[State]{}, &events.Error{Op: "payment", Kind: events.KindInvalid, Field: "/payment_id",
			Rule: "pattern ^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"}
	}
	meta := command.Meta{CommandID: events.NewID(), IdempotencyKey: key, Command: cmd}
	var policy func(context.Context, bool) (command.Policy[policyview.Rules], error)
	if fenced {
		policy = s.policy
	}
	return command.Run(ctx, s.runner, aggregate, id, meta, policy,
		func(st State, rules policyview.Rules, now time.Time) ([]any, error) {
			o, err := s.order(ctx, st, cmd)
			if err != nil {
				return nil, err
			}
			return Decide(st, cmd, Inputs{Order: o, Rules: rules.InForce(now), FeeBasisPoints: s.feeBasisPoints}, now)
		})
}

// order loads the order an authorization or a capture is judged by, from
// the log (the order's own events), at every attempt. The other commands
// need none. An order's scope never changes once placed, so the order
// needs no fence of its own: the policy fence covers the decision.
func (s *Service) order(ctx context.Context, st State, cmd any) (Order, error) {
	var id string
	switch c := cmd.(type) {
	case contracts.AuthorizePayment:
		id = c.OrderID
	case contracts.CapturePayment:
		id = st.OrderID
	}
	if id == "" || events.ValidateAggregateID(id) != nil {
		return Order{ID: id}, nil // the decider refuses it, naming the field
	}
	o, _, err := command.Load(ctx, s.runner, OrderAggregate, id)
	return o, err
}

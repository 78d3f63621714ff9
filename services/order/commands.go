package order

import (
	"context"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/service"
)

// Commands are the names of the commands the order service handles.
var Commands = []string{
	"order.place", "order.confirm", "order.cancel", "order.ship", "order.complete", "order.reject",
}

// Handle routes a command by name: it decodes and validates body against
// the command's contract, decides it and returns the reply. Nothing is
// appended for a body that breaks its contract.
func (s *Service) Handle(ctx context.Context, name string, body []byte) (Reply, error) {
	v, err := contracts.DecodeCommand(name, body)
	if err != nil {
		return Reply{}, err
	}
	return s.HandleDecoded(ctx, v)
}

// HandleDecoded is Handle for a command contracts.DecodeCommand already
// decoded and validated.
func (s *Service) HandleDecoded(ctx context.Context, cmd any) (Reply, error) {
	id, res, err := service.Dispatch(ctx, contracts.ServiceOrder, s.run, cmd)
	if err != nil {
		return Reply{}, err
	}
	return reply(id, res), nil
}

// exec validates a command given as a Go value, as Handle does for JSON.
func (s *Service) exec(ctx context.Context, cmd any) (command.Result[Order], error) {
	return service.Exec(ctx, contracts.ServiceOrder, s.run, cmd)
}

// Place places an order at the listing's current price, under the policy
// (a freeze or a floor price may refuse it).
func (s *Service) Place(ctx context.Context, c contracts.PlaceOrder) (command.Result[Order], error) {
	return s.exec(ctx, c)
}

// Confirm confirms an order whose payment is authorized.
func (s *Service) Confirm(ctx context.Context, c contracts.ConfirmOrder) (command.Result[Order], error) {
	return s.exec(ctx, c)
}

// Cancel cancels an order that has not shipped; no rule ever blocks it.
func (s *Service) Cancel(ctx context.Context, c contracts.CancelOrder) (command.Result[Order], error) {
	return s.exec(ctx, c)
}

// Ship marks a confirmed order shipped.
func (s *Service) Ship(ctx context.Context, c contracts.ShipOrder) (command.Result[Order], error) {
	return s.exec(ctx, c)
}

// Complete marks a shipped order delivered.
func (s *Service) Complete(ctx context.Context, c contracts.CompleteOrder) (command.Result[Order], error) {
	return s.exec(ctx, c)
}

// Reject rejects a placed order whose checkout failed.
func (s *Service) Reject(ctx context.Context, c contracts.RejectOrder) (command.Result[Order], error) {
	return s.exec(ctx, c)
}

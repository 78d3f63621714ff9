package listing

import (
	"context"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/service"
)

// Commands are the names of the commands the listing service handles.
var Commands = []string{
	"listing.create", "listing.change_price", "listing.change_stock", "listing.delist",
	"listing.reserve_stock", "listing.release_stock",
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
	id, res, err := service.Dispatch(ctx, contracts.ServiceListing, s.run, cmd)
	if err != nil {
		return Reply{}, err
	}
	return reply(id, res), nil
}

// exec validates a command given as a Go value, as Handle does for JSON.
func (s *Service) exec(ctx context.Context, cmd any) (command.Result[Listing], error) {
	return service.Exec(ctx, contracts.ServiceListing, s.run, cmd)
}

// Create creates a listing, under the policy (a floor price may refuse it).
func (s *Service) Create(ctx context.Context, c contracts.CreateListing) (command.Result[Listing], error) {
	return s.exec(ctx, c)
}

// ChangePrice sets a new unit price, under the policy.
func (s *Service) ChangePrice(ctx context.Context, c contracts.ChangePrice) (command.Result[Listing], error) {
	return s.exec(ctx, c)
}

// ChangeStock sets the units available.
func (s *Service) ChangeStock(ctx context.Context, c contracts.ChangeStock) (command.Result[Listing], error) {
	return s.exec(ctx, c)
}

// Delist withdraws a listing for good.
func (s *Service) Delist(ctx context.Context, c contracts.Delist) (command.Result[Listing], error) {
	return s.exec(ctx, c)
}

// ReserveStock holds units for an order; the same reservation again is a
// no-op, so the checkout may retry it.
func (s *Service) ReserveStock(ctx context.Context, c contracts.ReserveStock) (command.Result[Listing], error) {
	return s.exec(ctx, c)
}

// ReleaseStock gives back units an order holds.
func (s *Service) ReleaseStock(ctx context.Context, c contracts.ReleaseStock) (command.Result[Listing], error) {
	return s.exec(ctx, c)
}

package main

import (
	"context"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/contracts/policyview"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/events/command"
	"github.com/marketledger/ledger/services/listing"
	"github.com/marketledger/ledger/services/order"
	"github.com/marketledger/ledger/services/payment"
	"github.com/marketledger/ledger/services/policy"
)

// contractsCodec adapts the contracts package to command.Codec.
type contractsCodec struct{}

func (contractsCodec) Encode(v any) (string, int, []byte, error) { return contracts.Encode(v) }
func (contractsCodec) Decode(typ string, version int, data []byte) (any, error) {
	return contracts.Decode(typ, version, data)
}

// stack is the four services in one process, on one store and one policy
// view, deciding on one clock.
type stack struct {
	view    *policyview.View
	listing *listing.Service
	order   *order.Service
	payment *payment.Service
	policy  *policy.Service
}

// Close stops the followers the services started.
func (s *stack) Close() {
	if s.payment != nil {
		s.payment.Close()
	}
	if s.view != nil {
		s.view.Close()
	}
}

// policyIssuers are the issuers allowed to append policy events, with their
// roles. The demo's issuer is the Ministry of Trade.
var policyIssuers = policy.StaticRoles{"kemendag": {"policy_issuer"}}

// feeBasisPoints is the platform fee at settlement: 5 percent.
const feeBasisPoints = 500

func newStack(ctx context.Context, st *events.JetStreamStore, clock func() time.Time) (*stack, error) {
	view, err := policyview.Start(ctx, st)
	if err != nil {
		return nil, err
	}
	s := &stack{view: view}
	runner := func(service string) *command.Runner {
		return &command.Runner{Store: st, Codec: contractsCodec{}, Source: contracts.Source(service), Clock: clock}
	}
	s.listing = listing.New(runner(contracts.ServiceListing), view.Snapshot)
	s.order = order.New(runner(contracts.ServiceOrder), view.Snapshot)
	if s.payment, err = payment.New(ctx, payment.Config{Store: st, Clock: clock, FeeBasisPoints: feeBasisPoints, Policy: view.Snapshot}); err != nil {
		s.Close()
		return nil, err
	}
	if s.policy, err = policy.New(policy.Config{Store: st, Clock: clock, Authorizer: policyIssuers}); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

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

// allServices are the services a ledger process can run, in start order.
var allServices = []string{contracts.ServiceListing, contracts.ServiceOrder, contracts.ServicePayment, contracts.ServicePolicy}

// newStack starts the services named in enabled (all four when nil) on one
// store; those that honour policy share one policy view, with its guard
// before effective instants on (the real clock; see policyview.DefaultGuard).
func newStack(ctx context.Context, st *events.JetStreamStore, clock func() time.Time, enabled map[string]bool) (*stack, error) {
	on := func(name string) bool { return enabled == nil || enabled[name] }
	s := &stack{}
	if on(contracts.ServiceListing) || on(contracts.ServiceOrder) || on(contracts.ServicePayment) {
		view, err := policyview.Start(ctx, st)
		if err != nil {
			return nil, err
		}
		s.view = view
	}
	runner := func(service string) *command.Runner {
		return &command.Runner{Store: st, Codec: contractsCodec{}, Source: contracts.Source(service), Clock: clock}
	}
	if on(contracts.ServiceListing) {
		s.listing = listing.New(runner(contracts.ServiceListing), s.view.Snapshot)
	}
	if on(contracts.ServiceOrder) {
		s.order = order.New(runner(contracts.ServiceOrder), s.view.Snapshot)
	}
	var err error
	if on(contracts.ServicePayment) {
		if s.payment, err = payment.New(ctx, payment.Config{Store: st, Clock: clock, FeeBasisPoints: feeBasisPoints, Policy: s.view.Snapshot}); err != nil {
			s.Close()
			return nil, err
		}
	}
	if on(contracts.ServicePolicy) {
		if s.policy, err = policy.New(policy.Config{Store: st, Clock: clock, Authorizer: policyIssuers}); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

package main

import (
	"context"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/enforcement"
	"github.com/marketledger/ledger/runtime/policyview"
	"github.com/marketledger/ledger/services/listing"
	"github.com/marketledger/ledger/services/order"
	"github.com/marketledger/ledger/services/payment"
	"github.com/marketledger/ledger/services/policy"
)

// stack is the four services in one process, sharing one policy view and
// deciding on one clock.
type stack struct {
	view    *policyview.View
	listing *listing.Service
	order   *order.Service
	payment *payment.Service
	policy  *policy.Service
	// refusals record the commands a policy rule refused, one recorder
	// per service that refuses, appending as that service (ADR 0020).
	refusals map[string]*enforcement.Recorder
}

// waitRefusals waits (bounded by ctx) until the refusals of the commands
// answered so far are on record or given up.
func (s *stack) waitRefusals(ctx context.Context) error {
	for _, r := range s.refusals {
		if err := r.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// refusalStats sums the counters of the stack's refusal recorders.
func (s *stack) refusalStats() enforcement.Stats {
	var sum enforcement.Stats
	for _, r := range s.refusals {
		st := r.Stats()
		sum.Recorded += st.Recorded
		sum.Repeated += st.Repeated
		sum.Limited += st.Limited
		sum.Dropped += st.Dropped
		sum.Failed += st.Failed
	}
	return sum
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

// stackOption changes how newStack builds the services.
type stackOption func(*stackConfig)

type stackConfig struct {
	// issuers tells who may append policy events (default: the data
	// directory's issuers file, or defaultIssuers).
	issuers policy.Authorizer
}

// withIssuers makes a the policy service's authorizer.
func withIssuers(a policy.Authorizer) stackOption { return func(c *stackConfig) { c.issuers = a } }

// feeBasisPoints is the platform fee at settlement: 5 percent.
const feeBasisPoints = 500

// allServices are the services a ledger process can run, in start order.
var allServices = []string{contracts.ServiceListing, contracts.ServiceOrder, contracts.ServicePayment, contracts.ServicePolicy}

// newStack starts the services named in enabled (all four when nil), each
// on the store storeOf gives for its name (its own NATS user in `ledger
// serve`); those that honour policy share one policy view. skew, when not
// nil, measures the clock against the log server's from every service's
// appends and refuses fenced commands beyond its bound: nil for a simulated
// clock, whose instants are decades from the server's on purpose.
func newStack(ctx context.Context, storeOf func(service string) (*events.JetStreamStore, error), clock func() time.Time,
	enabled map[string]bool, skew *command.Skew, opts ...stackOption) (*stack, error) {
	cfg := stackConfig{issuers: staticIssuers(defaultIssuers)}
	for _, o := range opts {
		o(&cfg)
	}
	on := func(name string) bool { return enabled == nil || enabled[name] }
	s := &stack{}
	stores := map[string]*events.JetStreamStore{}
	for _, name := range allServices {
		if !on(name) {
			continue
		}
		st, err := storeOf(name)
		if err != nil {
			return nil, err
		}
		stores[name] = st
	}
	for _, name := range []string{contracts.ServiceListing, contracts.ServiceOrder, contracts.ServicePayment} {
		if st := stores[name]; st != nil {
			view, err := policyview.Start(ctx, st)
			if err != nil {
				return nil, err
			}
			s.view = view
			break
		}
	}
	s.refusals = map[string]*enforcement.Recorder{}
	for _, name := range []string{contracts.ServiceListing, contracts.ServiceOrder, contracts.ServicePayment} {
		if st := stores[name]; st != nil {
			rec, err := enforcement.New(enforcement.Config{Store: st})
			if err != nil {
				return nil, err
			}
			s.refusals[name] = rec
		}
	}
	runner := func(service string) *command.Runner {
		return &command.Runner{Store: stores[service], Codec: contracts.Codec{}, Source: contracts.Source(service), Clock: clock, Skew: skew,
			Refusals: s.refusals[service]}
	}
	if on(contracts.ServiceListing) {
		s.listing = listing.New(runner(contracts.ServiceListing), s.view.Snapshot)
	}
	if on(contracts.ServiceOrder) {
		s.order = order.New(runner(contracts.ServiceOrder), s.view.Snapshot)
	}
	var err error
	if on(contracts.ServicePayment) {
		if s.payment, err = payment.New(ctx, payment.Config{Store: stores[contracts.ServicePayment], Clock: clock, Skew: skew, FeeBasisPoints: feeBasisPoints, Policy: s.view.Snapshot,
			Refusals: s.refusals[contracts.ServicePayment]}); err != nil {
			s.Close()
			return nil, err
		}
	}
	if on(contracts.ServicePolicy) {
		if s.policy, err = policy.New(policy.Config{Store: stores[contracts.ServicePolicy], Clock: clock, Skew: skew, Authorizer: cfg.issuers}); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// sameStore gives every service one store: for read-only uses of a service
// (the policy list) on the caller's own connection.
func sameStore(st *events.JetStreamStore) func(string) (*events.JetStreamStore, error) {
	return func(string) (*events.JetStreamStore, error) { return st, nil }
}

// handler returns how the stack runs a decoded command of service, nil when
// this process does not run it.
func (s *stack) handler(service string) func(context.Context, any) (any, error) {
	switch {
	case service == contracts.ServiceListing && s.listing != nil:
		return func(ctx context.Context, cmd any) (any, error) { return s.listing.HandleDecoded(ctx, cmd) }
	case service == contracts.ServiceOrder && s.order != nil:
		return func(ctx context.Context, cmd any) (any, error) { return s.order.HandleDecoded(ctx, cmd) }
	case service == contracts.ServicePayment && s.payment != nil:
		return func(ctx context.Context, cmd any) (any, error) { return s.payment.HandleDecoded(ctx, cmd) }
	case service == contracts.ServicePolicy && s.policy != nil:
		return func(ctx context.Context, cmd any) (any, error) { return s.policy.HandleDecoded(ctx, cmd) }
	}
	return nil
}

// Package scenario drives the ledger's four services the way a marketplace
// does (checkouts, refunds, settlements, policy changes) against real
// JetStream nodes and clusters, and checks what they wrote from the log
// alone. Its tests are the adversarial proofs of the freeze guarantee
// (DESIGN section 5, ADR 0004) and of the stock race.
package scenario

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/enforcement"
	"github.com/marketledger/ledger/runtime/policyview"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/services/listing"
	"github.com/marketledger/ledger/services/order"
	"github.com/marketledger/ledger/services/payment"
	"github.com/marketledger/ledger/services/policy"
	"github.com/marketledger/ledger/testkit/checkoutrun"
	"github.com/nats-io/nats.go/micro"
)

// Issuer is the policy issuer every Instance authorizes.
const Issuer = "kemendag"

// LegalBasis is the legal basis the scenarios' rules cite.
const LegalBasis = "Permendag 31/2023"

// FeeBasisPoints is the platform fee at settlement (5 percent).
const FeeBasisPoints = 500

// Instance is one deployment of the four services on one store, deciding on
// the real clock: its own connection, its own policy view and its own
// command runners with their caches. Several instances on one log are
// several processes of the same services, each deciding on what it alone
// has seen.
type Instance struct {
	Name    string
	Store   *events.JetStreamStore
	View    *policyview.View
	Listing *listing.Service
	Order   *order.Service
	Payment *payment.Service
	Policy  *policy.Service
	// Refusals records the commands a policy rule refused, as `ledger
	// serve` does (runtime/enforcement).
	Refusals *enforcement.Recorder
	// Checkouts is the product's checkout on the instance's log, once
	// NewCheckout started it.
	Checkouts *Checkouts

	mu     sync.Mutex
	served map[string]micro.Service // by context
}

// NewInstance starts the services on st. The store must check event types
// against the contracts (events.WithTypeChecker(contracts.Checker{})), as
// `ledger serve` opens it. Everything stops with t's cleanup.
func NewInstance(t testing.TB, name string, st *events.JetStreamStore) *Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	view, err := policyview.Start(ctx, st)
	if err != nil {
		t.Fatalf("scenario: %s: policy view: %v", name, err)
	}
	t.Cleanup(view.Close)
	rec, err := enforcement.New(enforcement.Config{Store: st})
	if err != nil {
		t.Fatalf("scenario: %s: refusals: %v", name, err)
	}
	runner := func(service string) *command.Runner {
		return &command.Runner{Store: st, Codec: contracts.Codec{}, Source: contracts.Source(service), Clock: time.Now, Refusals: rec}
	}
	pay, err := payment.New(ctx, payment.Config{Store: st, Clock: time.Now, FeeBasisPoints: FeeBasisPoints, Policy: view.Snapshot, Refusals: rec})
	if err != nil {
		t.Fatalf("scenario: %s: payment: %v", name, err)
	}
	t.Cleanup(pay.Close)
	pol, err := policy.New(policy.Config{Store: st, Clock: time.Now,
		Authorizer: policy.StaticRoles{Issuer: {policy.RolePolicyIssuer}}})
	if err != nil {
		t.Fatalf("scenario: %s: policy: %v", name, err)
	}
	// Every instance runs the policy activator, as every `ledger serve`
	// with the policy service does: the activations of scheduled changes
	// are stored once between them.
	actx, stopActivator := context.WithCancel(context.Background())
	activatorDone := make(chan struct{})
	go func() { defer close(activatorDone); pol.RunActivator(actx, policy.ActivatorTick, nil) }()
	t.Cleanup(func() { stopActivator(); <-activatorDone })
	in := &Instance{
		Name:     name,
		Store:    st,
		View:     view,
		Listing:  listing.New(runner(contracts.ServiceListing), view.Snapshot),
		Order:    order.New(runner(contracts.ServiceOrder), view.Snapshot),
		Payment:  pay,
		Policy:   pol,
		Refusals: rec,
		served:   map[string]micro.Service{},
	}
	// The checkout sends its steps over the services' NATS subjects, as it
	// does to `ledger serve`; several instances answer them as a queue
	// group, as several processes would.
	for _, c := range []string{contracts.ServiceListing, contracts.ServiceOrder, contracts.ServicePayment} {
		if err := in.serve(c); err != nil {
			t.Fatalf("scenario: %s: serve %s: %v", name, c, err)
		}
	}
	t.Cleanup(func() {
		in.mu.Lock()
		defer in.mu.Unlock()
		for _, svc := range in.served {
			_ = svc.Stop()
		}
	})
	return in
}

// serve starts the NATS micro service of one context on the instance's
// connection.
func (in *Instance) serve(context string) error {
	nc := in.Store.JetStream().Conn()
	var svc micro.Service
	var err error
	switch context {
	case contracts.ServiceListing:
		svc, err = in.Listing.Serve(nc)
	case contracts.ServiceOrder:
		svc, err = in.Order.Serve(nc)
	case contracts.ServicePayment:
		svc, err = in.Payment.Serve(nc)
	default:
		return fmt.Errorf("no service %q", context)
	}
	if err != nil {
		return err
	}
	in.mu.Lock()
	in.served[context] = svc
	in.mu.Unlock()
	return nil
}

// Pause stops answering the NATS requests of one service context, as a
// process of that service down would: the checkout's steps to it wait.
// resume answers them again. The instance's Go services stay open to its
// own callers.
func (in *Instance) Pause(t testing.TB, context string) (resume func()) {
	t.Helper()
	in.mu.Lock()
	svc := in.served[context]
	delete(in.served, context)
	in.mu.Unlock()
	if svc != nil {
		if err := svc.Stop(); err != nil {
			t.Fatalf("scenario: %s: pause %s: %v", in.Name, context, err)
		}
	}
	return func() {
		t.Helper()
		if err := in.serve(context); err != nil {
			t.Fatalf("scenario: %s: resume %s: %v", in.Name, context, err)
		}
	}
}

// checkoutDeadline is the scenarios' checkout deadline after placement, in
// place of the product's 30 s. The scenarios judge what freezes, stock and
// contention make of orders; a deadline's own outcome is tested in
// services/checkout (the decider) and testkit/checkoutrun
// (TestCheckoutTimeout, TestResumedAfterDeadlineVoidsWhatWasAuthorized).
// Hundreds of orders under the race detector on a CI
// machine of two busy cores can take longer than 30 s from placement to
// reservation without any of those causes, and must not end rejected for
// it.
const checkoutDeadline = 3 * time.Minute

// NewCheckout runs the product's checkout (services/checkout, started by
// checkoutrun.Start as `ledger serve` runs it) on the log of ins, which
// must all share one log, and follows the log for the checkouts' ends.
// Everything stops with t's cleanup.
func NewCheckout(t testing.TB, ins []*Instance) *Checkouts {
	t.Helper()
	st := ins[0].Store
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	head, err := st.LastPosition(ctx)
	if err != nil {
		t.Fatalf("scenario: checkout: %v", err)
	}
	runner, _ := checkoutrun.Start(t, checkout.Config{Store: st, Conn: st.JetStream().Conn(), Clock: time.Now,
		Timeout: checkoutDeadline, OnError: func(err error) { t.Logf("checkout: %v", err) }})
	w := &Checkouts{Runner: runner, store: st, ends: map[string]End{}, changed: make(chan struct{})}
	fctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.follow(fctx, head+1) }()
	t.Cleanup(func() { stop(); <-done })
	for _, in := range ins {
		in.Checkouts = w
	}
	return w
}

// IDR returns an amount of rupiah in minor units.
func IDR(minor int64) contracts.Money { return contracts.Money{AmountMinor: minor, Currency: "IDR"} }

// ListingSpec is a listing a scenario creates.
type ListingSpec struct {
	ID       string
	Seller   string
	Category string
	Channel  contracts.Channel
	Price    int64 // rupiah minor units
	Stock    int64
}

// CreateListings creates every listing in Indonesia, domestic, through in.
func CreateListings(ctx context.Context, in *Instance, specs ...ListingSpec) error {
	for _, s := range specs {
		_, err := retry(ctx, func() error {
			_, err := in.Listing.Create(ctx, contracts.CreateListing{ListingID: s.ID, SellerID: s.Seller,
				Title: "item " + s.ID, Category: s.Category, Channel: s.Channel, Jurisdiction: "ID",
				Origin: contracts.OriginDomestic, Price: IDR(s.Price), Stock: s.Stock, IdempotencyKey: "create:" + s.ID})
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Freeze is the freeze the scenarios impose: Indonesian social commerce,
// narrowed to one category so that scenarios sharing a log do not freeze
// each other's trade.
func Freeze(ruleID, category string, effective time.Time) contracts.ImposeFreeze {
	return contracts.ImposeFreeze{
		RuleID: ruleID,
		Scope: contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{contracts.ChannelSocialCommerce},
			Categories: []string{category}},
		EffectiveAt:    effective,
		LegalBasis:     LegalBasis,
		Issuer:         Issuer,
		Description:    "social commerce may promote goods but not take orders or payments",
		IdempotencyKey: "impose:" + ruleID,
	}
}

// ImposeFreeze appends f, retrying with the same idempotency key while the
// log is unavailable (a leader election), and returns the appended
// position and the instant the caller got the acknowledgement.
func ImposeFreeze(ctx context.Context, in *Instance, f contracts.ImposeFreeze) (pos uint64, acked time.Time, err error) {
	_, err = retry(ctx, func() error {
		res, err := in.Policy.ImposeFreeze(ctx, f)
		if err == nil {
			pos = res.Appended.LastPosition
			if pos == 0 && len(res.Events) > 0 {
				pos = res.Events[len(res.Events)-1].Position
			}
		}
		return err
	})
	return pos, time.Now(), err
}

// LiftFreeze lifts rule ruleID from effective (zero: now), retrying like
// ImposeFreeze.
func LiftFreeze(ctx context.Context, in *Instance, ruleID string, effective time.Time) (pos uint64, acked time.Time, err error) {
	_, err = retry(ctx, func() error {
		res, err := in.Policy.LiftFreeze(ctx, contracts.LiftFreeze{RuleID: ruleID, EffectiveAt: effective,
			LegalBasis: LegalBasis + " (revoked)", Issuer: Issuer, IdempotencyKey: "lift:" + ruleID})
		if err == nil {
			pos = res.Appended.LastPosition
		}
		return err
	})
	return pos, time.Now(), err
}

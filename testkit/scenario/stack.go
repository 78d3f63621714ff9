// Package scenario drives the ledger's four services the way a marketplace
// does (checkouts, refunds, settlements, policy changes) against real
// JetStream nodes and clusters, and checks what they wrote from the log
// alone. Its tests are the adversarial proofs of the freeze guarantee
// (DESIGN section 5, ADR 0004) and of the stock race.
package scenario

import (
	"context"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/policyview"
	"github.com/marketledger/ledger/services/listing"
	"github.com/marketledger/ledger/services/order"
	"github.com/marketledger/ledger/services/payment"
	"github.com/marketledger/ledger/services/policy"
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
}

// codec adapts the contracts package to command.Codec.
type codec struct{}

func (codec) Encode(v any) (string, int, []byte, error)     { return contracts.Encode(v) }
func (codec) Decode(t string, v int, d []byte) (any, error) { return contracts.Decode(t, v, d) }

// NewInstance starts the services on st. The store must check event types
// against the contracts (events.WithTypeChecker(contracts.Checker{}), contracts.Fence()), as
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
	runner := func(service string) *command.Runner {
		return &command.Runner{Store: st, Codec: codec{}, Source: contracts.Source(service), Clock: time.Now}
	}
	pay, err := payment.New(ctx, payment.Config{Store: st, Clock: time.Now, FeeBasisPoints: FeeBasisPoints, Policy: view.Snapshot})
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
	return &Instance{
		Name:    name,
		Store:   st,
		View:    view,
		Listing: listing.New(runner(contracts.ServiceListing), view.Snapshot),
		Order:   order.New(runner(contracts.ServiceOrder), view.Snapshot),
		Payment: pay,
		Policy:  pol,
	}
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

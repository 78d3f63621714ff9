// Package market plays a seeded marketplace through the ledger's services on
// a simulated business clock: sellers list goods in both channels, buyers
// place orders, some cancel them, some are refunded, sellers cut prices
// before the closure, payments are settled, and the regulator's freeze is
// appended ahead of its effective instant. Every order is checked out by
// the product's one checkout (services/checkout), which the market waits
// for at the end of each simulated step; the market itself never drives a
// step of a checkout.
//
// The same seed gives the same business outcome: operations of one
// simulated step never touch the same listing or payment, so their
// interleaving cannot change any result, and the clock moves only once the
// checkout has finished the step's orders.
package market

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/services/listing"
	"github.com/marketledger/ledger/services/order"
	"github.com/marketledger/ledger/services/payment"
	"github.com/marketledger/ledger/services/policy"
)

// WIB is Western Indonesia Time, UTC+7, the zone of the day played.
var WIB = time.FixedZone("WIB", 7*3600)

// The day and its instants.
var (
	DayStart     = time.Date(2023, 10, 4, 7, 0, 0, 0, WIB)
	FreezeAt     = time.Date(2023, 10, 4, 9, 0, 0, 0, WIB) // announced
	FreezeStarts = time.Date(2023, 10, 4, 17, 0, 0, 0, WIB)
	TradingFrom  = time.Date(2023, 10, 4, 8, 0, 0, 0, WIB)
	TradingUntil = time.Date(2023, 10, 4, 22, 0, 0, 0, WIB)
)

// The freeze of Permendag 31/2023 as the ledger records it.
const (
	FreezeRuleID = "permendag-31-2023-social-commerce"
	LegalBasis   = "Permendag 31/2023"
	Issuer       = "kemendag"
)

// Clock is the simulated business clock every service decides on.
type Clock struct{ ns atomic.Int64 }

// Now returns the simulated instant, in WIB.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()).In(WIB) }

// Set moves the clock.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// Scale sizes the simulated marketplace.
type Scale struct {
	Name              string
	Sellers, Listings int
	Buyers            int
	// Step is the simulated time one round of concurrent operations covers.
	Step time.Duration
	// CheckoutsPerStep is the mean number of checkouts a step.
	CheckoutsPerStep int
	// Concurrency bounds the operations in flight within one minute.
	Concurrency int
}

// Scales are the sizes `ledger demo --scale` accepts.
var Scales = map[string]Scale{
	"small": {Name: "small", Sellers: 30, Listings: 240, Buyers: 2000, Step: 5 * time.Minute, CheckoutsPerStep: 20, Concurrency: 32},
	"day":   {Name: "day", Sellers: 400, Listings: 20000, Buyers: 200000, Step: time.Minute, CheckoutsPerStep: 240, Concurrency: 64},
}

// Services are the four services the market's people talk to, and the
// checkout that takes every order placed from placement to payment.
type Services struct {
	Listing *listing.Service
	Order   *order.Service
	Payment *payment.Service
	Policy  *policy.Service
	// Checkout is the one checkout (services/checkout's Runner, as `ledger
	// serve` runs it), deciding on the market's clock. The market never
	// reserves, authorizes, confirms, captures or compensates itself: it
	// places orders and waits for the checkout to finish them.
	Checkout Drainer
}

// Drainer is a checkout that can be waited for: Drain returns once every
// event in the log, and every event its steps appended, is handled; Steps
// counts the steps it has sent, to tell a slow checkout from a stopped one.
type Drainer interface {
	Drain(ctx context.Context) error
	Steps() int64
}

// Counts are the checkouts of one channel, before and from the freeze's
// effective instant.
type Counts struct {
	AcceptedBefore int `json:"accepted_before"`
	AcceptedAfter  int `json:"accepted_after"`
	RefusedBefore  int `json:"refused_before"`
	RefusedAfter   int `json:"refused_after"`
	OutOfStock     int `json:"out_of_stock"`
	Cancelled      int `json:"cancelled"`
}

// Outcome is what the day did. The checkouts are counted from how each
// order ended in the log (a placement refused outright, which leaves
// nothing in the log, from the buyer's answer); refunds and settlements
// from the services' answers. The read models and the audit see the day
// from the log alone.
type Outcome struct {
	Seed                uint64                        `json:"seed"`
	Scale               string                        `json:"scale"`
	Listings            int                           `json:"listings"`
	Checkouts           map[contracts.Channel]*Counts `json:"checkouts"`
	PriceCuts           int                           `json:"price_cuts"`
	RefundsBeforeFreeze int                           `json:"refunds_before_freeze"`
	RefundsDuringFreeze int                           `json:"refunds_during_freeze"`
	Settlements         int                           `json:"settlements"`
	SettlementsDuring   int                           `json:"settlements_during_freeze"`
	FreezePosition      uint64                        `json:"freeze_position"`
	// FreezeActivationPosition is where the freeze took effect: its
	// policy.rule_activated, appended at FreezeActivatedAt (simulated).
	FreezeActivationPosition uint64    `json:"freeze_activation_position"`
	FreezeActivatedAt        time.Time `json:"freeze_activated_at"`
}

// Progress is told how many steps of the day are done.
type Progress func(done, total int)

// Play runs the whole day. It returns the first error a service gave that
// the market did not expect (a refusal by the freeze, an empty stock or a
// conflict it can retry are expected).
func Play(ctx context.Context, svc Services, clock *Clock, seed uint64, sc Scale, progress Progress) (*Outcome, error) {
	m := newMarket(svc, clock, seed, sc)
	clock.Set(DayStart)
	if err := m.openShops(ctx); err != nil {
		return nil, fmt.Errorf("opening shops: %w", err)
	}
	total := int(TradingUntil.Sub(TradingFrom) / sc.Step)
	for i := 0; i < total; i++ {
		now := TradingFrom.Add(time.Duration(i) * sc.Step)
		if !now.Before(FreezeAt) && m.out.FreezePosition == 0 {
			clock.Set(FreezeAt)
			if err := m.announceFreeze(ctx); err != nil {
				return nil, fmt.Errorf("appending the freeze: %w", err)
			}
		}
		clock.Set(now)
		// The policy service's activator runs on the simulated clock: at
		// every step it appends the activation of whatever is due, so the
		// 17:00 freeze takes effect at 17:00 simulated, positionally,
		// before the first decision of that minute.
		acts, err := svc.Policy.ActivateDue(ctx)
		if err != nil {
			return nil, fmt.Errorf("activating policy at %s: %w", now.Format("15:04"), err)
		}
		for _, a := range acts {
			if a.State.ID == FreezeRuleID && m.out.FreezeActivationPosition == 0 {
				m.out.FreezeActivationPosition, m.out.FreezeActivatedAt = a.Appended.FirstPosition, now
			}
		}
		if err := m.minute(ctx, now); err != nil {
			return nil, fmt.Errorf("at %s: %w", now.Format("15:04"), err)
		}
		if progress != nil {
			progress(i+1, total)
		}
	}
	return m.out, nil
}

// market is the simulation's state between minutes. Only Play's goroutine
// touches it; the work of one minute runs concurrently but reports back
// through per-operation results merged in a fixed order.
type market struct {
	svc      Services
	clock    *Clock
	rng      *rand.Rand
	sc       Scale
	listings []shopItem
	captured []paid // captured, not fully refunded, in capture order
	orders   int
	out      *Outcome
}

type shopItem struct {
	id       string
	seller   string
	channel  contracts.Channel
	category string
	origin   contracts.Origin
	price    int64 // IDR minor units
}

type paid struct {
	orderID, paymentID string
	amount, refunded   int64
	channel            contracts.Channel
	settled            bool
	at                 time.Time
}

func newMarket(svc Services, clock *Clock, seed uint64, sc Scale) *market {
	return &market{svc: svc, clock: clock, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), sc: sc,
		out: &Outcome{Seed: seed, Scale: sc.Name, Checkouts: map[contracts.Channel]*Counts{
			contracts.ChannelMarketplace: {}, contracts.ChannelSocialCommerce: {}}}}
}

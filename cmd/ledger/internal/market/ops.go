package market

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/runtime/command"
)

var categories = []string{"fashion", "beauty", "electronics", "home", "food", "toys"}

// openShops creates every listing: half on social commerce, a fifth of
// them cross-border, all in Indonesia, priced in rupiah.
func (m *market) openShops(ctx context.Context) error {
	for i := 0; i < m.sc.Listings; i++ {
		it := shopItem{
			id:       fmt.Sprintf("lst-%05d", i+1),
			seller:   fmt.Sprintf("seller-%04d", m.rng.IntN(m.sc.Sellers)+1),
			channel:  contracts.ChannelMarketplace,
			category: categories[m.rng.IntN(len(categories))],
			origin:   contracts.OriginDomestic,
			price:    (25_000 + int64(m.rng.IntN(100))*25_000) * 100,
		}
		if m.rng.IntN(2) == 0 {
			it.channel = contracts.ChannelSocialCommerce
		}
		if m.rng.IntN(5) == 0 {
			it.origin = contracts.OriginCrossBorder
		}
		m.listings = append(m.listings, it)
	}
	stocks := make([]int64, len(m.listings))
	for i := range stocks {
		stocks[i] = int64(5 + m.rng.IntN(40))
	}
	return m.parallel(len(m.listings), func(i int) error {
		it := m.listings[i]
		_, err := m.svc.Listing.Create(ctx, contracts.CreateListing{ListingID: it.id, SellerID: it.seller,
			Title: fmt.Sprintf("%s item %d", it.category, i+1), Category: it.category, Channel: it.channel,
			Jurisdiction: "ID", Origin: it.origin, Price: idr(it.price), Stock: stocks[i]})
		return err
	})
}

func idr(minor int64) contracts.Money { return contracts.Money{AmountMinor: minor, Currency: "IDR"} }

// announceFreeze appends the freeze at 09:00 WIB, effective 17:00 WIB.
func (m *market) announceFreeze(ctx context.Context) error {
	res, err := m.svc.Policy.ImposeFreeze(ctx, contracts.ImposeFreeze{
		RuleID:      FreezeRuleID,
		Scope:       contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{contracts.ChannelSocialCommerce}},
		EffectiveAt: FreezeStarts, LegalBasis: LegalBasis, Issuer: Issuer,
		Description: "social commerce may promote goods but not take orders or payments",
	})
	if err != nil {
		return err
	}
	m.out.FreezePosition = res.Appended.LastPosition
	return nil
}

// minute plays one simulated minute: price cuts before the closure,
// checkouts, refunds and settlements, on disjoint listings and payments.
func (m *market) minute(ctx context.Context, now time.Time) error {
	used := map[int]bool{}
	var cuts []int
	if now.Hour() >= 12 && now.Before(FreezeStarts) && m.rng.IntN(3) < int(m.sc.Step/time.Minute) {
		i := m.pickListing(used, contracts.ChannelSocialCommerce)
		if i >= 0 {
			cuts = append(cuts, i)
		}
	}
	var buys []buy
	for n := m.checkoutsThisMinute(); n > 0; n-- {
		i := m.pickListing(used, "")
		if i < 0 {
			break
		}
		m.orders++
		buys = append(buys, buy{item: i, orderID: fmt.Sprintf("ord-%07d", m.orders),
			buyer: fmt.Sprintf("buyer-%06d", m.rng.IntN(m.sc.Buyers)+1), qty: int64(1 + m.rng.IntN(3)),
			cancel: m.rng.IntN(20) == 0})
	}
	refunds, settles := m.pickAfterSales(now)
	if err := m.run(ctx, now, cuts, buys, refunds, settles); err != nil {
		return err
	}
	return nil
}

// settle pays an accepted order's seller out of escrow.
func (m *market) settle(ctx context.Context, i int) (bool, error) {
	p := m.captured[i]
	pctx := command.WithCorrelationID(ctx, p.orderID)
	if _, err := m.svc.Payment.Settle(pctx, contracts.SettlePayment{PaymentID: p.paymentID, IdempotencyKey: "settle:" + p.paymentID}); err != nil {
		return false, fmt.Errorf("payment %s: settle: %w", p.paymentID, err)
	}
	return true, nil
}

// cutPrice lowers a social-commerce listing's price by 10 to 30 percent, as
// sellers did in the hours before the closure.
func (m *market) cutPrice(ctx context.Context, i int) error {
	it := &m.listings[i]
	cut := 10 + int64(i%3)*10
	price := it.price * (100 - cut) / 100 / 100 * 100
	if price <= 0 {
		return nil
	}
	if _, err := m.svc.Listing.ChangePrice(ctx, contracts.ChangePrice{ListingID: it.id, Price: idr(price)}); err != nil {
		return fmt.Errorf("listing %s: change price: %w", it.id, err)
	}
	it.price = price
	return nil
}

// checkoutsThisMinute varies around the scale's mean, busier in the
// evening as on a real shopping day.
func (m *market) checkoutsThisMinute() int {
	mean := m.sc.CheckoutsPerStep
	return mean/2 + m.rng.IntN(mean+1)
}

func (m *market) pickListing(used map[int]bool, ch contracts.Channel) int {
	for try := 0; try < 8; try++ {
		i := m.rng.IntN(len(m.listings))
		if !used[i] && (ch == "" || m.listings[i].channel == ch) {
			used[i] = true
			return i
		}
	}
	return -1
}

// pickAfterSales chooses refunds (about one in forty captured orders, in
// full or in part) and, on the hour, settles orders captured two hours ago.
func (m *market) pickAfterSales(now time.Time) (refunds []refund, settles []int) {
	picked := map[int]bool{}
	for n := len(m.captured) / 40; n > 0 && m.rng.IntN(8) < int(m.sc.Step/time.Minute); n-- {
		i := m.rng.IntN(len(m.captured))
		p := &m.captured[i]
		if picked[i] || p.refunded >= p.amount {
			continue
		}
		picked[i] = true
		amt := p.amount - p.refunded
		if m.rng.IntN(2) == 0 && amt >= 200 {
			amt /= 2
		}
		refunds = append(refunds, refund{idx: i, amount: amt})
	}
	if now.Minute() == 0 {
		for i := range m.captured {
			p := &m.captured[i]
			if !picked[i] && !p.settled && p.refunded < p.amount && now.Sub(p.at) >= 2*time.Hour {
				settles = append(settles, i)
			}
		}
	}
	return refunds, settles
}

// buy is one buyer's order in a step.
type buy struct {
	item           int
	orderID, buyer string
	qty            int64
	// cancel is a buyer who will change their mind once the order is
	// confirmed.
	cancel bool
	// placed is set once the order is in the log; cancelled once its buyer
	// cancelled it.
	placed, cancelled bool
	// How the order ended, read from the log once the checkout finished.
	result    checkoutResult
	paymentID string
	amount    int64
}

type refund struct {
	idx    int
	amount int64
	ok     bool
}

// run performs the minute's operations concurrently, waits for the
// checkout to finish the orders placed (see finish), and merges their
// results in a fixed order.
func (m *market) run(ctx context.Context, now time.Time, cuts []int, buys []buy, refunds []refund, settles []int) error {
	after := !now.Before(FreezeStarts)
	settled := make([]bool, len(settles))
	total := len(cuts) + len(buys) + len(refunds) + len(settles)
	err := m.parallel(total, func(k int) error {
		switch {
		case k < len(cuts):
			return m.cutPrice(ctx, cuts[k])
		case k < len(cuts)+len(buys):
			return m.place(ctx, &buys[k-len(cuts)])
		case k < len(cuts)+len(buys)+len(refunds):
			r := &refunds[k-len(cuts)-len(buys)]
			var err error
			r.ok, err = m.refund(ctx, r)
			return err
		default:
			i := k - len(cuts) - len(buys) - len(refunds)
			var err error
			settled[i], err = m.settle(ctx, settles[i])
			return err
		}
	})
	if err != nil {
		return err
	}
	if err := m.finish(ctx, buys); err != nil {
		return err
	}
	m.out.PriceCuts += len(cuts)
	for i := range buys {
		m.tally(&buys[i], after, now)
	}
	for _, r := range refunds {
		if r.ok {
			m.captured[r.idx].refunded += r.amount
			if after {
				m.out.RefundsDuringFreeze++
			} else {
				m.out.RefundsBeforeFreeze++
			}
		}
	}
	for i, ok := range settled {
		if ok {
			m.captured[settles[i]].settled = true
			m.out.Settlements++
			if after {
				m.out.SettlementsDuring++
			}
		}
	}
	return nil
}

func (m *market) tally(b *buy, after bool, now time.Time) {
	it := m.listings[b.item]
	c := m.out.Checkouts[it.channel]
	switch b.result {
	case accepted:
		if after {
			c.AcceptedAfter++
		} else {
			c.AcceptedBefore++
		}
		m.captured = append(m.captured, paid{orderID: b.orderID, paymentID: b.paymentID, amount: b.amount, channel: it.channel, at: now})
	case refused:
		if after {
			c.RefusedAfter++
		} else {
			c.RefusedBefore++
		}
	case outOfStock:
		c.OutOfStock++
	case cancelled:
		c.Cancelled++
	}
}

// parallel runs fn(0..n-1) with at most the scale's concurrency, and
// returns the error of the lowest index that failed.
func (m *market) parallel(n int, fn func(int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, m.sc.Concurrency)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

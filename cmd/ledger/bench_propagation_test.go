package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/embedded"
)

// propagationRuns is how many freezes (and floor prices) the propagation
// benchmark appends; LEDGER_BENCH_RUNS overrides it.
const propagationRuns = 50

// serviceStack starts the one service named on its own connection and
// store against the node, as a separate process would: its own policy view,
// its own runner caches.
func serviceStack(tb testing.TB, ctx context.Context, n *node, service string) *stack {
	tb.Helper()
	c, err := n.open(ctx, service)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.close)
	s, err := newStack(ctx, sameStore(c.store), time.Now, map[string]bool{service: true}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// untilRefused sends fresh commands built by try(n) until one is refused
// with KindFrozen and returns the time from since to that refusal and the
// number of commands sent. Any other error ends it.
func untilRefused(since time.Time, try func(n int) error) (time.Duration, int, error) {
	for n := 1; ; n++ {
		err := try(n)
		switch {
		case events.KindOf(err) == events.KindFrozen:
			return time.Since(since), n, nil
		case err != nil:
			return 0, n, err
		case n >= 1000:
			return 0, n, fmt.Errorf("not refused after %d commands", n)
		}
	}
}

// BenchmarkFreezePropagation measures, over many runs on loopback with
// fsync on, the time from the acknowledgement of a freeze (the policy
// service's ImposeFreeze returning) to the first refusal of order.place at
// the order service and of payment.authorize at the payment service, and
// from the acknowledgement of a floor price to the first refusal of a
// below-floor listing.create at the listing service. Each service runs on
// its own connection, store and policy view, as in its own process; the
// probes start at the acknowledgement. It also reports how long each
// service's policy view took to apply the freeze on its own, without a
// command forcing it.
func BenchmarkFreezePropagation(b *testing.B) {
	runs := propagationRuns
	if n, err := strconv.Atoi(os.Getenv("LEDGER_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	for range b.N {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		n, err := openNode(ctx, &globals{dataDir: b.TempDir()}, nodeConfig{port: embedded.RandomPort})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(n.Close)
		pol := serviceStack(b, ctx, n, contracts.ServicePolicy)
		lst := serviceStack(b, ctx, n, contracts.ServiceListing)
		ord := serviceStack(b, ctx, n, contracts.ServiceOrder)
		pay := serviceStack(b, ctx, n, contracts.ServicePayment)
		idr := func(m int64) contracts.Money { return contracts.Money{AmountMinor: m, Currency: "IDR"} }
		for r := range runs {
			if _, err := lst.listing.Create(ctx, contracts.CreateListing{ListingID: fmt.Sprintf("pl-%03d", r), SellerID: "seller-1",
				Title: "probe", Category: fmt.Sprintf("cat-%03d", r), Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID",
				Origin: contracts.OriginDomestic, Price: idr(150_000_00), Stock: 1_000_000}); err != nil {
				b.Fatal(err)
			}
			// The payment probes pay for this order: the payment service
			// takes an authorization's scope from the order in the log.
			if _, err := ord.order.Place(ctx, contracts.PlaceOrder{OrderID: fmt.Sprintf("pp-order-%03d", r), BuyerID: "buyer-1",
				ListingID: fmt.Sprintf("pl-%03d", r), Quantity: 1}); err != nil {
				b.Fatal(err)
			}
		}
		var orderLat, payLat, listLat, viewLat []time.Duration
		commands := 0
		for r := range runs {
			cat := fmt.Sprintf("cat-%03d", r)
			res, err := pol.policy.ImposeFreeze(ctx, contracts.ImposeFreeze{RuleID: fmt.Sprintf("pf-%03d", r),
				Scope:      contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{contracts.ChannelSocialCommerce}, Categories: []string{cat}},
				LegalBasis: "Permendag 31/2023", Issuer: "kemendag"})
			acked := time.Now()
			if err != nil {
				b.Fatal(err)
			}
			pos := res.Appended.LastPosition
			var wg sync.WaitGroup
			var oErr, pErr error
			var oLat, pLat time.Duration
			var oN, pN int
			wg.Go(func() {
				oLat, oN, oErr = untilRefused(acked, func(k int) error {
					_, err := ord.order.Place(ctx, contracts.PlaceOrder{OrderID: fmt.Sprintf("po-%03d-%d", r, k), BuyerID: "buyer-1",
						ListingID: fmt.Sprintf("pl-%03d", r), Quantity: 1})
					return err
				})
			})
			wg.Go(func() {
				pLat, pN, pErr = untilRefused(acked, func(k int) error {
					_, err := pay.payment.Authorize(ctx, contracts.AuthorizePayment{PaymentID: fmt.Sprintf("pp-%03d-%d", r, k),
						OrderID: fmt.Sprintf("pp-order-%03d", r), BuyerID: "buyer-1", SellerID: "seller-1",
						Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID", Category: cat, Amount: idr(150_000_00)})
					return err
				})
			})
			// The listing service's view gets no command about the freeze
			// (a freeze blocks no listing operation): time its own catch-up.
			wg.Go(func() {
				for lst.view.Position() < pos && time.Since(acked) < 10*time.Second {
					time.Sleep(50 * time.Microsecond) // the view announces nothing: poll it finely
				}
				viewLat = append(viewLat, time.Since(acked))
			})
			wg.Wait()
			if oErr != nil || pErr != nil {
				b.Fatalf("run %d: order %v, payment %v", r, oErr, pErr)
			}
			orderLat, payLat = append(orderLat, oLat), append(payLat, pLat)
			commands += oN + pN

			if _, err := pol.policy.SetFloorPrice(ctx, contracts.SetFloorPrice{RuleID: fmt.Sprintf("pfl-%03d", r),
				Scope: contracts.Scope{Jurisdictions: []string{"ID"}, Categories: []string{cat}}, Amount: contracts.Money{AmountMinor: 100_00, Currency: "USD"},
				Origin: contracts.OriginCrossBorder, LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}); err != nil {
				b.Fatal(err)
			}
			floorAcked := time.Now()
			lLat, lN, err := untilRefused(floorAcked, func(k int) error {
				_, err := lst.listing.Create(ctx, contracts.CreateListing{ListingID: fmt.Sprintf("px-%03d-%d", r, k), SellerID: "seller-2",
					Title: "imported", Category: cat, Channel: contracts.ChannelMarketplace, Jurisdiction: "ID",
					Origin: contracts.OriginCrossBorder, Price: idr(99_000_00), Stock: 1})
				return err
			})
			if err != nil {
				b.Fatalf("run %d: listing %v", r, err)
			}
			listLat = append(listLat, lLat)
			commands += lN
		}
		report := func(name string, d []time.Duration) (float64, float64) {
			slices.Sort(d)
			p50, p99 := quantile(d, 0.50), quantile(d, 0.99)
			fmt.Printf("%-44s p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms\n", name, p50, p99, float64(d[len(d)-1])/1e6)
			return p50, p99
		}
		fmt.Printf("freeze propagation over %d runs, loopback, fsync always (target p99 <= 5 ms); %d probe commands for %d refusals\n",
			runs, commands, 3*runs)
		o50, o99 := report("ack -> first refusal, order.place", orderLat)
		p50, p99 := report("ack -> first refusal, payment.authorize", payLat)
		l50, l99 := report("floor ack -> first refusal, listing.create", listLat)
		v50, v99 := report("ack -> listing view applied it (no command)", viewLat)
		out, _ := json.Marshal(map[string]any{"bench": "freeze_propagation", "runs": runs,
			"order_place_p50_ms": round2(o50), "order_place_p99_ms": round2(o99),
			"payment_authorize_p50_ms": round2(p50), "payment_authorize_p99_ms": round2(p99),
			"listing_floor_p50_ms": round2(l50), "listing_floor_p99_ms": round2(l99),
			"view_apply_p50_ms": round2(v50), "view_apply_p99_ms": round2(v99),
			"probe_commands": commands, "target_p99_ms": 5})
		fmt.Printf("BENCH_JSON %s\n", out)
		b.ReportMetric(max(o99, p99, l99), "worst_p99_ms")
	}
}

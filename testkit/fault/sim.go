package fault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/policyview"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/services/listing"
	"github.com/marketledger/ledger/services/order"
	"github.com/marketledger/ledger/services/payment"
	"github.com/marketledger/ledger/services/policy"
	"github.com/marketledger/ledger/testkit/invariant"
)

// SimIssuer is the policy issuer the simulated regulator acts as.
const SimIssuer = "regulator"

// commandTimeout bounds one command the simulation sends without an
// injected timeout; a command that takes longer is a failure, not a fault.
const commandTimeout = 15 * time.Second

// Sim is a seeded simulation of a marketplace on one JetStream server:
// sellers list goods, buyers check out step by step (place, reserve,
// authorize, capture, confirm, sometimes refund or cancel), and the
// regulator imposes and lifts a freeze of social commerce, interleaved in
// an order drawn from the seed, with faults injected between them: a stale
// expected version appended directly, several buyers reserving one listing
// at once, commands cut off by a very short context and retried with the
// same idempotency key, and restarts of the whole service process (store,
// connection and services closed and opened again on the same server).
//
// After every step it checks the ledger's invariants on the log: the
// postings of every currency sum to zero, no listing is oversold, the
// violations audit is empty (no blocked operation was accepted under a
// freeze), and every read model folded incrementally step by step equals,
// byte for byte, a fold of the whole log from zero. The same seed draws the
// same choices; which of several concurrent reservations wins is the
// server's to decide and can differ between runs, so the history records
// what each step did.
type Sim struct {
	url  string
	seed uint64
	rng  *rand.Rand

	nc    *nats.Conn
	store *events.JetStreamStore
	view  *policyview.View
	svc   simServices

	listings []*simListing
	orders   []*simOrder
	freeze   string // the rule in force, "" when none
	freezes  int
	restarts int

	inc     []projections.Model // folded step by step
	folded  uint64              // last position folded into inc
	history []string
}

type simServices struct {
	listing *listing.Service
	order   *order.Service
	payment *payment.Service
	policy  *policy.Service
}

type simListing struct {
	id      string
	channel contracts.Channel
	stock   int64 // as created; never changed
}

// simOrder is a buyer's checkout: stage is the next step to take.
type simOrder struct {
	id, listing string
	qty         int64
	stage       int // index into checkoutStages; len means done
	ended       bool
	total       int64
	refunds     int
	state       order.Order
}

var checkoutStages = []string{"place", "reserve", "authorize", "capture", "confirm"}

// NewSim returns a simulation against the JetStream server at url (the
// LEDGER stream must exist), seeded with seed.
func NewSim(url string, seed uint64) *Sim {
	return &Sim{url: url, seed: seed, rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))}
}

// Seed returns the simulation's seed.
func (s *Sim) Seed() uint64 { return s.seed }

// History returns the steps taken so far, one line each.
func (s *Sim) History() []string { return s.history }

// Run takes steps steps and checks the invariants after each. Its error
// carries the seed and the history.
func (s *Sim) Run(ctx context.Context, steps int) (err error) {
	defer func() {
		s.close()
		if err != nil {
			err = fmt.Errorf("seed %d (replay with LEDGER_SIM_SEED=%d), after %d steps: %w\nhistory:\n  %s",
				s.seed, s.seed, len(s.history), err, strings.Join(s.history, "\n  "))
		}
	}()
	if err := s.open(ctx); err != nil {
		return err
	}
	if s.inc, err = projections.NewModels(projections.ModelNames()...); err != nil {
		return err
	}
	for i := range steps {
		what, err := s.step(ctx, i)
		s.history = append(s.history, fmt.Sprintf("%03d %s", i, what))
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", i, what, err)
		}
		if err := s.check(ctx); err != nil {
			return fmt.Errorf("invariant after step %d (%s): %w", i, what, err)
		}
	}
	return nil
}

// contractsCodec adapts the contracts package to command.Codec.
type contractsCodec struct{}

func (contractsCodec) Encode(v any) (string, int, []byte, error) { return contracts.Encode(v) }
func (contractsCodec) Decode(typ string, version int, data []byte) (any, error) {
	return contracts.Decode(typ, version, data)
}

// open starts the service process: a connection, a store, the policy view
// and the four services, as `ledger serve` wires them.
func (s *Sim) open(ctx context.Context) error {
	nc, err := nats.Connect(s.url, nats.Name("fault-sim"), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	s.nc = nc
	octx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	if s.store, err = events.NewJetStreamStore(octx, nc, events.WithTypeChecker(contracts.Checker{}), contracts.Fence()); err != nil {
		return err
	}
	if s.view, err = policyview.Start(octx, s.store); err != nil {
		return err
	}
	runner := func(svc string) *command.Runner {
		return &command.Runner{Store: s.store, Codec: contractsCodec{}, Source: contracts.Source(svc), Clock: time.Now}
	}
	s.svc.listing = listing.New(runner(contracts.ServiceListing), s.view.Snapshot)
	s.svc.order = order.New(runner(contracts.ServiceOrder), s.view.Snapshot)
	if s.svc.payment, err = payment.New(octx, payment.Config{Store: s.store, FeeBasisPoints: 500, Policy: s.view.Snapshot}); err != nil {
		return err
	}
	s.svc.policy, err = policy.New(policy.Config{Store: s.store, Authorizer: policy.StaticRoles{SimIssuer: {"policy_issuer"}}})
	return err
}

// close stops the service process, as a crash between commands would:
// nothing it held survives but the log.
func (s *Sim) close() {
	if s.svc.payment != nil {
		s.svc.payment.Close()
	}
	if s.view != nil {
		s.view.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	s.svc, s.view, s.store, s.nc = simServices{}, nil, nil, nil
}

// step takes one seeded step and describes it.
func (s *Sim) step(ctx context.Context, i int) (string, error) {
	open := s.openOrders()
	switch r := s.rng.IntN(100); {
	case len(s.listings) < 3 || r < 10:
		return s.createListing(ctx)
	case r < 55 && len(open) > 0:
		return s.advance(ctx, open[s.rng.IntN(len(open))], 0)
	case r < 65:
		return s.placeNew(ctx)
	case r < 70:
		return s.regulate(ctx)
	case r < 75:
		return s.refund(ctx)
	case r < 80:
		return s.staleAppend(ctx)
	case r < 86:
		return s.concurrentReserve(ctx)
	case r < 94 && len(open) > 0:
		return s.advance(ctx, open[s.rng.IntN(len(open))], time.Duration(s.rng.IntN(3000))*time.Microsecond)
	case r < 97:
		s.close()
		s.restarts++
		return fmt.Sprintf("restart #%d of the service process", s.restarts), s.open(ctx)
	default:
		return s.placeNew(ctx)
	}
}

func (s *Sim) openOrders() []*simOrder {
	var out []*simOrder
	for _, o := range s.orders {
		if !o.ended && o.stage < len(checkoutStages) {
			out = append(out, o)
		}
	}
	return out
}

func idr(v int64) contracts.Money { return contracts.Money{AmountMinor: v, Currency: "IDR"} }

func (s *Sim) createListing(ctx context.Context) (string, error) {
	l := &simListing{id: fmt.Sprintf("sim-l-%d", len(s.listings)), channel: contracts.ChannelMarketplace, stock: int64(1 + s.rng.IntN(6))}
	if s.rng.IntN(2) == 0 {
		l.channel = contracts.ChannelSocialCommerce
	}
	seller := fmt.Sprintf("seller-%d", s.rng.IntN(3))
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	_, err := s.svc.listing.Create(cctx, contracts.CreateListing{ListingID: l.id, SellerID: seller, Title: "Sim item " + l.id,
		Category: "home", Channel: l.channel, Jurisdiction: "ID", Origin: contracts.OriginDomestic,
		Price: idr(int64(10+s.rng.IntN(90)) * 1_000_00), Stock: l.stock, IdempotencyKey: "create-" + l.id})
	what := fmt.Sprintf("%s lists %s (%s, stock %d)", seller, l.id, l.channel, l.stock)
	if err != nil {
		return what, err
	}
	s.listings = append(s.listings, l)
	return what, nil
}

func (s *Sim) newOrder() *simOrder {
	l := s.listings[s.rng.IntN(len(s.listings))]
	o := &simOrder{id: fmt.Sprintf("sim-o-%d", len(s.orders)), listing: l.id, qty: int64(1 + s.rng.IntN(2))}
	s.orders = append(s.orders, o)
	return o
}

func (s *Sim) placeNew(ctx context.Context) (string, error) {
	return s.advance(ctx, s.newOrder(), 0)
}

// advance takes the order's next checkout step. With cut > 0 the command
// first runs under a context of that length, so that it may be cut off
// anywhere (before, during or after its append); it is then sent again
// with the same idempotency key, as a client that saw a timeout must, and
// must be decided exactly once.
func (s *Sim) advance(ctx context.Context, o *simOrder, cut time.Duration) (string, error) {
	stage := checkoutStages[o.stage]
	what := fmt.Sprintf("buyer of %s: %s on %s", o.id, stage, o.listing)
	if cut > 0 {
		what += fmt.Sprintf(" (cut off after %s, then retried)", cut)
		cctx, cancel := context.WithTimeout(ctx, cut)
		_ = s.do(cctx, o, stage) // outcome unknown: that is the fault
		cancel()
	}
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	err := s.do(cctx, o, stage)
	switch {
	case err == nil:
		o.stage++
		return what, nil
	case events.KindOf(err) == events.KindFrozen:
		return what + ": refused by the freeze, compensated", s.compensate(cctx, o, "refused by the freeze")
	case (stage == "place" || stage == "reserve") && events.KindOf(err) == events.KindConflict:
		return what + ": out of stock, rejected", s.compensate(cctx, o, "out of stock")
	}
	return what, err
}

// do sends the command of one checkout stage with its idempotency key.
func (s *Sim) do(ctx context.Context, o *simOrder, stage string) error {
	key := checkout.StepKey(o.id, stage)
	switch stage {
	case "place":
		r, err := s.svc.order.Place(ctx, contracts.PlaceOrder{OrderID: o.id, BuyerID: "buyer-" + o.id, ListingID: o.listing, Quantity: o.qty, IdempotencyKey: key})
		if err == nil {
			o.state, o.total = r.State, r.State.Total.AmountMinor
		}
		return err
	case "reserve":
		_, err := s.svc.listing.ReserveStock(ctx, contracts.ReserveStock{ListingID: o.listing, OrderID: o.id, Quantity: o.qty, IdempotencyKey: key})
		return err
	case "authorize":
		st := o.state
		_, err := s.svc.payment.Authorize(ctx, contracts.AuthorizePayment{PaymentID: contracts.PaymentID(o.id), OrderID: o.id, BuyerID: st.BuyerID,
			SellerID: st.SellerID, Channel: st.Channel, Jurisdiction: st.Jurisdiction, Category: st.Category, Amount: st.Total, IdempotencyKey: key})
		return err
	case "capture":
		_, err := s.svc.payment.Capture(ctx, contracts.CapturePayment{PaymentID: contracts.PaymentID(o.id), IdempotencyKey: key})
		return err
	case "confirm":
		_, err := s.svc.order.Confirm(ctx, contracts.ConfirmOrder{OrderID: o.id, PaymentID: contracts.PaymentID(o.id), IdempotencyKey: key})
		return err
	}
	return fmt.Errorf("unknown stage %q", stage)
}

// compensate ends a checkout that cannot go on: it voids what was
// authorized, releases what was reserved, and rejects or cancels the order.
func (s *Sim) compensate(ctx context.Context, o *simOrder, reason string) error {
	o.ended = true
	reached := o.stage // stages before this one succeeded
	if reached == 0 {
		return nil // nothing was placed
	}
	if reached >= 3 { // authorized
		if _, err := s.svc.payment.Void(ctx, contracts.VoidPayment{PaymentID: contracts.PaymentID(o.id), Reason: reason,
			IdempotencyKey: checkout.StepKey(o.id, "void")}); err != nil {
			return fmt.Errorf("void: %w", err)
		}
	}
	if reached >= 2 { // reserved
		if _, err := s.svc.listing.ReleaseStock(ctx, contracts.ReleaseStock{ListingID: o.listing, OrderID: o.id, Quantity: o.qty,
			Reason: reason, IdempotencyKey: checkout.StepKey(o.id, "release")}); err != nil {
			return fmt.Errorf("release: %w", err)
		}
		_, err := s.svc.order.Cancel(ctx, contracts.CancelOrder{OrderID: o.id, Reason: reason, IdempotencyKey: checkout.StepKey(o.id, "cancel")})
		return err
	}
	_, err := s.svc.order.Reject(ctx, contracts.RejectOrder{OrderID: o.id, Reason: reason, IdempotencyKey: checkout.StepKey(o.id, "reject")})
	return err
}

// regulate imposes a freeze of social commerce, or lifts the one in force.
func (s *Sim) regulate(ctx context.Context) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	if s.freeze != "" {
		id := s.freeze
		_, err := s.svc.policy.LiftFreeze(cctx, contracts.LiftFreeze{RuleID: id, LegalBasis: "simulation", Issuer: SimIssuer, IdempotencyKey: "lift-" + id})
		s.freeze = ""
		return "regulator lifts " + id, err
	}
	s.freezes++
	id := fmt.Sprintf("sim-freeze-%d", s.freezes)
	_, err := s.svc.policy.ImposeFreeze(cctx, contracts.ImposeFreeze{RuleID: id,
		Scope:      contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{contracts.ChannelSocialCommerce}},
		LegalBasis: "simulation", Issuer: SimIssuer, IdempotencyKey: "impose-" + id})
	s.freeze = id
	return "regulator freezes social commerce (" + id + ")", err
}

// refund refunds part of a captured payment; refunds go on under a freeze.
func (s *Sim) refund(ctx context.Context) (string, error) {
	var paid []*simOrder
	for _, o := range s.orders {
		if !o.ended && o.stage >= 4 && o.refunds < 2 {
			paid = append(paid, o)
		}
	}
	if len(paid) == 0 {
		return s.placeNew(ctx)
	}
	o := paid[s.rng.IntN(len(paid))]
	o.refunds++
	amount := o.total / 4
	id := fmt.Sprintf("%s-rf-%d", o.id, o.refunds)
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	_, err := s.svc.payment.Refund(cctx, contracts.RefundPayment{PaymentID: contracts.PaymentID(o.id), RefundID: id, Amount: idr(amount),
		Reason: "returned", IdempotencyKey: "refund:" + id})
	return fmt.Sprintf("refund %d of %s", amount, o.id), err
}

// staleAppend appends a decision at an expected version the listing has
// left behind: it must be refused as a conflict, and nothing appended.
func (s *Sim) staleAppend(ctx context.Context) (string, error) {
	l := s.listings[s.rng.IntN(len(s.listings))]
	ref := events.AggregateRef{Context: contracts.ServiceListing, ID: l.id}
	what := "stale append to " + l.id
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	evs, err := s.store.Load(cctx, ref, 0)
	if err != nil || len(evs) == 0 {
		return what, fmt.Errorf("load %s: %v (%d events)", l.id, err, len(evs))
	}
	before, err := s.store.LastPosition(cctx)
	if err != nil {
		return what, err
	}
	typ, ver, body, err := contracts.Encode(contracts.ListingDelisted{ListingID: l.id, Reason: "stale"})
	if err != nil {
		return what, err
	}
	stale := uint64(s.rng.IntN(len(evs))) // any version before the head
	_, err = s.store.Append(cctx, events.Decision{Aggregate: ref, ExpectedVersion: stale, Events: []events.Event{{
		ID: events.NewID(), Type: typ, SchemaVersion: ver, Source: contracts.Source(contracts.ServiceListing), AggregateID: l.id,
		OccurredAt: time.Now(), Data: body}}})
	what = fmt.Sprintf("%s at version %d (head %d)", what, stale, len(evs))
	if events.KindOf(err) != events.KindConflict {
		return what, fmt.Errorf("a stale decision was answered %v, want a conflict", err)
	}
	after, err := s.store.LastPosition(cctx)
	if err == nil && after != before {
		err = fmt.Errorf("the refused decision moved the head from %d to %d", before, after)
	}
	return what, err
}

// concurrentReserve places several orders on one listing and reserves them
// all at once: the listing's stock decides who gets units, never more than
// it has.
func (s *Sim) concurrentReserve(ctx context.Context) (string, error) {
	l := s.listings[s.rng.IntN(len(s.listings))]
	n := 2 + s.rng.IntN(3)
	var os []*simOrder
	for range n {
		o := &simOrder{id: fmt.Sprintf("sim-o-%d", len(s.orders)), listing: l.id, qty: int64(1 + s.rng.IntN(2))}
		s.orders = append(s.orders, o)
		if _, err := s.advance(ctx, o, 0); err != nil {
			return "concurrent reserves on " + l.id, err
		}
		if !o.ended {
			os = append(os, o)
		}
	}
	errs := make([]error, len(os))
	var wg sync.WaitGroup
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	for i, o := range os {
		wg.Go(func() { errs[i] = s.do(cctx, o, "reserve") })
	}
	wg.Wait()
	got := 0
	for i, o := range os {
		switch err := errs[i]; {
		case err == nil:
			o.stage++
			got++
		case events.KindOf(err) == events.KindConflict:
			if err := s.compensate(cctx, o, "out of stock"); err != nil {
				return "concurrent reserves on " + l.id, err
			}
		default:
			return "concurrent reserves on " + l.id, err
		}
	}
	return fmt.Sprintf("%d buyers reserve %s at once (stock %d): %d reserved", len(os), l.id, l.stock, got), nil
}

// check verifies the invariants on the log as it is now.
func (s *Sim) check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	head, err := s.store.LastPosition(cctx)
	if err != nil {
		return err
	}
	if head > s.folded {
		if _, _, err := projections.Fold(cctx, s.store, events.Query{From: s.folded + 1, To: head}, s.inc, nil, nil); err != nil {
			return fmt.Errorf("incremental fold to %d: %w", head, err)
		}
		s.folded = head
	}
	fresh, err := projections.NewModels(projections.ModelNames()...)
	if err != nil {
		return err
	}
	if err := projections.Rebuild(cctx, s.store, head, fresh); err != nil {
		return fmt.Errorf("rebuild to %d: %w", head, err)
	}
	for i, m := range fresh {
		a, err := m.Snapshot()
		if err != nil {
			return err
		}
		b, err := s.inc[i].Snapshot()
		if err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("read model %s folded step by step differs from a rebuild from zero at %d", m.Name(), head)
		}
	}
	var errs []error
	for _, m := range fresh {
		switch m := m.(type) {
		case *projections.Balances:
			for cur, sum := range m.Totals() {
				if sum != 0 {
					errs = append(errs, fmt.Errorf("postings in %s sum to %d, not zero", cur, sum))
				}
			}
		case *projections.Violations:
			if n := m.Count(); n != 0 {
				errs = append(errs, fmt.Errorf("%d violations: %+v", n, m.List()))
			}
		case *projections.Catalogue:
			errs = append(errs, s.checkStock(cctx, m)...)
		}
	}
	// Every checkout of the simulation ends within its step, compensation
	// included: after each step nothing may be left behind an ended order.
	if err := invariant.NothingStranded(cctx, s.store); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkStock requires every listing's stock to be non-negative and equal
// to what it was created with less the units reserved and not released:
// no unit was sold twice.
func (s *Sim) checkStock(ctx context.Context, cat *projections.Catalogue) []error {
	net := map[string]int64{}
	for e, err := range s.store.Read(ctx, events.Query{Subjects: []string{events.SubjectPrefix + contracts.ServiceListing + ".>"}}) {
		if err != nil {
			return []error{err}
		}
		p, err := projections.DecodePayload(&e)
		if err != nil {
			return []error{err}
		}
		switch p := p.(type) {
		case contracts.ListingStockReserved:
			net[p.ListingID] += p.Quantity
		case contracts.ListingStockReleased:
			net[p.ListingID] -= p.Quantity
		}
	}
	var errs []error
	for _, l := range s.listings {
		got, ok := cat.Listing(l.id)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("listing %s missing from the catalogue", l.id))
		case got.Stock < 0:
			errs = append(errs, fmt.Errorf("listing %s oversold: stock %d", l.id, got.Stock))
		case net[l.id] < 0 || net[l.id] > l.stock || got.Stock != l.stock-net[l.id]:
			errs = append(errs, fmt.Errorf("listing %s: created with %d, %d reserved net, stock %d", l.id, l.stock, net[l.id], got.Stock))
		}
	}
	return errs
}

package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/testkit/checkoutrun"
	"github.com/marketledger/ledger/testkit/invariant"
)

// SimIssuer is the policy issuer the simulated regulator acts as: the one
// `ledger serve` authorizes.
const SimIssuer = "kemendag"

// commandTimeout bounds one command the simulation sends without an
// injected timeout; a command that takes longer is a failure, not a fault.
const commandTimeout = 15 * time.Second

// settleTimeout bounds the wait for the checkout to take every order of
// the log as far as it goes after a step.
const settleTimeout = 30 * time.Second

// SimConfig is what the simulation runs against: a `ledger serve` process
// (its HTTP API, with an operator's and a policy issuer's token) on a
// JetStream server the simulation reads as the operator.
type SimConfig struct {
	// NATS is the JetStream server's URL and OperatorCreds the operator
	// user's .creds file: the simulation reads the log, and appends a
	// stale decision, as that user.
	NATS          string
	OperatorCreds string
	// HTTP is the base URL of the serve process's API ("http://host:port").
	HTTP string
	// Operator and Issuer are API tokens: the buyers', sellers' and
	// operator's commands go with Operator, the regulator's with Issuer.
	Operator, Issuer string
	// Restart kills the serve process (SIGKILL) and starts it again on the
	// same log, returning once it is ready.
	Restart func(ctx context.Context) error
}

// Sim is a seeded simulation of a marketplace run by `ledger serve`:
// sellers list goods, buyers place orders, sometimes cancel them or ask a
// refund, and the regulator imposes and lifts a freeze of social commerce,
// all over the HTTP API as clients do, interleaved in an order drawn from
// the seed, with faults injected between them: a stale expected version
// appended directly, several buyers placing orders on one listing at once,
// placements cut off by a very short context and retried with the same
// idempotency key, and the serve process killed (SIGKILL) and started
// again. The serve process's checkout (services/checkout) does everything
// else: reserve, authorize, confirm, capture, and the compensation of
// every order that ends.
//
// After every step, once the checkout has settled (its checkpoint past the
// log's last event), it checks the ledger's invariants on the log: the
// postings of every currency sum to zero, no listing is oversold, the
// violations audit is empty (no blocked operation was accepted under a
// freeze), every read model folded incrementally step by step equals, byte
// for byte, a fold of the whole log from zero, and no ended order holds
// stock or money (invariant.NothingStranded). The same seed draws the same
// choices; which of several concurrent orders gets a listing's last units
// is the checkout's and the server's to decide and can differ between
// runs, so the history records what each step did.
type Sim struct {
	cfg  SimConfig
	seed uint64
	rng  *rand.Rand
	hc   *http.Client

	nc    *nats.Conn
	store *events.JetStreamStore

	listings []*simListing
	orders   []*simOrder
	freeze   string // the rule in force, "" when none
	freezes  int
	restarts int

	inc     []models.Model // folded step by step
	folded  uint64         // last position folded into inc
	history []string
}

type simListing struct {
	id      string
	channel contracts.Channel
	stock   int64 // as created; never changed
}

// simOrder is a buyer's order.
type simOrder struct {
	id, listing string
	qty         int64
	placed      bool
	cancelled   bool // the buyer asked to cancel it
	refunds     int
}

// NewSim returns a simulation against cfg (the LEDGER stream must exist
// and the serve process be ready), seeded with seed.
func NewSim(cfg SimConfig, seed uint64) *Sim {
	return &Sim{cfg: cfg, seed: seed, rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)),
		hc: &http.Client{Timeout: commandTimeout}}
}

// Seed returns the simulation's seed.
func (s *Sim) Seed() uint64 { return s.seed }

// History returns the steps taken so far, one line each.
func (s *Sim) History() []string { return s.history }

// Restarts returns how many times the serve process was killed and started.
func (s *Sim) Restarts() int { return s.restarts }

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
	if s.inc, err = models.NewModels(models.ModelNames()...); err != nil {
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

// open connects to the log as the operator.
func (s *Sim) open(ctx context.Context) error {
	nc, err := auth.Connect(s.cfg.NATS, s.cfg.OperatorCreds, nats.Name("fault-sim"), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	s.nc = nc
	octx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	s.store, err = events.NewJetStreamStore(octx, nc, events.WithTypeChecker(contracts.Checker{}), contracts.Fence())
	return err
}

func (s *Sim) close() {
	if s.store != nil {
		s.store.Close()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	s.store, s.nc = nil, nil
}

// send posts one command to the serve process, sending it again with the
// same body (hence the same idempotency key) while the answer says nothing
// was decided for sure (no connection, 5xx), within ctx. It returns the
// status of the final answer and its body.
func (s *Sim) send(ctx context.Context, name string, cmd any) (int, []byte, error) {
	body, err := json.Marshal(cmd)
	if err != nil {
		return 0, nil, err
	}
	token := s.cfg.Operator
	if strings.HasPrefix(name, contracts.ServicePolicy+".") {
		token = s.cfg.Issuer
	}
	backoff := 20 * time.Millisecond
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.HTTP+"/v1/commands/"+name, bytes.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := s.hc.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode < 500 {
				return resp.StatusCode, b, nil
			}
			err = fmt.Errorf("%s answered %d: %s", name, resp.StatusCode, b)
		}
		select {
		case <-ctx.Done():
			return 0, nil, fmt.Errorf("%s: %w (last: %v)", name, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// must sends a command that must be accepted.
func (s *Sim) must(ctx context.Context, name string, cmd any) error {
	code, b, err := s.send(ctx, name, cmd)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("%s answered %d: %s", name, code, b)
	}
	return err
}

// step takes one seeded step and describes it.
func (s *Sim) step(ctx context.Context, i int) (string, error) {
	placed := s.placedOrders()
	switch r := s.rng.IntN(100); {
	case len(s.listings) < 3 || r < 10:
		return s.createListing(ctx)
	case r < 45:
		return s.place(ctx, s.newOrder(), 0)
	case r < 55 && len(placed) > 0:
		return s.cancel(ctx, placed[s.rng.IntN(len(placed))])
	case r < 62:
		return s.regulate(ctx)
	case r < 72:
		return s.refund(ctx)
	case r < 77:
		return s.staleAppend(ctx)
	case r < 85:
		return s.concurrentPlace(ctx)
	case r < 94:
		return s.place(ctx, s.newOrder(), time.Duration(s.rng.IntN(3000))*time.Microsecond)
	default:
		s.restarts++
		return fmt.Sprintf("kill -9 and restart #%d of the serve process", s.restarts), s.cfg.Restart(ctx)
	}
}

func (s *Sim) placedOrders() []*simOrder {
	var out []*simOrder
	for _, o := range s.orders {
		if o.placed && !o.cancelled {
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
	err := s.must(cctx, "listing.create", contracts.CreateListing{ListingID: l.id, SellerID: seller, Title: "Sim item " + l.id,
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

// place sends the buyer's order. With cut > 0 it is first sent under a
// context of that length, so that it may be cut off anywhere (before,
// during or after its append); it is then sent again with the same
// idempotency key, as a client that saw a timeout must, and must be
// decided exactly once. A freeze or too little stock refuses it (409,
// 422), and that is an outcome.
func (s *Sim) place(ctx context.Context, o *simOrder, cut time.Duration) (string, error) {
	what := fmt.Sprintf("buyer of %s places %d of %s", o.id, o.qty, o.listing)
	cmd := contracts.PlaceOrder{OrderID: o.id, BuyerID: "buyer-" + o.id, ListingID: o.listing, Quantity: o.qty,
		IdempotencyKey: checkout.StepKey(o.id, "place")}
	if cut > 0 {
		what += fmt.Sprintf(" (cut off after %s, then retried)", cut)
		cctx, cancel := context.WithTimeout(ctx, cut)
		_, _, _ = s.send(cctx, "order.place", cmd) // outcome unknown: that is the fault
		cancel()
	}
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	code, b, err := s.send(cctx, "order.place", cmd)
	switch {
	case err != nil:
		return what, err
	case code == http.StatusOK:
		o.placed = true
		return what, nil
	case refusal(code):
		return what + ": refused (" + problemTitle(b) + ")", nil
	}
	return what, fmt.Errorf("order.place answered %d: %s", code, b)
}

// refusal reports whether an answer is a business refusal (a conflict,
// a rule, a freeze): an outcome of the simulation, not a failure.
func refusal(code int) bool {
	return code == http.StatusConflict || code == http.StatusUnprocessableEntity || code == http.StatusLocked
}

// problemTitle is the title of an RFC 9457 problem body, for the history.
func problemTitle(b []byte) string {
	var p struct {
		Title string `json:"title"`
	}
	_ = json.Unmarshal(b, &p)
	return p.Title
}

// cancel is the buyer cancelling an order, whatever its checkout did with
// it so far: the checkout gives back what it holds. An order that already
// ended (or shipped) refuses it, which is an outcome.
func (s *Sim) cancel(ctx context.Context, o *simOrder) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	code, b, err := s.send(cctx, "order.cancel", contracts.CancelOrder{OrderID: o.id, Reason: "buyer changed their mind",
		IdempotencyKey: "buyer-cancel:" + o.id})
	what := "buyer of " + o.id + " cancels it"
	switch {
	case err != nil:
		return what, err
	case code == http.StatusOK:
		o.cancelled = true
		return what, nil
	case refusal(code):
		o.cancelled = true
		return what + ": refused (" + problemTitle(b) + ")", nil
	}
	return what, fmt.Errorf("order.cancel answered %d: %s", code, b)
}

// regulate imposes a freeze of social commerce, or lifts the one in force.
func (s *Sim) regulate(ctx context.Context) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	if s.freeze != "" {
		id := s.freeze
		s.freeze = ""
		return "regulator lifts " + id, s.must(cctx, "policy.lift_freeze", contracts.LiftFreeze{RuleID: id, LegalBasis: "simulation",
			Issuer: SimIssuer, IdempotencyKey: "lift-" + id})
	}
	s.freezes++
	id := fmt.Sprintf("sim-freeze-%d", s.freezes)
	s.freeze = id
	return "regulator freezes social commerce (" + id + ")", s.must(cctx, "policy.impose_freeze", contracts.ImposeFreeze{RuleID: id,
		Scope:      contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{contracts.ChannelSocialCommerce}},
		LegalBasis: "simulation", Issuer: SimIssuer, IdempotencyKey: "impose-" + id})
}

// refund is a buyer asking back a quarter of a captured payment, as the
// log has it; refunds go on under a freeze. The payment service may refuse
// it (the checkout refunded the rest of a cancelled order first), which is
// an outcome.
func (s *Sim) refund(ctx context.Context) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	h, err := invariant.Read(cctx, s.store)
	if err != nil {
		return "refund", err
	}
	var paid []*simOrder
	for _, o := range s.orders {
		for _, p := range h.Payments[o.id] {
			if p.CapturedMinor > p.RefundedMinor && o.refunds < 2 {
				paid = append(paid, o)
				break
			}
		}
	}
	if len(paid) == 0 {
		return s.place(ctx, s.newOrder(), 0)
	}
	o := paid[s.rng.IntN(len(paid))]
	p := h.Payments[o.id][0]
	o.refunds++
	amount := p.CapturedMinor / 4
	id := fmt.Sprintf("%s-rf-%d", o.id, o.refunds)
	code, b, err := s.send(cctx, "payment.refund", contracts.RefundPayment{PaymentID: p.ID, RefundID: id, Amount: idr(amount),
		Reason: "returned", IdempotencyKey: "refund:" + id})
	what := fmt.Sprintf("buyer of %s asks a refund of %d", o.id, amount)
	switch {
	case err != nil:
		return what, err
	case code == http.StatusOK:
		return what, nil
	case refusal(code):
		return what + ": refused (" + problemTitle(b) + ")", nil
	}
	return what, fmt.Errorf("payment.refund answered %d: %s", code, b)
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

// concurrentPlace has several buyers place orders on one listing at
// once: the checkout reserves for them concurrently, and the listing's
// stock decides who gets units, never more than it has.
func (s *Sim) concurrentPlace(ctx context.Context) (string, error) {
	l := s.listings[s.rng.IntN(len(s.listings))]
	n := 2 + s.rng.IntN(3)
	os := make([]*simOrder, n)
	for i := range os {
		os[i] = &simOrder{id: fmt.Sprintf("sim-o-%d", len(s.orders)), listing: l.id, qty: int64(1 + s.rng.IntN(2))}
		s.orders = append(s.orders, os[i])
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, o := range os {
		wg.Go(func() { _, errs[i] = s.place(ctx, o, 0) })
	}
	wg.Wait()
	return fmt.Sprintf("%d buyers place orders on %s at once (stock %d)", n, l.id, l.stock), errors.Join(errs...)
}

// check verifies the invariants on the log as it is now.
func (s *Sim) check(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	if err := checkoutrun.Settle(sctx, s.store, "", ""); err != nil {
		return err
	}
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
	fresh, err := models.NewModels(models.ModelNames()...)
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
		case *models.Balances:
			for cur, sum := range m.Totals() {
				if sum != 0 {
					errs = append(errs, fmt.Errorf("postings in %s sum to %d, not zero", cur, sum))
				}
			}
		case *models.Violations:
			if n := m.Count(); n != 0 {
				errs = append(errs, fmt.Errorf("%d violations: %+v", n, m.List()))
			}
		case *models.Catalogue:
			errs = append(errs, s.checkStock(cctx, m)...)
		}
	}
	// The checkout has settled: nothing may be left behind an ended order.
	if err := invariant.NothingStranded(cctx, s.store); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkStock requires every listing's stock to be non-negative and equal
// to what it was created with less the units reserved and not released:
// no unit was sold twice.
func (s *Sim) checkStock(ctx context.Context, cat *models.Catalogue) []error {
	net := map[string]int64{}
	for e, err := range s.store.Read(ctx, events.Query{Subjects: []string{events.SubjectPrefix + contracts.ServiceListing + ".>"}}) {
		if err != nil {
			return []error{err}
		}
		p, err := models.DecodePayload(&e)
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

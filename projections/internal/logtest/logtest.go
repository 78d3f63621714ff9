// Package logtest writes seeded marketplace logs for the projections
// tests: a Generator that appends as a compliant set of services would,
// writes around the fence as a broken one would, and an in-memory fold that
// is the reference every other way of building a model is checked against.
// It connects to a node the test started; it never starts one itself, so
// the projections module keeps the embedded server out of its build.
package logtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/models"
)

// Env is one node with the LEDGER stream and a checked store.
type Env struct {
	Store   *events.JetStreamStore
	JS      jetstream.JetStream
	DataDir string // the node's data directory
}

// Open connects to the node at url (started by the test, with its data in
// dataDir), creates the LEDGER stream and opens a checked store on it. The
// connection and the store close when the test ends.
func Open(t testing.TB, url, dataDir string) *Env {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	st, err := events.NewJetStreamStore(ctx, nc, events.WithTypeChecker(contracts.Checker{}), contracts.Fence())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Env{Store: st, JS: js, DataDir: dataDir}
}

// The simulated day: 4 October 2023 in Jakarta, the freeze at 17:00 WIB.
var (
	DayStart = time.Date(2023, 10, 4, 8, 0, 0, 0, models.WIB)
	FreezeAt = time.Date(2023, 10, 4, 17, 0, 0, 0, models.WIB)
)

// Config shapes a generated log.
type Config struct {
	Seed     uint64
	Listings int
	Flows    int // checkouts; each is 3 to 7 events
	Workers  int
	DaySpan  time.Duration // business time the flows spread over
}

// Generator appends a seeded marketplace log through the store, as a
// compliant set of services would: every transaction decision is fenced and
// records the newest policy position; no social-commerce trade is placed
// after the freeze's effective instant.
type Generator struct {
	t        testing.TB
	st       events.Store
	cfg      Config
	listings []contracts.ListingCreated
	Policy   uint64 // position of the newest policy event
	mu       sync.Mutex
	Count    int // events appended
	next     int // the next flow number
}

// Generate creates cfg.Listings listings, imposes the social-commerce freeze
// at FreezeAt and appends cfg.Flows checkouts through st.
func Generate(t testing.TB, st events.Store, cfg Config) *Generator {
	t.Helper()
	if cfg.Workers == 0 {
		cfg.Workers = 16
	}
	if cfg.DaySpan == 0 {
		cfg.DaySpan = 14 * time.Hour
	}
	g := &Generator{t: t, st: st, cfg: cfg}
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	g.createListings(rng)
	g.imposeFreeze(FreezeAt, "freeze-social-id")
	g.runFlows(cfg.Flows, cfg.Workers, cfg.Seed)
	return g
}

// More appends n more checkouts, later in the business day.
func (g *Generator) More(n, workers int, seed uint64) { g.runFlows(n, workers, seed) }

func (g *Generator) appendOne(ctx context.Context, ctxName, id string, ver uint64, v any, at time.Time, fence bool) events.Appended {
	g.t.Helper()
	typ, sv, data, err := contracts.Encode(v)
	if err != nil {
		g.t.Fatal(err)
	}
	e := events.Event{ID: events.NewID(), Type: typ, SchemaVersion: sv, Source: contracts.Source(ctxName),
		AggregateID: id, OccurredAt: at, CorrelationID: id, Data: data}
	d := events.Decision{Aggregate: events.AggregateRef{Context: ctxName, ID: id}, ExpectedVersion: ver,
		Events: []events.Event{e}, Fence: fence}
	if fence {
		d.Events[0].PolicyPosition = g.Policy
	}
	a, err := g.st.Append(ctx, d)
	if err != nil {
		g.t.Fatalf("append %s %s: %v", typ, id, err)
	}
	g.mu.Lock()
	g.Count++
	g.mu.Unlock()
	return a
}

func (g *Generator) createListings(rng *rand.Rand) {
	ctx := context.Background()
	for i := range g.cfg.Listings {
		ch := contracts.ChannelMarketplace
		if i%3 == 0 {
			ch = contracts.ChannelSocialCommerce
		}
		origin := contracts.OriginDomestic
		if i%5 == 0 {
			origin = contracts.OriginCrossBorder
		}
		l := contracts.ListingCreated{ListingID: fmt.Sprintf("l-%d", i), SellerID: fmt.Sprintf("s-%d", i%7),
			Title: fmt.Sprintf("item %d", i), Category: []string{"fashion", "books", "food"}[i%3], Channel: ch,
			Jurisdiction: "ID", Origin: origin, Price: contracts.Money{AmountMinor: int64(1000+rng.IntN(100000)) * 100, Currency: "IDR"},
			Stock: int64(10 + rng.IntN(100))}
		g.listings = append(g.listings, l)
		g.appendOne(ctx, "listing", l.ListingID, 0, l, DayStart.Add(-time.Hour+time.Duration(i)*time.Second), false)
	}
}

func (g *Generator) imposeFreeze(at time.Time, id string) {
	f := contracts.FreezeImposed{RuleID: id, Scope: contracts.Scope{Jurisdictions: []string{"ID"},
		Channels: []contracts.Channel{contracts.ChannelSocialCommerce}}, BlockedOperations: contracts.FreezeOperations,
		EffectiveAt: at, LegalBasis: "Permendag 31/2023", Issuer: "Kementerian Perdagangan RI"}
	a := g.appendOne(context.Background(), "policy", id, 0, f, DayStart.Add(-30*time.Minute), false)
	g.Policy = a.LastPosition
	// A policy batch ends with its fence record, which is then the head of
	// the policy subject that fenced decisions are checked against.
	if h, ok := g.st.(interface {
		PolicyHead(context.Context) (uint64, error)
	}); ok {
		head, err := h.PolicyHead(context.Background())
		if err != nil {
			g.t.Fatal(err)
		}
		g.Policy = head
	}
}

// runFlows runs the checkouts on several workers, so that positions
// interleave and business time is not monotonic in position.
func (g *Generator) runFlows(n, workers int, seed uint64) {
	var wg sync.WaitGroup
	first := g.next
	g.next += n
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)+100))
			for f := first + w; f < first+n; f += workers {
				g.flow(rng, f)
			}
		}()
	}
	wg.Wait()
}

func (g *Generator) flow(rng *rand.Rand, f int) {
	ctx := context.Background()
	at := DayStart.Add(time.Duration(float64(g.cfg.DaySpan) * float64(f) / float64(max(g.cfg.Flows, 1))))
	at = at.Add(time.Duration(rng.IntN(600)-300) * time.Second) // clocks disagree a little
	l := g.listings[rng.IntN(len(g.listings))]
	if l.Channel == contracts.ChannelSocialCommerce && !at.Before(FreezeAt) {
		return // a compliant service refuses it: nothing is appended
	}
	oid, pid, buyer := fmt.Sprintf("o-%d", f), fmt.Sprintf("p-%d", f), fmt.Sprintf("b-%d", rng.IntN(50))
	qty := int64(1 + rng.IntN(3))
	total := contracts.Money{AmountMinor: l.Price.AmountMinor * qty, Currency: l.Price.Currency}
	step := func() time.Time { at = at.Add(time.Duration(1+rng.IntN(90)) * time.Second); return at }
	g.appendOne(ctx, "order", oid, 0, contracts.OrderPlaced{OrderID: oid, BuyerID: buyer, ListingID: l.ListingID,
		SellerID: l.SellerID, Quantity: qty, UnitPrice: l.Price, Total: total, Channel: l.Channel,
		Jurisdiction: l.Jurisdiction, Category: l.Category, Origin: l.Origin}, step(), true)
	legs := []contracts.Posting{{Account: contracts.BuyerAccount(buyer), AmountMinor: -total.AmountMinor, Currency: total.Currency},
		{Account: contracts.EscrowAccount(oid), AmountMinor: total.AmountMinor, Currency: total.Currency}}
	g.appendOne(ctx, "payment", pid, 0, contracts.PaymentAuthorized{PaymentID: pid, OrderID: oid, BuyerID: buyer,
		SellerID: l.SellerID, Channel: l.Channel, Jurisdiction: l.Jurisdiction, Category: l.Category, Amount: total,
		PendingPostings: legs}, step(), true)
	if rng.IntN(10) == 0 {
		g.appendOne(ctx, "payment", pid, 1, contracts.PaymentVoided{PaymentID: pid, OrderID: oid, Amount: total, Reason: "buyer cancelled"}, step(), false)
		g.appendOne(ctx, "order", oid, 1, contracts.OrderCancelled{OrderID: oid, Reason: "buyer cancelled"}, step(), false)
		return
	}
	g.appendOne(ctx, "order", oid, 1, contracts.OrderConfirmed{OrderID: oid, PaymentID: pid}, step(), false)
	g.appendOne(ctx, "payment", pid, 1, contracts.PaymentCaptured{PaymentID: pid, OrderID: oid, Amount: total, Postings: legs}, step(), true)
	switch rng.IntN(4) {
	case 0:
		half := contracts.Money{AmountMinor: total.AmountMinor / 2, Currency: total.Currency}
		g.appendOne(ctx, "payment", pid, 2, contracts.PaymentRefunded{PaymentID: pid, OrderID: oid, RefundID: "r-1", Amount: half,
			Reason: "damaged", Postings: []contracts.Posting{
				{Account: contracts.EscrowAccount(oid), AmountMinor: -half.AmountMinor, Currency: half.Currency},
				{Account: contracts.AccountRefunds, AmountMinor: half.AmountMinor, Currency: half.Currency}}}, step(), false)
	case 1, 2:
		g.appendOne(ctx, "order", oid, 2, contracts.OrderShipped{OrderID: oid, Carrier: "JNE"}, step(), false)
		g.appendOne(ctx, "order", oid, 3, contracts.OrderCompleted{OrderID: oid}, step(), false)
		fee := total.AmountMinor / 20
		g.appendOne(ctx, "payment", pid, 2, contracts.PaymentSettled{PaymentID: pid, OrderID: oid, SellerID: l.SellerID,
			Gross: total, FeeMinor: fee, Net: contracts.Money{AmountMinor: total.AmountMinor - fee, Currency: total.Currency},
			Postings: []contracts.Posting{
				{Account: contracts.EscrowAccount(oid), AmountMinor: -total.AmountMinor, Currency: total.Currency},
				{Account: contracts.SellerPayableAccount(l.SellerID), AmountMinor: total.AmountMinor - fee, Currency: total.Currency},
				{Account: contracts.AccountPlatformFeeRevenue, AmountMinor: fee, Currency: total.Currency}}}, step(), false)
	}
}

// AppendViolation writes an order the freeze blocks, directly with the
// store and without the fence, under a stale policy position: the log as a
// broken service would leave it.
func AppendViolation(t testing.TB, st events.Store, orderID string, at time.Time) events.Appended {
	t.Helper()
	return AppendViolationUnder(t, st, orderID, at, 0)
}

// AppendViolationUnder is AppendViolation decided under policy position
// policy (the writer knew every policy event up to it).
func AppendViolationUnder(t testing.TB, st events.Store, orderID string, at time.Time, policy uint64) events.Appended {
	t.Helper()
	p := contracts.OrderPlaced{OrderID: orderID, BuyerID: "b-rogue", ListingID: "l-0", SellerID: "s-0", Quantity: 1,
		UnitPrice: contracts.Money{AmountMinor: 100000, Currency: "IDR"}, Total: contracts.Money{AmountMinor: 100000, Currency: "IDR"},
		Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID", Category: "fashion", Origin: contracts.OriginDomestic}
	typ, sv, data, err := contracts.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	a, err := st.Append(context.Background(), events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: orderID},
		Events: []events.Event{{ID: events.NewID(), Type: typ, SchemaVersion: sv, Source: "/ledger/rogue", AggregateID: orderID,
			OccurredAt: at, PolicyPosition: policy, Data: data}}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// ReadAll reads the whole log into memory with decoded payloads.
func ReadAll(t testing.TB, st events.Store) ([]events.Event, []any) {
	t.Helper()
	var evs []events.Event
	var ps []any
	for e, err := range st.Read(context.Background(), events.Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		p, err := models.DecodePayload(&e)
		if err != nil {
			t.Fatal(err)
		}
		evs, ps = append(evs, e), append(ps, p)
	}
	return evs, ps
}

// FoldMem folds in-memory events into fresh models: the reference.
func FoldMem(t testing.TB, evs []events.Event, ps []any, keep func(*events.Event) bool) map[string][]byte {
	t.Helper()
	ms, err := models.NewModels()
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if keep != nil && !keep(&evs[i]) {
			continue
		}
		for _, m := range ms {
			if err := m.Apply(evs[i], ps[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	out := map[string][]byte{}
	for _, m := range ms {
		b, err := m.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		out[m.Name()] = b
	}
	return out
}

// JetStreamWait bounds a fetch from a consumer in a test.
func JetStreamWait() jetstream.FetchOpt { return jetstream.FetchMaxWait(2 * time.Second) }

// StartNode starts a node on the data directory dir (lazy: without an
// fsync on every write) and returns its client URL and a function that
// stops it, flushing what it holds.
type StartNode func(t testing.TB, dir string, lazy bool) (url string, stop func())

// storedLog describes the log kept in a data directory by OpenStored.
type storedLog struct {
	Config    Config `json:"config"`
	Events    int    `json:"events"`
	Positions uint64 `json:"positions"`
}

// storedLogFile, in the data directory, is written once the log is
// complete: a directory without it holds a log cut short, which is thrown
// away.
const storedLogFile = "bench-log.json"

// OpenStored opens the log that cfg generates, kept in the data directory
// dir between runs, and returns it with the number of events generated.
// When dir holds no complete log of cfg, it writes one first: straight to
// the store with cfg.Workers writers, on a node without an fsync per write
// (a bench's log, not a ledger's), stopped and started again once written,
// so the run reads it as it would any log on disk. Writing a million
// events takes minutes; a run that only writes it leaves the generator's
// memory out of the run that reads it.
func OpenStored(t testing.TB, dir string, cfg Config, start StartNode) (*Env, int) {
	t.Helper()
	meta := filepath.Join(dir, storedLogFile)
	var have storedLog
	if b, err := os.ReadFile(meta); err == nil && json.Unmarshal(b, &have) == nil && have.Config == cfg {
		url, stop := start(t, dir, false)
		t.Cleanup(stop)
		env := Open(t, url, dir)
		if head, err := env.Store.LastPosition(context.Background()); err != nil || head != have.Positions {
			t.Fatalf("the log in %s ends at position %d (%v), its %s says %d: remove the directory to write it again",
				dir, head, err, storedLogFile, have.Positions)
		}
		return env, have.Events
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	url, stop := start(t, dir, true)
	env := Open(t, url, dir)
	t0 := time.Now()
	g := Generate(t, env.Store, cfg)
	head, err := env.Store.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stop()
	t.Logf("wrote %d events (positions %d) to %s in %s", g.Count, head, dir, time.Since(t0).Round(time.Second))
	b, _ := json.Marshal(storedLog{Config: cfg, Events: g.Count, Positions: head})
	if err := os.WriteFile(meta, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return OpenStored(t, dir, cfg, start)
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/services/order"
)

// The checkout benchmark's shape: 64 HTTP clients, each running checkouts
// back to back for benchSeconds (LEDGER_BENCH_SECONDS overrides it) over
// benchListings listings (LEDGER_BENCH_LISTINGS overrides it: 1 puts every
// client on one listing, a flash sale), on the embedded default with fsync
// on every write.
const (
	benchClients  = 64
	benchSeconds  = 10
	benchListings = 256
	rawBatchMsgs  = 64  // messages per raw atomic batch
	rawBatches    = 100 // raw batches measured
	rawMsgBytes   = 512
)

// benchServe runs `ledger serve` (all four services, embedded server, fsync
// always) in-process on a temporary data directory and random ports, and
// returns its HTTP base URL and NATS URL once /readyz answers. It stops
// with tb's cleanup.
func benchServe(tb testing.TB, clients int) (base, natsURL, dataDir string) {
	tb.Helper()
	g := &globals{dataDir: tb.TempDir()}
	httpClient.Transport = bearer{token: issueTestToken(tb, g.dataDir, "operator"), next: benchTransport}
	// The benchmark's clients share one token: let it have them all in flight.
	s := startServed(tb, g, &serveOpts{perClient: clients}, http.DefaultClient)
	return s.base, s.info.NATS, g.dataDir
}

// rawAtomicBatchRate publishes rawBatches atomic batches of rawBatchMsgs
// messages straight to JetStream, on subjects outside the event space, and
// returns messages per second: what the server alone does on this machine.
func rawAtomicBatchRate(tb testing.TB, nc *nats.Conn) float64 {
	tb.Helper()
	body := bytes.Repeat([]byte("x"), rawMsgBytes)
	start := time.Now()
	for range rawBatches {
		id := events.NewID()
		for j := 1; j <= rawBatchMsgs; j++ {
			m := nats.NewMsg("ledger.raw._bench." + strconv.Itoa(j))
			m.Data = body
			m.Header.Set("Nats-Batch-Id", id)
			m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(j))
			if j < rawBatchMsgs {
				if err := nc.PublishMsg(m); err != nil {
					tb.Fatal(err)
				}
				continue
			}
			m.Header.Set("Nats-Batch-Commit", "1")
			resp, err := nc.RequestMsg(m, 10*time.Second)
			if err != nil {
				tb.Fatal(err)
			}
			var ack struct {
				Error *struct {
					Description string `json:"description"`
				} `json:"error"`
			}
			if json.Unmarshal(resp.Data, &ack); ack.Error != nil {
				tb.Fatalf("raw atomic batch: %s", ack.Error.Description)
			}
		}
	}
	return float64(rawBatches*rawBatchMsgs) / time.Since(start).Seconds()
}

// httpClient keeps one connection per benchmark client alive.
// benchServe sets its token on it.
var (
	benchTransport = &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}
	httpClient     = &http.Client{Transport: benchTransport, Timeout: 30 * time.Second}
)

// postCommand sends one command and returns the status and body.
func postCommand(base, name string, cmd any) (int, []byte, error) {
	body, _ := json.Marshal(cmd)
	resp, err := httpClient.Post(base+"/v1/commands/"+name, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func streamLastSeq(tb testing.TB, js jetstream.JetStream) uint64 {
	s, err := js.Stream(context.Background(), events.StreamName)
	if err != nil {
		tb.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// quantile returns the q-quantile of sorted durations, in milliseconds.
func quantile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(q*float64(len(sorted)-1))]) / 1e6
}

// BenchmarkCheckoutHTTP measures checkouts per second through the HTTP API
// of `ledger serve`, in two ways:
//
//   - managed: the client sends order.place, the checkout process manager
//     reserves the stock, authorizes the payment, confirms the order and
//     captures; the client sees order.confirmed, then payment.captured in
//     the log. This is the product's flow. It runs at 16, 64 and 256
//     clients (LEDGER_BENCH_CLIENTS="16,64,256" overrides them) on one
//     server, so the figures form a curve, not a point.
//   - driven: 64 clients send every step themselves (order.place,
//     listing.reserve_stock, payment.authorize, order.confirm,
//     payment.capture) with the manager's idempotency keys, while the
//     manager drives the same steps and is answered with the first result.
//
// Each load reports checkouts/s and their p50 and p99 latency, the latency
// of place+authorize+capture alone, the raw JetStream atomic-batch rate
// measured on the same server in the same run, the CPU used, and where a
// checkout's time goes: every step's interval read from the recorded
// instants of its events in the log (see checkoutBreakdown), printed as a
// table and in BENCH_JSON, and written whole as JSON to LEDGER_BENCH_OUT
// when it is set.
func BenchmarkCheckoutHTTP(b *testing.B) {
	b.Run("managed", func(b *testing.B) { benchCheckout(b, managed, clientCounts(b)) })
	b.Run("driven", func(b *testing.B) { benchCheckout(b, driven, []int{benchClients}) })
}

type checkoutMode string

const (
	managed checkoutMode = "managed"
	driven  checkoutMode = "driven"
)

// clientCounts returns the client counts of the managed curve.
func clientCounts(b *testing.B) []int {
	env := os.Getenv("LEDGER_BENCH_CLIENTS")
	if env == "" {
		return []int{16, benchClients, 256}
	}
	var out []int
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 4096 {
			b.Fatalf("LEDGER_BENCH_CLIENTS: %q is not a client count from 1 to 4096 (example: 16,64,256)", f)
		}
		out = append(out, n)
	}
	return out
}

func benchCheckout(b *testing.B, mode checkoutMode, counts []int) {
	seconds := benchSeconds
	if s, err := strconv.Atoi(os.Getenv("LEDGER_BENCH_SECONDS")); err == nil && s > 0 {
		seconds = s
	}
	listings := benchListings
	if n, err := strconv.Atoi(os.Getenv("LEDGER_BENCH_LISTINGS")); err == nil && n > 0 {
		listings = n
	}
	spans := ""
	if os.Getenv("LEDGER_BENCH_SPANS") == "1" {
		// The finer breakdown: every span the run exports (docs/operations.md,
		// tracing), by name. Tracing costs a little: compare its checkouts/s
		// with a run without it.
		spans = b.TempDir() + "/spans.jsonl"
		b.Setenv("OTEL_TRACES_EXPORTER", "console")
		b.Setenv(envTracesFile, spans)
	}
	for range b.N {
		base, js, ended, raw := servedForCheckouts(b, slices.Max(counts), listings)
		if b.Failed() {
			return
		}
		var curve []map[string]any
		for _, clients := range counts {
			res := checkoutLoad(b, mode, base, js, ended, clients, listings, seconds, raw)
			if res == nil {
				return
			}
			curve = append(curve, res)
		}
		if spans != "" {
			// Let the batch span processor write what it holds.
			time.Sleep(6 * time.Second)
			sum := spanBreakdown(b, spans)
			for i := range curve {
				curve[i]["spans"] = sum
			}
		}
		if out := os.Getenv("LEDGER_BENCH_OUT"); out != "" {
			body, _ := json.MarshalIndent(map[string]any{"bench": "checkout_http", "mode": mode, "runs": curve}, "", "  ")
			if err := os.WriteFile(out, append(body, '\n'), 0o644); err != nil {
				b.Fatalf("LEDGER_BENCH_OUT: %v", err)
			}
			fmt.Printf("wrote %s\n", out)
		}
	}
}

// servedForCheckouts starts `ledger serve` for clients clients (benchServe),
// measures the raw atomic-batch rate on its server, creates the listings
// and watches the checkouts' ends; b has failed when a listing could not be
// created.
func servedForCheckouts(b *testing.B, clients, listings int) (base string, js jetstream.JetStream, ended *checkoutEnds, raw float64) {
	base, natsURL, dataDir := benchServe(b, clients)
	nc := connectAs(b, natsURL, dataDir, auth.RoleOperator)
	js, _ = jetstream.New(nc)
	raw = rawAtomicBatchRate(b, nc)
	if createBenchListings(b, base, listings) {
		ended = watchCheckouts(b, js)
	}
	return base, js, ended, raw
}

// createBenchListings creates the bench's listings (ample stock, both
// channels) through the HTTP API; false when one failed.
func createBenchListings(b *testing.B, base string, listings int) bool {
	idr := func(m int64) contracts.Money { return contracts.Money{AmountMinor: m, Currency: "IDR"} }
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Go(func() {
			for i := c; i < listings; i += 16 {
				code, body, err := postCommand(base, "listing.create", contracts.CreateListing{ListingID: fmt.Sprintf("bl-%03d", i),
					SellerID: fmt.Sprintf("seller-%02d", i%32), Title: "bench item", Category: "fashion",
					Channel: contracts.Channels[i%2], Jurisdiction: "ID", Origin: contracts.OriginDomestic,
					Price: idr(int64(10_000+i) * 100), Stock: 1_000_000_000})
				if err != nil || code != http.StatusOK {
					b.Errorf("listing.create: %d %s %v", code, body, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return !b.Failed()
}

// loadRounds counts the loads run in this process.
var loadRounds atomic.Int64

// checkoutLoad runs clients clients doing checkouts back to back for
// seconds, prints the figures and returns them (nil when a checkout
// failed).
func checkoutLoad(b *testing.B, mode checkoutMode, base string, js jetstream.JetStream, ended *checkoutEnds,
	clients, listings, seconds int, raw float64) map[string]any {
	type sample struct {
		id                  string
		start, placed, seen time.Time
		checkout, pac       time.Duration
	}
	samples := make([][]sample, clients)
	errs := make([]error, clients)
	round := loadRounds.Add(1) // order ids differ from one load to the next on the same server
	before := streamLastSeq(b, js)
	cpu0, busy0 := processCPU(), machineCPU()
	stop := time.Now().Add(time.Duration(seconds) * time.Second)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for n := 0; time.Now().Before(stop); n++ {
				id := fmt.Sprintf("bo-%d-%d-%03d-%06d", round, clients, c, n)
				listingID := fmt.Sprintf("bl-%03d", (c*7+n)%listings)
				var pac time.Duration
				step := func(name string, cmd any, out any, blocked bool) error {
					t0 := time.Now()
					code, body, err := postCommand(base, name, cmd)
					if blocked {
						pac += time.Since(t0)
					}
					if err != nil || code != http.StatusOK {
						return fmt.Errorf("%s %s: %d %s %v", name, id, code, body, err)
					}
					if out != nil {
						return json.Unmarshal(body, out)
					}
					return nil
				}
				t0 := time.Now()
				var placed struct {
					State order.Order `json:"state"`
				}
				done := ended.expect(id)
				err := step("order.place", contracts.PlaceOrder{OrderID: id, BuyerID: "buyer-" + id, ListingID: listingID, Quantity: 1}, &placed, true)
				tPlaced := time.Now()
				o := placed.State
				if err == nil && mode == driven {
					err = step("listing.reserve_stock", contracts.ReserveStock{ListingID: o.ListingID, OrderID: o.ID, Quantity: o.Quantity,
						IdempotencyKey: checkout.StepKey(o.ID, "reserve")}, nil, false)
					if err == nil {
						err = step("payment.authorize", contracts.AuthorizePayment{PaymentID: contracts.PaymentID(o.ID), OrderID: o.ID,
							BuyerID: o.BuyerID, SellerID: o.SellerID, Channel: o.Channel, Jurisdiction: o.Jurisdiction, Category: o.Category,
							Amount: o.Total, IdempotencyKey: checkout.StepKey(o.ID, "authorize")}, nil, true)
					}
				}
				var seen time.Time
				if err == nil && mode == managed {
					// The checkout process manager reserves, authorizes and
					// confirms; the client sees the confirmation in the log.
					t1 := time.Now()
					select {
					case typ := <-done:
						if typ != "order.confirmed" {
							err = fmt.Errorf("checkout %s ended with %s", id, typ)
						}
					case <-time.After(30 * time.Second):
						err = fmt.Errorf("checkout %s: no confirmation within 30 s", id)
					}
					seen = time.Now()
					if err == nil {
						// ... and captures on confirmation: the checkout is
						// done when the capture is in the log.
						select {
						case typ := <-done:
							if typ != "payment.captured" {
								err = fmt.Errorf("checkout %s: %s after the confirmation", id, typ)
							}
						case <-time.After(30 * time.Second):
							err = fmt.Errorf("checkout %s: no capture within 30 s of the confirmation", id)
						}
					}
					pac += time.Since(t1)
				}
				if err == nil && mode == driven {
					err = step("order.confirm", contracts.ConfirmOrder{OrderID: o.ID, PaymentID: contracts.PaymentID(o.ID),
						IdempotencyKey: checkout.StepKey(o.ID, "confirm")}, nil, false)
				}
				if err == nil && mode == driven {
					// The checkout captures on confirmation with this key too;
					// whichever comes first decides.
					err = step("payment.capture", contracts.CapturePayment{PaymentID: contracts.PaymentID(o.ID),
						IdempotencyKey: checkout.StepKey(o.ID, "capture")}, nil, true)
				}
				ended.forget(id)
				if err != nil {
					errs[c] = err
					return
				}
				samples[c] = append(samples[c], sample{id: id, start: t0, placed: tPlaced, seen: seen, checkout: time.Since(t0), pac: pac})
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu, busy := processCPU()-cpu0, machineCPU().sub(busy0)
	stored := streamLastSeq(b, js) - before
	for _, err := range errs {
		if err != nil {
			b.Error(err)
		}
	}
	all := slices.Concat(samples...)
	if len(all) == 0 || b.Failed() {
		b.Error("no checkout completed")
		return nil
	}
	var co, pac []time.Duration
	br := newBreakdown()
	for _, s := range all {
		co, pac = append(co, s.checkout), append(pac, s.pac)
		br.add(ended.trace(s.id), s.start, s.placed, s.seen, s.start.Add(s.checkout))
	}
	slices.Sort(co)
	slices.Sort(pac)
	rate := float64(len(all)) / elapsed.Seconds()
	msgRate := float64(stored) / elapsed.Seconds()
	res := map[string]any{
		"bench": "checkout_http", "mode": mode, "clients": clients, "listings": listings, "seconds": round2(elapsed.Seconds()), "checkouts": len(all),
		"checkouts_per_s": round2(rate), "checkout_p50_ms": round2(quantile(co, 0.50)), "checkout_p99_ms": round2(quantile(co, 0.99)),
		"place_authorize_capture_p50_ms": round2(quantile(pac, 0.50)), "place_authorize_capture_p99_ms": round2(quantile(pac, 0.99)),
		"stream_msgs_per_s": round2(msgRate), "raw_atomic_batch_msgs_per_s": round2(raw), "raw_batch_msgs": rawBatchMsgs,
		"stream_to_raw_ratio": round2(msgRate / raw), "cpu_cores_used": round2(cpu.Seconds() / elapsed.Seconds()),
		"machine_cpu_busy": round2(busy.fraction()), "cores": runtime.NumCPU(),
		"target_checkouts_per_s": 1000, "target_p99_ms": 60, "breakdown": br.summary(),
	}
	out, _ := json.Marshal(res)
	fmt.Printf("checkouts (%s: place, reserve, authorize, confirm, capture) over HTTP, %d clients on %d listings, fsync always: %.0f/s  p50 %.1f ms  p99 %.1f ms (target >= 1000/s, p99 <= 60 ms)\n",
		mode, clients, listings, rate, quantile(co, 0.50), quantile(co, 0.99))
	fmt.Printf("place+authorize+capture latency:  p50 %.1f ms  p99 %.1f ms\n", quantile(pac, 0.50), quantile(pac, 0.99))
	fmt.Printf("stream messages stored: %.0f/s;  raw atomic batch (%d msgs/batch) on the same server: %.0f msgs/s;  ratio %.2f\n",
		msgRate, rawBatchMsgs, raw, msgRate/raw)
	fmt.Printf("CPU: this process used %.2f of %d cores; the machine was %.0f%% busy\n", cpu.Seconds()/elapsed.Seconds(), runtime.NumCPU(), 100*busy.fraction())
	br.print(os.Stdout)
	fmt.Printf("BENCH_JSON %s\n", out)
	b.ReportMetric(rate, fmt.Sprintf("checkouts/s@%d", clients))
	b.ReportMetric(quantile(co, 0.99), fmt.Sprintf("p99_ms@%d", clients))
	return res
}

// checkoutEnds routes the end of each watched checkout (order.confirmed,
// order.cancelled or order.rejected, read from the log) to its client, and
// keeps the instants the log recorded each step of a checkout at.
type checkoutEnds struct {
	mu      sync.Mutex
	waiting map[string]chan string
	traces  map[string]*checkoutTrace
}

// checkoutTrace is one checkout as the log recorded it: the server's
// instant of each step's event, and when the watcher received the
// confirmation.
type checkoutTrace struct {
	stored   map[string]time.Time // event type -> recorded instant
	received time.Time            // order.confirmed delivered to the watcher
}

func (c *checkoutEnds) expect(id string) <-chan string {
	ch := make(chan string, 2)
	c.mu.Lock()
	c.waiting[id] = ch
	c.mu.Unlock()
	return ch
}

func (c *checkoutEnds) forget(id string) {
	c.mu.Lock()
	delete(c.waiting, id)
	c.mu.Unlock()
}

// trace returns what the log recorded of checkout id. The capture may
// reach the watcher a moment after the client's own capture was answered:
// trace waits for it, briefly.
func (c *checkoutEnds) trace(id string) checkoutTrace {
	deadline := time.Now().Add(2 * time.Second)
	for {
		c.mu.Lock()
		t := c.traces[id]
		var out checkoutTrace
		if t != nil {
			out = checkoutTrace{stored: maps.Clone(t.stored), received: t.received}
		}
		c.mu.Unlock()
		if _, ok := out.stored["payment.captured"]; ok || time.Now().After(deadline) {
			return out
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// watchedSteps are the events of a checkout the watcher records, with the
// subject filter that selects them.
var watchedSteps = map[string]string{
	"order.placed":           "ledger.order.*.placed",
	"listing.stock_reserved": "ledger.listing.*.stock_reserved",
	"payment.authorized":     "ledger.payment.*.authorized",
	"order.confirmed":        "ledger.order.*.confirmed",
	"payment.captured":       "ledger.payment.*.captured",
	"order.cancelled":        "ledger.order.*.cancelled",
	"order.rejected":         "ledger.order.*.rejected",
}

// watchCheckouts follows the steps of checkouts in the log from now on.
func watchCheckouts(b *testing.B, js jetstream.JetStream) *checkoutEnds {
	ends := &checkoutEnds{waiting: map[string]chan string{}, traces: map[string]*checkoutTrace{}}
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy,
		FilterSubjects: slices.Collect(maps.Values(watchedSteps))})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		received := time.Now()
		// ledger.<context>.<id>.<what>
		parts := strings.Split(m.Subject(), ".")
		meta, err := m.Metadata()
		if len(parts) != 4 || err != nil {
			return
		}
		var body struct {
			OrderID string `json:"order_id"`
		}
		if json.Unmarshal(m.Data(), &body) != nil || body.OrderID == "" {
			return
		}
		typ := parts[1] + "." + parts[3]
		ends.mu.Lock()
		t := ends.traces[body.OrderID]
		if t == nil {
			t = &checkoutTrace{stored: map[string]time.Time{}}
			ends.traces[body.OrderID] = t
		}
		t.stored[typ] = meta.Timestamp
		if typ == "order.confirmed" {
			t.received = received
		}
		ch := ends.waiting[body.OrderID]
		ends.mu.Unlock()
		if ch != nil && (parts[1] == "order" && parts[3] != "placed" || typ == "payment.captured") {
			select {
			case ch <- typ:
			default:
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cc.Stop)
	return ends
}

// checkoutBreakdown splits a checkout's time into the intervals between
// the instants the client and the log recorded: the client's request until
// the server stored the order, the answer's way back, each step of the
// checkout from one stored event to the next (the process manager's
// delivery, the request to the service, its decision and the append), and
// the confirmation's way to the client. Intervals come from one clock (the
// server runs in this process).
type checkoutBreakdown struct {
	stages map[string][]time.Duration
}

// breakdownStages are the intervals, in the order of a checkout.
var breakdownStages = []struct{ name, what string }{
	{"place_request", "client sends order.place -> order.placed stored (HTTP in, decide, queue, batch, store)"},
	{"place_answer", "order.placed stored -> client has the answer (ack, HTTP out)"},
	{"placed_to_reserved", "order.placed -> listing.stock_reserved stored (follower delivery, request, decide, append)"},
	{"reserved_to_authorized", "listing.stock_reserved -> payment.authorized stored"},
	{"authorized_to_confirmed", "payment.authorized -> order.confirmed stored"},
	{"confirmed_to_captured", "order.confirmed -> payment.captured stored"},
	{"confirmed_to_watcher", "order.confirmed stored -> delivered to a follower of the log"},
	{"confirmed_to_client", "order.confirmed stored -> the client waiting for it learns it"},
	{"captured_to_client", "payment.captured stored -> the client waiting for it learns it (managed)"},
	{"client_capture", "client learns the confirmation -> its payment.capture answered (driven)"},
	{"total", "client sends order.place -> the checkout is done for the client"},
}

func newBreakdown() *checkoutBreakdown {
	return &checkoutBreakdown{stages: map[string][]time.Duration{}}
}

func (br *checkoutBreakdown) add(t checkoutTrace, start, placed, seen, end time.Time) {
	at := func(typ string) time.Time { return t.stored[typ] }
	span := func(name string, from, to time.Time) {
		if !from.IsZero() && !to.IsZero() {
			br.stages[name] = append(br.stages[name], to.Sub(from))
		}
	}
	span("place_request", start, at("order.placed"))
	span("place_answer", at("order.placed"), placed)
	span("placed_to_reserved", at("order.placed"), at("listing.stock_reserved"))
	span("reserved_to_authorized", at("listing.stock_reserved"), at("payment.authorized"))
	span("authorized_to_confirmed", at("payment.authorized"), at("order.confirmed"))
	span("confirmed_to_captured", at("order.confirmed"), at("payment.captured"))
	span("confirmed_to_watcher", at("order.confirmed"), t.received)
	span("confirmed_to_client", at("order.confirmed"), seen)
	if t.stored["payment.captured"].Before(seen) || seen.IsZero() {
		span("client_capture", seen, end)
	} else {
		span("captured_to_client", at("payment.captured"), end)
	}
	span("total", start, end)
}

// summary returns each stage's p50 and p99 in milliseconds.
func (br *checkoutBreakdown) summary() map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for _, s := range breakdownStages {
		d := slices.Sorted(slices.Values(br.stages[s.name]))
		if len(d) == 0 {
			continue
		}
		out[s.name] = map[string]float64{"p50_ms": round2(quantile(d, 0.50)), "p99_ms": round2(quantile(d, 0.99)), "n": float64(len(d))}
	}
	return out
}

func (br *checkoutBreakdown) print(w io.Writer) {
	sum := br.summary()
	fmt.Fprintf(w, "%-24s %9s %9s  %s\n", "stage", "p50 ms", "p99 ms", "interval")
	for _, s := range breakdownStages {
		if v, ok := sum[s.name]; ok {
			fmt.Fprintf(w, "%-24s %9.1f %9.1f  %s\n", s.name, v["p50_ms"], v["p99_ms"], s.what)
		}
	}
}

// processCPU returns the CPU time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuTicks is the machine's CPU time from /proc/stat: busy and total.
type cpuTicks struct{ busy, total uint64 }

func machineCPU() cpuTicks {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTicks{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var t cpuTicks
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		t.total += n
		if i != 3 && i != 4 { // idle, iowait
			t.busy += n
		}
	}
	return t
}

func (t cpuTicks) sub(o cpuTicks) cpuTicks {
	return cpuTicks{busy: t.busy - o.busy, total: t.total - o.total}
}

func (t cpuTicks) fraction() float64 {
	if t.total == 0 {
		return 0
	}
	return float64(t.busy) / float64(t.total)
}

func round2(f float64) float64 { return float64(int(f*100+0.5)) / 100 }

// spanBreakdown prints the duration of the run's spans by name (p50, p99,
// count) and returns them: the inside of each step of the breakdown (the
// HTTP request, the command's load, decide and append, the committer's
// batch, the checkout's delivery and steps, the services' requests).
func spanBreakdown(b *testing.B, path string) map[string]map[string]float64 {
	f, err := os.Open(path)
	if err != nil {
		b.Fatalf("spans: %v", err)
	}
	defer f.Close()
	byName := map[string][]time.Duration{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var s struct {
			Name               string
			StartTime, EndTime time.Time
		}
		if json.Unmarshal(sc.Bytes(), &s) == nil && s.Name != "" && !s.EndTime.Before(s.StartTime) {
			byName[s.Name] = append(byName[s.Name], s.EndTime.Sub(s.StartTime))
		}
	}
	out := map[string]map[string]float64{}
	names := slices.Sorted(maps.Keys(byName))
	fmt.Printf("%-40s %9s %9s %8s\n", "span", "p50 ms", "p99 ms", "count")
	for _, n := range names {
		d := byName[n]
		slices.Sort(d)
		out[n] = map[string]float64{"p50_ms": round2(quantile(d, 0.50)), "p99_ms": round2(quantile(d, 0.99)), "n": float64(len(d))}
		fmt.Printf("%-40s %9.2f %9.2f %8d\n", n, quantile(d, 0.50), quantile(d, 0.99), len(d))
	}
	return out
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
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
func benchServe(tb testing.TB) (base, natsURL, dataDir string) {
	tb.Helper()
	g := &globals{dataDir: tb.TempDir()}
	httpClient.Transport = bearer{token: issueTestToken(tb, g.dataDir, "operator"), next: benchTransport}
	// The benchmark's clients share one token: let it have them all in flight.
	s := startServed(tb, g, &serveOpts{perClient: benchClients}, http.DefaultClient)
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
// of `ledger serve` from 64 concurrent clients, in two ways:
//
//   - managed: the client sends order.place, the checkout process manager
//     reserves the stock, authorizes the payment and confirms the order, the
//     client sees order.confirmed in the log and sends payment.capture with
//     the manager's key (the manager captures on confirmation too). This
//     is the product's flow.
//   - driven: the client sends every step itself (order.place,
//     listing.reserve_stock, payment.authorize, order.confirm,
//     payment.capture) with the manager's idempotency keys, while the
//     manager drives the same steps and is answered with the first result.
//
// Each reports checkouts/s and their p50 and p99 latency, the latency of
// place+authorize+capture alone, and the raw JetStream atomic-batch rate
// measured on the same server in the same run.
func BenchmarkCheckoutHTTP(b *testing.B) {
	b.Run("managed", func(b *testing.B) { benchCheckout(b, managed) })
	b.Run("driven", func(b *testing.B) { benchCheckout(b, driven) })
}

type checkoutMode string

const (
	managed checkoutMode = "managed"
	driven  checkoutMode = "driven"
)

func benchCheckout(b *testing.B, mode checkoutMode) {
	seconds := benchSeconds
	if s, err := strconv.Atoi(os.Getenv("LEDGER_BENCH_SECONDS")); err == nil && s > 0 {
		seconds = s
	}
	listings := benchListings
	if n, err := strconv.Atoi(os.Getenv("LEDGER_BENCH_LISTINGS")); err == nil && n > 0 {
		listings = n
	}
	for range b.N {
		base, natsURL, dataDir := benchServe(b)
		nc := connectAs(b, natsURL, dataDir, auth.RoleOperator)
		js, _ := jetstream.New(nc)
		raw := rawAtomicBatchRate(b, nc)

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
		if b.Failed() {
			return
		}

		type sample struct{ checkout, pac time.Duration }
		samples := make([][]sample, benchClients)
		errs := make([]error, benchClients)
		ended := watchCheckouts(b, js)
		before := streamLastSeq(b, js)
		stop := time.Now().Add(time.Duration(seconds) * time.Second)
		start := time.Now()
		for c := range benchClients {
			wg.Go(func() {
				for n := 0; time.Now().Before(stop); n++ {
					id := fmt.Sprintf("bo-%02d-%06d", c, n)
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
						pac += time.Since(t1)
					}
					if err == nil && mode == driven {
						err = step("order.confirm", contracts.ConfirmOrder{OrderID: o.ID, PaymentID: contracts.PaymentID(o.ID),
							IdempotencyKey: checkout.StepKey(o.ID, "confirm")}, nil, false)
					}
					if err == nil {
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
					samples[c] = append(samples[c], sample{time.Since(t0), pac})
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		stored := streamLastSeq(b, js) - before
		for _, err := range errs {
			if err != nil {
				b.Error(err)
			}
		}
		all := slices.Concat(samples...)
		if len(all) == 0 {
			b.Fatal("no checkout completed")
		}
		var co, pac []time.Duration
		for _, s := range all {
			co, pac = append(co, s.checkout), append(pac, s.pac)
		}
		slices.Sort(co)
		slices.Sort(pac)
		rate := float64(len(all)) / elapsed.Seconds()
		msgRate := float64(stored) / elapsed.Seconds()
		res := map[string]any{
			"bench": "checkout_http", "mode": mode, "clients": benchClients, "listings": listings, "seconds": round2(elapsed.Seconds()), "checkouts": len(all),
			"checkouts_per_s": round2(rate), "checkout_p50_ms": round2(quantile(co, 0.50)), "checkout_p99_ms": round2(quantile(co, 0.99)),
			"place_authorize_capture_p50_ms": round2(quantile(pac, 0.50)), "place_authorize_capture_p99_ms": round2(quantile(pac, 0.99)),
			"stream_msgs_per_s": round2(msgRate), "raw_atomic_batch_msgs_per_s": round2(raw), "raw_batch_msgs": rawBatchMsgs,
			"stream_to_raw_ratio": round2(msgRate / raw), "target_checkouts_per_s": 1500, "target_p99_ms": 50,
		}
		out, _ := json.Marshal(res)
		fmt.Printf("checkouts (%s: place, reserve, authorize, confirm, capture) over HTTP, %d clients on %d listings, fsync always: %.0f/s  p50 %.1f ms  p99 %.1f ms (target >= 1500/s, p99 <= 50 ms)\n",
			mode, benchClients, listings, rate, quantile(co, 0.50), quantile(co, 0.99))
		fmt.Printf("place+authorize+capture latency:  p50 %.1f ms  p99 %.1f ms\n", quantile(pac, 0.50), quantile(pac, 0.99))
		fmt.Printf("stream messages stored: %.0f/s;  raw atomic batch (%d msgs/batch) on the same server: %.0f msgs/s;  ratio %.2f\n",
			msgRate, rawBatchMsgs, raw, msgRate/raw)
		fmt.Printf("BENCH_JSON %s\n", out)
		b.ReportMetric(rate, "checkouts/s")
		b.ReportMetric(quantile(co, 0.99), "p99_ms")
	}
}

// checkoutEnds routes the end of each watched checkout (order.confirmed,
// order.cancelled or order.rejected, read from the log) to its client.
type checkoutEnds struct {
	mu      sync.Mutex
	waiting map[string]chan string
}

func (c *checkoutEnds) expect(id string) <-chan string {
	ch := make(chan string, 1)
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

// watchCheckouts follows the ends of checkouts in the log from now on.
func watchCheckouts(b *testing.B, js jetstream.JetStream) *checkoutEnds {
	ends := &checkoutEnds{waiting: map[string]chan string{}}
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy,
		FilterSubjects: []string{"ledger.order.*.confirmed", "ledger.order.*.cancelled", "ledger.order.*.rejected"}})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		// ledger.order.<id>.<what>
		parts := strings.Split(m.Subject(), ".")
		if len(parts) != 4 {
			return
		}
		ends.mu.Lock()
		ch := ends.waiting[parts[2]]
		ends.mu.Unlock()
		if ch != nil {
			select {
			case ch <- "order." + parts[3]:
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

func round2(f float64) float64 { return float64(int(f*100+0.5)) / 100 }

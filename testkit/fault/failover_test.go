package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/services/order"
	"github.com/marketledger/ledger/testkit"
	"github.com/marketledger/ledger/testkit/checkoutrun"
	"github.com/marketledger/ledger/testkit/invariant"
)

// Bounds of the failover test; every wait is bounded by failoverTimeout.
const (
	failoverTimeout   = 90 * time.Second
	failoverClients   = 12
	failoverListings  = 4
	failoverBeforeKil = 30
	failoverAfterKill = 30
)

// TestLeaderFailoverUnderLoadLosesNoAcknowledgedEvent runs three
// nats-server processes as a JetStream cluster with the LEDGER stream on
// three replicas, and the listing, order and payment services as three
// `ledger serve --nats` processes. HTTP clients place orders, sending
// each command to the process that runs its service, and the order
// process's checkout takes each order to its capture; the process of the
// stream leader is killed with SIGKILL during the load. A new leader is
// elected, the clients' retries (same idempotency keys) go through, more
// checkouts complete, and every event acknowledged to a client is in the
// log, once, with its chain intact. Once the checkout has settled, the log
// shows every order placed before and after the kill captured or ended
// with nothing held.
func TestLeaderFailoverUnderLoadLosesNoAcknowledgedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs nats-server and ledger processes")
	}
	natsBin := testkit.BuildNATSServer(t)
	ledgerBin := testkit.GoBuild(t, "../../cmd/ledger", ".", "ledger")
	ctx, cancel := context.WithTimeout(context.Background(), failoverTimeout)
	defer cancel()

	access := makeLedgerAccess(t, ledgerBin)
	// Three servers with the ledger's users (the accounts block from
	// `ledger credentials server-config`); cleanup kills those still running.
	nodes := testkit.StartNATSProcesses(t, natsBin, testkit.NATSProcessesConfig{Nodes: 3, ClusterName: "fault", Extra: access.accounts})
	var urls []string
	for _, nd := range nodes {
		urls = append(urls, nd.URL)
	}
	all := strings.Join(urls, ",")
	operator := nats.UserCredentials(access.credsFile("operator"))
	nc, err := nats.Connect(all, operator, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The meta leader is elected after the routes form: until then stream
	// creation answers "unavailable", so it is retried within the bound.
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := events.EnsureStream(cctx, js, 3)
		ccancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("create the LEDGER stream on three replicas: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // no event announces the meta leader to a client
	}

	procs := map[string]*ledgerServe{}
	for _, svc := range []string{contracts.ServiceListing, contracts.ServicePayment, contracts.ServiceOrder} {
		procs[svc] = startLedgerServe(ctx, t, ledgerBin, all, svc, access)
	}
	c := &httpClient{hc: &http.Client{Timeout: 10 * time.Second, Transport: bearer{access.token}}, base: map[string]string{}}
	for svc, p := range procs {
		c.base[svc] = "http://" + p.http
	}
	for i := range failoverListings {
		id := fmt.Sprintf("fo-l-%d", i)
		code, b, err := c.send(ctx, "listing.create", id, "", contracts.CreateListing{ListingID: id, SellerID: "seller-1", Title: "Teak stool",
			Category: "home", Channel: contracts.ChannelMarketplace, Jurisdiction: "ID", Origin: contracts.OriginDomestic,
			Price: contracts.Money{AmountMinor: 250_000_00, Currency: "IDR"}, Stock: 1_000_000, IdempotencyKey: "create-" + id})
		if err != nil || code != http.StatusOK {
			t.Fatalf("listing.create: %d %s %v", code, b, err)
		}
	}

	stop := make(chan struct{})
	errs := make(chan error, failoverClients)
	var wg sync.WaitGroup
	for w := range failoverClients {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("fo-o-%02d-%04d", w, n)
				if err := c.checkout(ctx, id, fmt.Sprintf("fo-l-%d", (w+n)%failoverListings)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	waitDone := func(n int64) {
		t.Helper()
		for c.done.Load() < n {
			select {
			case err := <-errs:
				t.Fatalf("client: %v", err)
			case <-ctx.Done():
				t.Fatalf("only %d of %d checkouts completed: %v", c.done.Load(), n, ctx.Err())
			case <-time.After(10 * time.Millisecond): // clients report by counter only
			}
		}
	}
	waitDone(failoverBeforeKil)

	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("stream leader: %v %+v", err, info)
	}
	leader := info.Cluster.Leader
	var victim *testkit.NATSProcess
	for _, nd := range nodes {
		if nd.Name == leader {
			victim = nd
		}
	}
	if victim == nil {
		t.Fatalf("stream leader %q is none of the cluster's servers", leader)
	}
	killedAt, ackedAt := c.done.Load(), c.acked()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILL of nats-server %s (stream leader) after %d checkouts, %d acknowledged commands", leader, killedAt, ackedAt)
	start := time.Now()
	waitDone(killedAt + failoverAfterKill)
	t.Logf("%d more checkouts completed within %s of the kill", failoverAfterKill, time.Since(start).Round(time.Millisecond))
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("client: %v", err)
	}
	if info, err = s.Info(ctx); err != nil || info.Cluster == nil || info.Cluster.Leader == "" || info.Cluster.Leader == leader {
		t.Fatalf("no new stream leader after %s was killed: %v %+v", leader, err, info.Cluster)
	}
	t.Logf("new stream leader %s; %d checkouts completed, %d ended by a refusal, %d commands acknowledged, %d sends retried",
		info.Cluster.Leader, c.done.Load(), c.refusals.Load(), c.acked(), c.retries.Load())

	// The services' processes rode out the failover: none of them died.
	for svc, p := range procs {
		if !p.proc.Running() {
			t.Errorf("ledger serve --services %s exited during the failover", svc)
		}
	}
	st, err := events.NewJetStreamStore(ctx, nc, contracts.Fence())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checkAcknowledged(ctx, t, st, c.acks)
	settling := time.Now()
	// The order process's checkout takes every order placed before and
	// after the kill to its end: captured, or ended with nothing held.
	if err := checkoutrun.Settle(ctx, st, "", ""); err != nil {
		t.Fatal(err)
	}
	t.Logf("the checkout settled %s after the clients stopped", time.Since(settling).Round(time.Millisecond))
	h, err := invariant.Read(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	checkSettled(t, h, c.acks)
}

// checkSettled checks, from the log, that every order a client placed
// ended captured (confirmed, its payment captured) or ended with nothing
// held (rejected or cancelled, no stock reserved, no open authorization,
// no unrefunded capture), and that the log strands nothing elsewhere.
func checkSettled(t *testing.T, h *invariant.Holdings, acks []ack) {
	t.Helper()
	if err := h.Err(); err != nil {
		t.Error(err)
	}
	placed, captured, ended := 0, 0, 0
	seen := map[string]bool{} // a retried place is acknowledged again
	for _, a := range acks {
		if a.name != "order.place" || seen[a.order] {
			continue
		}
		seen[a.order] = true
		placed++
		switch st := h.Status[a.order]; st {
		case "confirmed", "shipped", "completed":
			n := 0
			for _, p := range h.Payments[a.order] {
				if p.Status == "captured" && p.CapturedMinor > 0 {
					n++
				}
			}
			if n != 1 {
				t.Errorf("order %s ended %s with %d captured payments, want 1", a.order, st, n)
				continue
			}
			captured++
		case "rejected", "cancelled":
			ended++ // h.Err names what such an order still holds
		default:
			t.Errorf("order %s is %q after the checkout settled: neither captured nor ended", a.order, st)
		}
	}
	if captured == 0 {
		t.Errorf("%d orders placed and none captured by the checkout", placed)
	}
	t.Logf("%d orders placed: %d captured, %d ended with nothing held", placed, captured, ended)
}

// ack is one command a service acknowledged with 200.
type ack struct {
	name, aggregate, order string
	reply                  reply
}

// reply is what the checks read from a listing, order or payment reply.
type reply struct {
	Version       uint64      `json:"version"`
	Replayed      bool        `json:"replayed"`
	FirstPosition uint64      `json:"first_position"`
	Types         []string    `json:"-"`
	Refs          []eventRef  `json:"-"`
	State         order.Order `json:"state"`
}

type eventRef struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Position uint64 `json:"position"`
}

// decodeReply decodes a reply whose "events" lists type names (listing,
// order) or event references (payment).
func decodeReply(b []byte) (reply, error) {
	var r reply
	if err := json.Unmarshal(b, &r); err != nil {
		return r, err
	}
	var raw struct {
		Events json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(b, &raw); err != nil || len(raw.Events) == 0 || string(raw.Events) == "null" {
		return r, err
	}
	if json.Unmarshal(raw.Events, &r.Types) == nil {
		return r, nil
	}
	r.Types = nil // a list of objects leaves one empty string per object
	return r, json.Unmarshal(raw.Events, &r.Refs)
}

// httpClient sends each command to the process that runs its service and
// retries what may not have been decided (no connection, 5xx) with the
// same body, hence the same idempotency key.
type httpClient struct {
	hc   *http.Client
	base map[string]string // service -> http://addr

	mu       sync.Mutex
	acks     []ack
	done     atomic.Int64
	retries  atomic.Int64
	refusals atomic.Int64
}

func (c *httpClient) acked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acks)
}

func (c *httpClient) send(ctx context.Context, name, aggregate, orderID string, cmd any) (int, []byte, error) {
	body, err := json.Marshal(cmd)
	if err != nil {
		return 0, nil, err
	}
	svc, _, _ := strings.Cut(name, ".")
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base[svc]+"/v1/commands/"+name, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.hc.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode < 500 {
				if resp.StatusCode == http.StatusOK {
					r, err := decodeReply(b)
					if err != nil {
						return 0, nil, fmt.Errorf("%s %s: reply %s: %w", name, aggregate, b, err)
					}
					c.mu.Lock()
					c.acks = append(c.acks, ack{name: name, aggregate: aggregate, order: orderID, reply: r})
					c.mu.Unlock()
				}
				return resp.StatusCode, b, nil
			}
		}
		if ctx.Err() != nil {
			return 0, nil, fmt.Errorf("%s %s: no answer before the test's deadline: %w", name, aggregate, ctx.Err())
		}
		c.retries.Add(1)
		select { // no leader yet, or the process is reconnecting: try again
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkout is a buyer placing one order; the order process's checkout
// (services/checkout) reserves, authorizes, confirms and captures it. A
// 4xx ends the checkout and is counted.
func (c *httpClient) checkout(ctx context.Context, id, listingID string) error {
	code, _, err := c.send(ctx, "order.place", id, id, contracts.PlaceOrder{OrderID: id, BuyerID: "buyer-" + id, ListingID: listingID,
		Quantity: 1, IdempotencyKey: checkout.StepKey(id, "place")})
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		c.refusals.Add(1)
		return nil
	}
	c.done.Add(1)
	return nil
}

// emits is the event type each command of a checkout appends.
var emits = map[string]string{
	"listing.create":        "listing.created",
	"listing.reserve_stock": "listing.stock_reserved",
	"order.place":           "order.placed",
	"payment.authorize":     "payment.authorized",
	"payment.capture":       "payment.captured",
	"order.confirm":         "order.confirmed",
}

// checkAcknowledged checks every acknowledged reply against the log: its
// events are at its positions with its types and ids, every chain
// verifies, and each acknowledged step has exactly one event.
func checkAcknowledged(ctx context.Context, t *testing.T, st events.Store, acks []ack) {
	t.Helper()
	byPos := map[uint64]events.Event{}
	byAgg := map[string][]events.Event{}
	count := map[string]int{} // "<context>/<aggregate> <type>", or "reserved <order>"
	for e, err := range st.Read(ctx, events.Query{}) {
		if err != nil { // Read checks every hash and that no position is missing
			t.Fatalf("read the log: %v", err)
		}
		byPos[e.Position] = e
		k := e.Context() + "/" + e.AggregateID
		byAgg[k] = append(byAgg[k], e)
		if e.Type == "listing.stock_reserved" {
			var r struct {
				OrderID string `json:"order_id"`
			}
			if err := json.Unmarshal(e.Data, &r); err != nil {
				t.Fatalf("position %d: %v", e.Position, err)
			}
			count["reserved "+r.OrderID]++
			continue
		}
		count[k+" "+e.Type]++
	}
	for k, evs := range byAgg {
		if err := events.VerifyChain(evs, 0, events.GenesisHash); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	for key, n := range count {
		if n > 1 {
			t.Errorf("%s: %d events, a step was applied more than once", key, n)
		}
	}
	at := func(a ack, pos uint64, typ, id string) {
		e, ok := byPos[pos]
		switch {
		case !ok:
			t.Errorf("%s %s acknowledged %s at position %d: not in the log", a.name, a.aggregate, typ, pos)
		case e.Type != typ || e.AggregateID != a.aggregate || (id != "" && e.ID != id):
			t.Errorf("%s %s acknowledged %s %s at position %d: the log has %s %s of %s", a.name, a.aggregate, typ, id, pos, e.Type, e.ID, e.AggregateID)
		}
	}
	replayed := 0
	for _, a := range acks {
		if a.reply.Replayed {
			replayed++
		}
		for i, typ := range a.reply.Types {
			at(a, a.reply.FirstPosition+uint64(i), typ, "")
		}
		for _, r := range a.reply.Refs {
			at(a, r.Position, r.Type, r.ID)
		}
		ctxName, _, _ := strings.Cut(a.name, ".")
		key := ctxName + "/" + a.aggregate + " " + emits[a.name]
		if a.name == "listing.reserve_stock" {
			key = "reserved " + a.order
		}
		if count[key] != 1 {
			t.Errorf("%s acknowledged for %s: %d events in the log, want exactly 1", a.name, key, count[key])
		}
		if n := uint64(len(byAgg[ctxName+"/"+a.aggregate])); n < a.reply.Version {
			t.Errorf("%s %s acknowledged at version %d: the log has %d events", a.name, a.aggregate, a.reply.Version, n)
		}
	}
	t.Logf("%d acknowledged commands (%d answered from an idempotency key) checked against %d events", len(acks), replayed, len(byPos))
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/services/order"
	"github.com/marketledger/ledger/testkit/invariant"
)

// Bounds of the crash test. Every wait below is bounded by crashTimeout.
const (
	crashTimeout = 90 * time.Second
	crashClients = 16
	// crashListings spreads the reservations over a few listings, so that
	// concurrent checkouts contend on the same aggregates.
	crashListings = 6
	// crashBeforeKill and crashAfterRestart are the checkouts completed
	// before the SIGKILL and after the restart.
	crashBeforeKill   = 60
	crashAfterRestart = 40
	crashReady        = 30 * time.Second
)

// crashServe is one `ledger serve` child process on fixed ports and a fixed
// data directory, so that a restart comes back where its clients expect it.
type crashServe struct {
	bin, dir, http string
	token          string // an operator's API token
	port           int
	cmd            *exec.Cmd
	exited         chan struct{}
	out            *procOutput
}

// crashBuild builds the ledger binary of this package.
func crashBuild(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ledger")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// crashFreePort returns a free loopback port.
func crashFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newCrashServe(t *testing.T, bin string) *crashServe {
	s := &crashServe{bin: bin, dir: t.TempDir(), port: crashFreePort(t),
		http: "127.0.0.1:" + strconv.Itoa(crashFreePort(t)), out: &procOutput{}}
	t.Cleanup(func() {
		if s.cmd != nil {
			s.stop(t)
		}
		if t.Failed() {
			s.out.mu.Lock()
			out := s.out.String()
			s.out.mu.Unlock()
			t.Logf("ledger serve output (tail):\n%s", out[max(0, len(out)-6000):])
		}
	})
	return s
}

// start runs `ledger serve` and waits until /readyz answers 200.
func (s *crashServe) start(ctx context.Context, t *testing.T) {
	t.Helper()
	if s.token == "" {
		s.token = issueTestToken(t, s.dir, "operator")
	}
	s.cmd = exec.Command(s.bin, "serve", "--data", s.dir, "--port", strconv.Itoa(s.port), "--http", s.http)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(s.cmd, s.exited)
	rctx, cancel := context.WithTimeout(ctx, crashReady)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+s.http+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("ledger serve exited before it was ready")
		case <-rctx.Done():
			t.Fatalf("ledger serve not ready within %s: %v", crashReady, err)
		case <-time.After(20 * time.Millisecond): // starting: nothing to await but its socket
		}
	}
}

// kill sends SIGKILL to the child by its own pid and reaps it.
func (s *crashServe) kill(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(s.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill ledger serve: %v", err)
	}
	<-s.exited
	s.cmd = nil
}

// stop asks the child to shut down (SIGTERM) and kills it if it does not.
func (s *crashServe) stop(t *testing.T) {
	_ = syscall.Kill(s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.exited:
		s.cmd = nil
	case <-time.After(15 * time.Second):
		t.Errorf("ledger serve did not stop within 15 s of SIGTERM")
		s.kill(t)
	}
}

// crashAck is one command the server acknowledged with 200.
type crashAck struct {
	name, aggregate, order string
	reply                  crashReply
}

// crashEmits is the event type each command of a checkout appends.
var crashEmits = map[string]string{
	"listing.create":        "listing.created",
	"listing.reserve_stock": "listing.stock_reserved",
	"order.place":           "order.placed",
	"payment.authorize":     "payment.authorized",
	"payment.capture":       "payment.captured",
	"order.confirm":         "order.confirmed",
}

// crashReply is what the checks read from the replies of the listing,
// order and payment services.
type crashReply struct {
	Version       uint64   `json:"version"`
	Replayed      bool     `json:"replayed"`
	FirstPosition uint64   `json:"first_position"`
	LastPosition  uint64   `json:"last_position"`
	Types         []string `json:"-"`
	Refs          []struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Position uint64 `json:"position"`
	} `json:"-"`
	State order.Order `json:"state"`
}

// decodeCrashReply decodes a reply whose "events" is a list of type names
// (listing, order) or of event references (payment).
func decodeCrashReply(b []byte) (crashReply, error) {
	var r crashReply
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

// crashClient sends commands over HTTP and retries what may not have been
// decided (no connection, 5xx) with the same body, hence the same
// idempotency key, as a client of a ledger must.
type crashClient struct {
	base string
	hc   *http.Client

	mu       sync.Mutex
	acks     []crashAck
	done     atomic.Int64 // checkouts completed
	retries  atomic.Int64 // sends retried after no answer or a 5xx
	refusals atomic.Int64 // checkouts ended by a 4xx
}

// send posts a command until it is answered with 200 or a 4xx. It returns
// the status and body of that answer.
func (c *crashClient) send(ctx context.Context, name, aggregate, orderID string, cmd any) (int, []byte, error) {
	body, err := json.Marshal(cmd)
	if err != nil {
		return 0, nil, err
	}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/commands/"+name, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.hc.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode < 500 {
				if resp.StatusCode == http.StatusOK {
					r, err := decodeCrashReply(b)
					if err != nil {
						return 0, nil, fmt.Errorf("%s %s: reply %s: %w", name, aggregate, b, err)
					}
					c.mu.Lock()
					c.acks = append(c.acks, crashAck{name: name, aggregate: aggregate, order: orderID, reply: r})
					c.mu.Unlock()
				}
				return resp.StatusCode, b, nil
			}
		}
		if ctx.Err() != nil {
			return 0, nil, fmt.Errorf("%s %s: no answer before the test's deadline: %w", name, aggregate, ctx.Err())
		}
		c.retries.Add(1)
		select { // the server is away or overloaded: try again
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkout completes one order with the same steps and idempotency keys as
// the checkout process manager that runs inside the server: whichever
// sends a step first decides it, and the other is answered with its
// result. A 4xx on any step ends the checkout (for instance the manager
// cancelled it after its deadline); it is counted, not failed.
func (c *crashClient) checkout(ctx context.Context, id, listingID string) error {
	steps := []struct {
		name, agg string
		cmd       func(o order.Order) any
	}{
		{"listing.reserve_stock", listingID, func(o order.Order) any {
			return contracts.ReserveStock{ListingID: o.ListingID, OrderID: o.ID, Quantity: o.Quantity, IdempotencyKey: checkout.StepKey(o.ID, "reserve")}
		}},
		{"payment.authorize", contracts.PaymentID(id), func(o order.Order) any {
			return contracts.AuthorizePayment{PaymentID: contracts.PaymentID(o.ID), OrderID: o.ID, BuyerID: o.BuyerID, SellerID: o.SellerID,
				Channel: o.Channel, Jurisdiction: o.Jurisdiction, Category: o.Category, Amount: o.Total, IdempotencyKey: checkout.StepKey(o.ID, "authorize")}
		}},
		{"order.confirm", id, func(o order.Order) any {
			return contracts.ConfirmOrder{OrderID: o.ID, PaymentID: contracts.PaymentID(o.ID), IdempotencyKey: checkout.StepKey(o.ID, "confirm")}
		}},
		{"payment.capture", contracts.PaymentID(id), func(o order.Order) any {
			return contracts.CapturePayment{PaymentID: contracts.PaymentID(o.ID), IdempotencyKey: checkout.StepKey(o.ID, "capture")}
		}},
	}
	code, b, err := c.send(ctx, "order.place", id, id, contracts.PlaceOrder{OrderID: id, BuyerID: "buyer-" + id, ListingID: listingID,
		Quantity: 1, IdempotencyKey: checkout.StepKey(id, "place")})
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		c.refusals.Add(1)
		return nil
	}
	placed, err := decodeCrashReply(b)
	if err != nil {
		return err
	}
	for _, s := range steps {
		code, _, err := c.send(ctx, s.name, s.agg, id, s.cmd(placed.State))
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			c.refusals.Add(1)
			return nil
		}
	}
	c.done.Add(1)
	return nil
}

// TestCrashUnderLoadLosesNoAcknowledgedCheckout runs `ledger serve` as a
// child process, completes checkouts from 16 HTTP clients, kills the
// process with SIGKILL while they run, restarts it on the same data
// directory and lets the clients finish. Then every command acknowledged
// with 200 has its events in the log, exactly once per checkout step
// however often it was retried, every aggregate's hash chain verifies, and
// every read model the server's projection engine checkpointed equals, byte
// for byte, a clean rebuild from the first event up to the same position.
func TestCrashUnderLoadLosesNoAcknowledgedCheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it under load")
	}
	bin := crashBuild(t)
	ctx, cancel := context.WithTimeout(context.Background(), crashTimeout)
	defer cancel()
	srv := newCrashServe(t, bin)
	srv.start(ctx, t)
	c := &crashClient{base: "http://" + srv.http, hc: &http.Client{Timeout: 10 * time.Second, Transport: bearer{token: srv.token}}}

	for i := range crashListings {
		code, b, err := c.send(ctx, "listing.create", fmt.Sprintf("crash-l-%d", i), "", contracts.CreateListing{ListingID: fmt.Sprintf("crash-l-%d", i),
			SellerID: fmt.Sprintf("seller-%d", i%3), Title: "Rice cooker", Category: "home", Channel: contracts.ChannelMarketplace,
			Jurisdiction: "ID", Origin: contracts.OriginDomestic, Price: contracts.Money{AmountMinor: int64(100_000_00 + i*5_000_00), Currency: "IDR"},
			Stock: 1_000_000, IdempotencyKey: fmt.Sprintf("create-crash-l-%d", i)})
		if err != nil || code != http.StatusOK {
			t.Fatalf("listing.create: %d %s %v", code, b, err)
		}
	}

	stop := make(chan struct{})
	errs := make(chan error, crashClients)
	var wg sync.WaitGroup
	for w := range crashClients {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("crash-o-%02d-%04d", w, n)
				if err := c.checkout(ctx, id, fmt.Sprintf("crash-l-%d", (w+n)%crashListings)); err != nil {
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
	waitDone(crashBeforeKill)
	srv.kill(t)
	killedAt := c.done.Load()
	t.Logf("SIGKILL after %d checkouts", killedAt)
	srv.start(ctx, t)
	waitDone(killedAt + crashAfterRestart)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("client: %v", err)
	}
	t.Logf("%d checkouts completed, %d ended by a refusal, %d commands acknowledged, %d sends retried",
		c.done.Load(), c.refusals.Load(), len(c.acks), c.retries.Load())

	// Read the log through the restarted server, as every other ledger
	// subcommand does: the data directory says where it serves.
	n, err := openNode(ctx, &globals{dataDir: srv.dir}, nodeConfig{role: auth.RoleOperator, port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	checkAcknowledgedOnce(ctx, t, n.store, c.acks)
	checkModelsConverge(ctx, t, n)
	checkNothingStranded(ctx, t, n.store)
}

// checkNothingStranded waits, bounded, for the restarted checkout manager
// to have compensated every order that ended, then holds the log to it: no
// rejected or cancelled order keeps stock or money, and every reservation
// belongs to a live or confirmed order (ADR 0015).
func checkNothingStranded(ctx context.Context, t *testing.T, st events.Store) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := invariant.NothingStranded(ctx, st)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the kill and restart: %v", err)
		}
		time.Sleep(250 * time.Millisecond) // the manager compensates asynchronously; each check reads the log
	}
}

// checkAcknowledgedOnce checks every acknowledged reply against the log:
// the events it reports are at its positions with its types and ids, each
// aggregate's chain verifies, and no checkout step has more than one event
// however often it was sent.
func checkAcknowledgedOnce(ctx context.Context, t *testing.T, st events.Store, acks []crashAck) {
	t.Helper()
	byPos := map[uint64]events.Event{}
	byAgg := map[string][]events.Event{}
	for e, err := range st.Read(ctx, events.Query{}) {
		if err != nil { // Read checks every event's hash
			t.Fatalf("read the log after the restart: %v", err)
		}
		byPos[e.Position] = e
		k := e.Context() + "/" + e.AggregateID
		byAgg[k] = append(byAgg[k], e)
	}
	for k, evs := range byAgg {
		if err := events.VerifyChain(evs, 0, events.GenesisHash); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	at := func(a crashAck, pos uint64, typ, id string) {
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
		if k := contextOf(a.name) + "/" + a.aggregate; uint64(len(byAgg[k])) < a.reply.Version {
			t.Errorf("%s %s acknowledged at version %d: the log has %d events", a.name, a.aggregate, a.reply.Version, len(byAgg[k]))
		}
	}
	// Exactly once: each acknowledged step has exactly one event of the
	// type it emits, whoever sent it and however many times.
	count := map[string]int{} // "<context>/<aggregate> <type>", or "reserved <order>"
	for k, evs := range byAgg {
		for _, e := range evs {
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
	}
	for key, n := range count {
		if n > 1 {
			t.Errorf("%s: %d events, a step was applied more than once", key, n)
		}
	}
	for _, a := range acks {
		key := contextOf(a.name) + "/" + a.aggregate + " " + crashEmits[a.name]
		if a.name == "listing.reserve_stock" {
			key = "reserved " + a.order
		}
		if count[key] != 1 {
			t.Errorf("%s acknowledged for %s: %d events in the log, want exactly 1", a.name, key, count[key])
		}
	}
	t.Logf("%d acknowledged commands (%d answered from an idempotency key) checked against %d events", len(acks), replayed, len(byPos))
}

// contextOf returns the context of a command name ("order" of "order.place").
func contextOf(name string) string {
	for i := range name {
		if name[i] == '.' {
			return name[:i]
		}
	}
	return name
}

// checkModelsConverge waits until the restarted server's projection engine
// has checkpointed every read model at the head of the log, then requires
// each checkpoint to be byte-equal to a rebuild from the first event up to
// the same position, and an as-of query at the head to agree too.
func checkModelsConverge(ctx context.Context, t *testing.T, n *node) {
	t.Helper()
	kv, err := n.js.KeyValue(ctx, projections.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := n.js.ObjectStore(ctx, projections.SnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	names := models.ModelNames()
	ckpts := map[string]projections.Checkpoint{}
	var head uint64
	for {
		if head, err = n.store.LastPosition(ctx); err != nil {
			t.Fatal(err)
		}
		atHead := 0
		for _, name := range names {
			m, _ := models.NewModel(name)
			e, err := kv.Get(ctx, "ckpt."+name+".v"+strconv.Itoa(models.ModelVersion(m)))
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			var c projections.Checkpoint
			if err := json.Unmarshal(e.Value(), &c); err != nil {
				t.Fatal(err)
			}
			ckpts[name] = c
			if c.Position == head {
				atHead++
			}
		}
		if atHead == len(names) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("read models not checkpointed at the head %d: %+v", head, ckpts)
		case <-time.After(100 * time.Millisecond): // the engine checkpoints once a second
		}
	}
	rebuilt, err := models.NewModels(names...)
	if err != nil {
		t.Fatal(err)
	}
	if err := projections.Rebuild(ctx, n.store, head, rebuilt); err != nil {
		t.Fatalf("rebuild to %d: %v", head, err)
	}
	asOf, err := projections.QueryAsOf(ctx, n.store, projections.AtPosition(head), names...)
	if err != nil {
		t.Fatalf("as of %d: %v", head, err)
	}
	for _, m := range rebuilt {
		want, err := m.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		got, err := obj.GetBytes(ctx, ckpts[m.Name()].Object)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("read model %s: the engine's checkpoint at %d differs from a rebuild from zero (%d vs %d bytes)%s",
				m.Name(), head, len(got), len(want), firstDiff(got, want))
		}
		q, err := asOf.Model(m.Name()).Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(q, want) {
			t.Errorf("read model %s: the as-of query at %d differs from a rebuild from zero%s", m.Name(), head, firstDiff(q, want))
		}
	}
	t.Logf("%d read models checkpointed at the head %d equal a rebuild from zero", len(names), head)
}

// firstDiff describes where two snapshots first differ.
func firstDiff(a, b []byte) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			lo := max(0, i-80)
			return fmt.Sprintf(": at byte %d, %q vs %q", i, a[lo:min(len(a), i+80)], b[lo:min(len(b), i+80)])
		}
	}
	return ""
}

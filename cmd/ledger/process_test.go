package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/services/order"
)

// ledgerProc is one `ledger serve` child process and its HTTP address.
type ledgerProc struct {
	name string
	cmd  *exec.Cmd
	addr string
	log  *logNode
}

// logNode is the NATS server the processes share, with the ledger's
// least-privilege users (their seeds in creds) and an API tokens file
// holding an operator's and a policy issuer's token.
type logNode struct {
	url, creds, tokens string
	operator, issuer   string
}

// procOutput is a bytes.Buffer the child's output goroutine and the test
// may use at once.
type procOutput struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *procOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

// buildLedger builds this package's binary once into a temporary directory.
func buildLedger(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ledger")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startLogNode starts one embedded JetStream server with the LEDGER stream
// on a random loopback port, as the single server the processes share.
func startLogNode(t *testing.T) *logNode {
	t.Helper()
	dir := t.TempDir()
	set, err := auth.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort, Configure: set.Configure})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc := connectAs(t, srv.ClientURL(), dir, auth.RoleOperator)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := events.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	return &logNode{url: srv.ClientURL(), creds: set.Dir(), tokens: filepath.Join(set.Dir(), tokensFile),
		operator: issueTestToken(t, dir, "operator"), issuer: issueTestToken(t, dir, "policy_issuer")}
}

// startServe starts `ledger serve --services services` against natsURL and
// waits until its /readyz answers 200. The process is stopped by SIGTERM
// (killed if it does not exit) in t's cleanup.
func startServe(t *testing.T, bin string, node *logNode, services string) *ledgerProc {
	t.Helper()
	p := &ledgerProc{name: services, addr: freeAddr(t), log: node}
	out := &procOutput{}
	p.cmd = exec.Command(bin, "serve", "--nats", node.url, "--creds", node.creds, "--tokens", node.tokens,
		"--data", t.TempDir(), "--services", services, "--http", p.addr,
		// One process of a deployment runs the read models: their durable
		// consumers are shared by name.
		"--projections="+strconv.FormatBool(strings.Contains(services, "listing")))
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-exited
			t.Errorf("ledger serve --services %s did not stop within 15 s of SIGTERM", services)
		}
		if t.Failed() {
			out.mu.Lock()
			t.Logf("ledger serve --services %s output:\n%s", services, out.String())
			out.mu.Unlock()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-exited:
			out.mu.Lock()
			defer out.mu.Unlock()
			t.Fatalf("ledger serve --services %s exited before it was ready: %v\n%s", services, waitErr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ledger serve --services %s not ready within 30 s: %v", services, err)
		}
		time.Sleep(20 * time.Millisecond) // the process is starting: nothing to await but its socket
	}
}

// post sends one command to the process and returns the HTTP status and
// body.
func (p *ledgerProc) post(t *testing.T, name string, cmd any) (int, []byte) {
	t.Helper()
	body, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	token := p.log.operator
	if strings.HasPrefix(name, "policy.") {
		token = p.log.issuer
	}
	resp, err := tokenClient(token).Post("http://"+p.addr+"/v1/commands/"+name, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s to %s: %v", name, p.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// must sends a command that must succeed and decodes its reply into out.
func (p *ledgerProc) must(t *testing.T, name string, cmd, out any) {
	t.Helper()
	code, b := p.post(t, name, cmd)
	if code != http.StatusOK {
		t.Fatalf("%s to %s: %d %s", name, p.name, code, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s to %s: reply %s: %v", name, p.name, b, err)
		}
	}
}

// expect sends a command and checks its status.
func (p *ledgerProc) expect(t *testing.T, want int, name string, cmd any) {
	t.Helper()
	if code, b := p.post(t, name, cmd); code != want {
		t.Errorf("%s to the %s process: %d %s; want %d", name, p.name, code, b, want)
	}
}

type orderReply struct {
	State order.Order `json:"state"`
}

type paymentReply struct {
	Payment struct {
		Status        string `json:"status"`
		CapturedMinor int64  `json:"captured_minor"`
		RefundedMinor int64  `json:"refunded_minor"`
		Settled       bool   `json:"settled"`
	} `json:"payment"`
}

// TestSeparateProcessesCheckoutRefundAndHonourTheFreeze runs listing,
// order, payment and policy as four `ledger serve` processes against one
// NATS server, completes checkouts and refunds by sending each command to
// the process that runs its service, then imposes a freeze through the
// policy process and shows that each process honours it at once (and a
// floor price at the listing process), while refunds, voids and
// settlements go on.
func TestSeparateProcessesCheckoutRefundAndHonourTheFreeze(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs four processes")
	}
	bin := buildLedger(t)
	node := startLogNode(t)
	procs := map[string]*ledgerProc{}
	// In turn: processes starting at the same instant race to create the
	// read models' shared durable consumers and the loser exits (10012).
	for _, svc := range allServices {
		procs[svc] = startServe(t, bin, node, svc)
	}
	lst, ord, pay, pol := procs["listing"], procs["order"], procs["payment"], procs["policy"]

	idr := func(m int64) contracts.Money { return contracts.Money{AmountMinor: m, Currency: "IDR"} }
	listings := []contracts.CreateListing{
		{ListingID: "sc-1", SellerID: "seller-1", Title: "Batik shirt", Category: "fashion", Channel: contracts.ChannelSocialCommerce,
			Jurisdiction: "ID", Origin: contracts.OriginDomestic, Price: idr(150_000_00), Stock: 100},
		{ListingID: "mp-1", SellerID: "seller-2", Title: "Rice cooker", Category: "home", Channel: contracts.ChannelMarketplace,
			Jurisdiction: "ID", Origin: contracts.OriginDomestic, Price: idr(450_000_00), Stock: 100},
	}
	for _, l := range listings {
		lst.must(t, "listing.create", l, nil)
	}

	// checkout sends place to the order process, reserve to the listing
	// process, authorize to the payment process, confirm to the order
	// process and capture to the payment process: the checkout's steps, in
	// its order. The order process's checkout runner drives the same steps
	// with the same idempotency keys (checkout.StepKey); whichever comes
	// first decides and the other is answered with its result, so the two
	// never disagree (a capture under another key, arriving after the freeze,
	// would be refused and the runner would refund the order).
	checkout := func(id, listingID string) order.Order {
		var placed orderReply
		ord.must(t, "order.place", contracts.PlaceOrder{OrderID: id, BuyerID: "buyer-" + id, ListingID: listingID, Quantity: 1}, &placed)
		o := placed.State
		lst.must(t, "listing.reserve_stock", contracts.ReserveStock{ListingID: o.ListingID, OrderID: o.ID, Quantity: o.Quantity,
			IdempotencyKey: checkout.StepKey(o.ID, "reserve")}, nil)
		pay.must(t, "payment.authorize", contracts.AuthorizePayment{PaymentID: contracts.PaymentID(o.ID), OrderID: o.ID, BuyerID: o.BuyerID,
			SellerID: o.SellerID, Channel: o.Channel, Jurisdiction: o.Jurisdiction, Category: o.Category, Amount: o.Total,
			IdempotencyKey: checkout.StepKey(o.ID, "authorize")}, nil)
		var confirmed orderReply
		ord.must(t, "order.confirm", contracts.ConfirmOrder{OrderID: o.ID, PaymentID: contracts.PaymentID(o.ID),
			IdempotencyKey: checkout.StepKey(o.ID, "confirm")}, &confirmed)
		if confirmed.State.Status != order.StatusConfirmed {
			t.Errorf("order %s after confirm: %s", o.ID, confirmed.State.Status)
		}
		var captured paymentReply
		pay.must(t, "payment.capture", contracts.CapturePayment{PaymentID: contracts.PaymentID(o.ID),
			IdempotencyKey: checkout.StepKey(o.ID, "capture")}, &captured)
		if captured.Payment.Status != "captured" || captured.Payment.CapturedMinor != o.Total.AmountMinor {
			t.Errorf("payment of %s after capture: %+v", o.ID, captured.Payment)
		}
		return o
	}
	var paid []order.Order
	for i := range 4 {
		paid = append(paid, checkout(fmt.Sprintf("ord-%d", i), listings[i%2].ListingID))
	}
	var refunded paymentReply
	pay.must(t, "payment.refund", contracts.RefundPayment{PaymentID: contracts.PaymentID(paid[0].ID), RefundID: "rf-0", Amount: paid[0].Total,
		Reason: "returned", IdempotencyKey: "refund:rf-0"}, &refunded)
	if refunded.Payment.RefundedMinor != paid[0].Total.AmountMinor {
		t.Errorf("refund before the freeze: %+v", refunded.Payment)
	}
	// An order placed before the freeze; the order process's checkout
	// drives it, and may have confirmed it by the time of the freeze. A new
	// authorization for it is judged by the rule first (the payment service
	// judges a payment by the order as the log has it).
	ord.must(t, "order.place", contracts.PlaceOrder{OrderID: "ord-held", BuyerID: "buyer-held", ListingID: "sc-1", Quantity: 1}, nil)

	pol.must(t, "policy.impose_freeze", contracts.ImposeFreeze{RuleID: "permendag-31-2023",
		Scope:      contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{contracts.ChannelSocialCommerce}},
		LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}, nil)
	pol.must(t, "policy.set_floor_price", contracts.SetFloorPrice{RuleID: "cross-border-floor",
		Scope: contracts.Scope{Jurisdictions: []string{"ID"}}, Amount: contracts.Money{AmountMinor: 100_00, Currency: "USD"},
		Origin: contracts.OriginCrossBorder, LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}, nil)

	// Right after the acknowledgement, with no wait: every process decides
	// under the freeze.
	ord.expect(t, http.StatusLocked, "order.place", contracts.PlaceOrder{OrderID: "ord-frozen", BuyerID: "buyer-x", ListingID: "sc-1", Quantity: 1})
	pay.expect(t, http.StatusLocked, "payment.authorize", contracts.AuthorizePayment{PaymentID: "pay-frozen", OrderID: "ord-held"})
	// A payment client that calls the social-commerce order a marketplace
	// one is refused, naming the field: the scope is the order's.
	pay.expect(t, http.StatusUnprocessableEntity, "payment.authorize", contracts.AuthorizePayment{PaymentID: "pay-claim", OrderID: "ord-held",
		BuyerID: "buyer-held", SellerID: "seller-1", Channel: contracts.ChannelMarketplace, Jurisdiction: "ID", Category: "fashion",
		Amount: idr(150_000_00)})
	lst.expect(t, http.StatusLocked, "listing.create", contracts.CreateListing{ListingID: "xb-1", SellerID: "seller-3", Title: "Imported lamp",
		Category: "home", Channel: contracts.ChannelMarketplace, Jurisdiction: "ID", Origin: contracts.OriginCrossBorder,
		Price: idr(99_000_00), Stock: 5})
	// Out of scope and after-sales: go on.
	ord.expect(t, http.StatusOK, "order.place", contracts.PlaceOrder{OrderID: "ord-mp", BuyerID: "buyer-y", ListingID: "mp-1", Quantity: 1})
	lst.expect(t, http.StatusOK, "listing.create", contracts.CreateListing{ListingID: "sc-2", SellerID: "seller-1", Title: "Promoted scarf",
		Category: "fashion", Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID", Origin: contracts.OriginDomestic,
		Price: idr(80_000_00), Stock: 5})
	for i, o := range paid[1:3] {
		pay.expect(t, http.StatusOK, "payment.refund", contracts.RefundPayment{PaymentID: contracts.PaymentID(o.ID), RefundID: fmt.Sprintf("rf-f%d", i),
			Amount: idr(o.Total.AmountMinor / 2), Reason: "partial return during the freeze"})
	}
	pay.expect(t, http.StatusOK, "payment.settle", contracts.SettlePayment{PaymentID: contracts.PaymentID(paid[3].ID)})
	ord.expect(t, http.StatusOK, "order.cancel", contracts.CancelOrder{OrderID: paid[3].ID, Reason: "buyer changed their mind"})
	if code, b := ord.post(t, "payment.refund", contracts.RefundPayment{PaymentID: "x", RefundID: "y", Amount: idr(1), Reason: "z"}); code != http.StatusNotFound {
		t.Errorf("a payment command sent to the order process: %d %s; want 404 (not running there)", code, b)
	}
}

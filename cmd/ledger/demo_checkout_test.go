package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/testkit/invariant"
)

// checkoutSteps are the events only the checkout may cause, with the step
// whose idempotency key (checkout.StepKey) the command that made each
// carried.
var checkoutSteps = map[string]string{
	"listing.stock_reserved": "reserve",
	"payment.authorized":     "authorize",
	"order.confirmed":        "confirm",
	"payment.captured":       "capture",
}

// TestDemoCheckoutIsTheRunner proves that the demo's checkouts are the
// product's: every reservation, authorization, confirmation and capture in
// the log of a demo was decided on a command the checkout runner sent (it
// carries the runner's idempotency key for its order and step), the market
// package has no command of those steps to send, and the day leaves nothing
// stranded (buyers who cancelled confirmed orders were refunded and their
// stock released by the runner).
func TestDemoCheckoutIsTheRunner(t *testing.T) {
	marketDrivesNoStep(t)
	rep := playDemo(t, 5)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := openNode(ctx, &globals{dataDir: rep.DataDir}, nodeConfig{role: auth.RoleOperator, port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	keys := idempotencyKeys(ctx, t, n.js)
	seen := map[string]int{}
	for e, err := range n.store.Read(ctx, events.Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		step, ok := checkoutSteps[e.Type]
		if !ok {
			continue
		}
		seen[e.Type]++
		var body struct {
			OrderID string `json:"order_id"`
		}
		if err := json.Unmarshal(e.Data, &body); err != nil {
			t.Fatal(err)
		}
		if got, want := keys[e.Position], checkout.StepKey(body.OrderID, step); got != want {
			t.Errorf("%s at %d for order %s: decided on key %q, want the checkout's %q", e.Type, e.Position, body.OrderID, got, want)
		}
	}
	for typ := range checkoutSteps {
		if seen[typ] == 0 {
			t.Errorf("no %s in the demo's log", typ)
		}
	}
	var cancelled int
	for _, c := range rep.Checkouts {
		cancelled += c.Cancelled
	}
	if cancelled == 0 {
		t.Error("no buyer cancelled a confirmed order: the runner's unwinding was not exercised")
	}
	if err := invariant.NothingStranded(ctx, n.store); err != nil {
		t.Errorf("the demo left money or stock stranded: %v", err)
	}
}

// marketDrivesNoStep fails if the market's source names a command of a
// checkout step: the market's buyers place, cancel and ask for refunds; the
// checkout does the rest.
func marketDrivesNoStep(t *testing.T) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("internal", "market", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("market sources: %v (%d files)", err, len(files))
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []string{"contracts.ReserveStock", "contracts.AuthorizePayment", "contracts.ConfirmOrder",
			"contracts.CapturePayment", "contracts.RejectOrder", "contracts.VoidPayment", "contracts.ReleaseStock"} {
			if strings.Contains(string(src), cmd) {
				t.Errorf("%s names %s: a checkout step belongs to services/checkout", f, cmd)
			}
		}
	}
}

// idempotencyKeys maps the position of every event decided on a keyed
// command to its key, from the idempotency records the store keeps after
// each keyed decision's events (ADR 0005, ADR 0006).
func idempotencyKeys(ctx context.Context, t *testing.T, js jetstream.JetStream) map[uint64]string {
	t.Helper()
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectPrefix + "*._idem.>"}})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	keys := map[uint64]string{}
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			t.Fatalf("reading the idempotency records: %v", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		var rec struct {
			Key    string `json:"key"`
			Events uint64 `json:"events"`
			After  uint64 `json:"after"` // messages between the command's last event and its record
		}
		if err := json.Unmarshal(m.Data(), &rec); err != nil {
			t.Fatal(err)
		}
		last := meta.Sequence.Stream - rec.After - 1
		for p := last - rec.Events + 1; p <= last; p++ {
			keys[p] = rec.Key
		}
		if meta.NumPending == 0 {
			return keys
		}
	}
}

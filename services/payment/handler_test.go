package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/nodetest"
	"github.com/marketledger/ledger/runtime/command"
)

func startStore(t testing.TB) (*events.JetStreamStore, *nats.Conn) {
	t.Helper()
	l := nodetest.Start(t, events.WithTypeChecker(contracts.Checker{}), contracts.Fence())
	return l.Store, l.Conn
}

func newService(t testing.TB, st events.Store) *Service {
	t.Helper()
	svc, err := New(context.Background(), Config{Store: st, FeeBasisPoints: 250})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}

// appendPolicy appends a policy event as the policy service does: its own
// aggregate per rule, unfenced. The payment module may not import the
// policy service, so the test writes the same event through the runner.
func appendPolicy(t testing.TB, st events.Store, ruleID string, ev any) events.Appended {
	t.Helper()
	r := &command.Runner{Store: st, Codec: contracts.Codec{}, Source: contracts.Source(contracts.ServicePolicy), Clock: time.Now}
	agg := command.Aggregate[int]{Context: contracts.ServicePolicy, Initial: func(string) int { return 0 }, Evolve: func(n int, _ any) int { return n + 1 }}
	res, err := command.Run[int, struct{}](context.Background(), r, agg, ruleID, command.Meta{CommandID: events.NewID(), Command: ev}, nil,
		func(int, struct{}, time.Time) ([]any, error) { return []any{ev}, nil })
	if err != nil {
		t.Fatal(err)
	}
	return res.Appended
}

func freezeNow(id string) contracts.FreezeImposed {
	return contracts.FreezeImposed{RuleID: id, Scope: socialID, BlockedOperations: contracts.FreezeOperations,
		EffectiveAt: time.Now(), LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}
}

// call sends a command over NATS and returns the reply or the problem.
func call(t testing.TB, nc *nats.Conn, verb string, body any) (Reply, *Problem) {
	t.Helper()
	b, ok := body.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	msg, err := nc.Request(SubjectPrefix+"."+verb, b, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", verb, err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		var p Problem
		if err := json.Unmarshal(msg.Data, &p); err != nil {
			t.Fatalf("%s: problem body %q: %v", verb, msg.Data, err)
		}
		if fmt.Sprint(p.Status) != code {
			t.Errorf("%s: code %s, problem status %d", verb, code, p.Status)
		}
		return Reply{}, &p
	}
	var r Reply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		t.Fatalf("%s: reply %q: %v", verb, msg.Data, err)
	}
	return r, nil
}

func mustOK(t testing.TB, nc *nats.Conn, verb string, body any) Reply {
	t.Helper()
	r, p := call(t, nc, verb, body)
	if p != nil {
		t.Fatalf("%s: %+v", verb, *p)
	}
	return r
}

func mustFail(t testing.TB, nc *nats.Conn, verb string, body any, status int, field string) *Problem {
	t.Helper()
	_, p := call(t, nc, verb, body)
	if p == nil {
		t.Fatalf("%s: accepted, want %d at %q", verb, status, field)
	}
	if p.Status != status || p.Field != field {
		t.Errorf("%s: got %d at %q (%s), want %d at %q", verb, p.Status, p.Field, p.Detail, status, field)
	}
	return p
}

// auth authorizes payment id for order o-<id>, restating the order's
// fields as the checkout does; withOrder puts that order in the log.
func auth(id string, ch contracts.Channel, x int64) contracts.AuthorizePayment {
	return contracts.AuthorizePayment{PaymentID: id, OrderID: "o-" + id, BuyerID: "b1", SellerID: "s1", Channel: ch,
		Jurisdiction: "ID", Category: "fashion", Amount: usd(x)}
}

// withOrder places the order c is for, with the scope and total c states,
// and returns c.
func withOrder(t testing.TB, st events.Store, c contracts.AuthorizePayment) contracts.AuthorizePayment {
	t.Helper()
	placeOrder(t, st, contracts.OrderPlaced{OrderID: c.OrderID, BuyerID: c.BuyerID, ListingID: "l1", SellerID: c.SellerID,
		Quantity: 1, UnitPrice: c.Amount, Total: c.Amount, Channel: c.Channel, Jurisdiction: c.Jurisdiction,
		Category: c.Category, Origin: contracts.OriginDomestic})
	return c
}

// TestFreezeHonouredOverNATS plays the day: trade before the freeze,
// blocked operations refused in scope after it, unwinding going on, other
// channels trading, and a lift restoring trade.
func TestFreezeHonouredOverNATS(t *testing.T) {
	st, nc := startStore(t)
	svc := newService(t, st)
	ms, err := svc.Serve(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Stop()
	social := contracts.ChannelSocialCommerce
	p1, p2, p3 := withOrder(t, st, auth("p1", social, 10_000)), withOrder(t, st, auth("p2", social, 5_000)), withOrder(t, st, auth("p3", social, 100))
	p4, p5 := withOrder(t, st, auth("p4", contracts.ChannelMarketplace, 100)), withOrder(t, st, auth("p5", social, 100))

	first := mustOK(t, nc, "authorize", p1)
	if first.Events[0].PolicyPosition != 0 || first.Payment.Status != StatusAuthorized {
		t.Errorf("first authorization: %+v", first)
	}
	confirmOrder(t, st, p1.OrderID, "p1")
	mustOK(t, nc, "capture", contracts.CapturePayment{PaymentID: "p1"})
	mustOK(t, nc, "authorize", p2)

	fz := appendPolicy(t, st, "r1", freezeNow("r1"))

	p := mustFail(t, nc, "authorize", p3, 423, "r1")
	if !strings.Contains(p.Rule, "Permendag 31/2023") {
		t.Errorf("frozen problem does not name the legal basis: %+v", p)
	}
	confirmOrder(t, st, p2.OrderID, "p2")
	mustFail(t, nc, "capture", contracts.CapturePayment{PaymentID: "p2"}, 423, "r1")
	mustOK(t, nc, "refund", contracts.RefundPayment{PaymentID: "p1", RefundID: "f1", Amount: usd(4_000), Reason: "regulation"})
	mustOK(t, nc, "void", contracts.VoidPayment{PaymentID: "p2", Reason: "order cancelled"})
	settled := mustOK(t, nc, "settle", contracts.SettlePayment{PaymentID: "p1"})
	if got := settled.Payment.FeeMinor; got != 150 {
		t.Errorf("fee on 6000 at 250 bps = %d, want 150", got)
	}
	other := mustOK(t, nc, "authorize", p4)
	// The policy head after the freeze is the fence record that closes its
	// batch, just after the freeze.
	head, err := st.PolicyHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := other.Events[0].PolicyPosition; got != head || head <= fz.LastPosition {
		t.Errorf("out-of-scope authorization decided under %d, want the policy head %d after the freeze at %d", got, head, fz.LastPosition)
	}

	appendPolicy(t, st, "r1", contracts.FreezeLifted{RuleID: "r1", EffectiveAt: time.Now(), Activation: contracts.ActivationOnRecording, LegalBasis: "served again", Issuer: "kemendag"})
	// A view that has not applied the lift yet refuses (the safe side), and
	// a refusal is not retried: wait, bounded, until the view has it.
	if head, err = st.PolicyHead(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitView(t, svc, head)
	mustOK(t, nc, "authorize", p5)

	checkReplay(t, svc, settled.Payment, "p1")
}

// waitView waits, at most 10 s, until the service's policy view has applied
// position pos.
func waitView(t *testing.T, svc *Service, pos uint64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); svc.view.Position() < pos; {
		if time.Now().After(deadline) {
			t.Fatalf("policy view at %d, not at %d after 10 s", svc.view.Position(), pos)
		}
		time.Sleep(time.Millisecond) // the view announces nothing public: poll it
	}
}

// checkReplay loads a payment from the log and compares it with the state
// the live decisions returned, balances included.
func checkReplay(t *testing.T, svc *Service, live View, id string) {
	t.Helper()
	s, _, err := svc.Load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if s.Corrupt != nil {
		t.Fatal(s.Corrupt)
	}
	if diff := cmp.Diff(live, viewOf(s)); diff != "" {
		t.Errorf("replayed %s differs from live (-live +replay):\n%s", id, diff)
	}
	checkBalanced(t, s.Balances)
}

// TestBadInputAppendsNothing sends bad commands over NATS: each gets a
// clear error and the stream's last sequence does not move.
func TestBadInputAppendsNothing(t *testing.T) {
	st, nc := startStore(t)
	svc := newService(t, st)
	ms, err := svc.Serve(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Stop()
	p1 := withOrder(t, st, auth("p1", contracts.ChannelMarketplace, 1_000))
	mustOK(t, nc, "authorize", p1)
	confirmOrder(t, st, p1.OrderID, "p1")
	mustOK(t, nc, "capture", contracts.CapturePayment{PaymentID: "p1"})
	ctx := context.Background()
	before, err := st.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	authJSON := func(amount string) []byte {
		return []byte(`{"payment_id":"p9","order_id":"o9","buyer_id":"b1","seller_id":"s1","channel":"marketplace",` +
			`"jurisdiction":"ID","category":"fashion","amount":` + amount + `}`)
	}
	for _, tc := range []struct {
		name, verb string
		body       any
		status     int
		field      string
	}{
		{"negative", "authorize", authJSON(`{"amount_minor":-1,"currency":"USD"}`), 400, "/amount/amount_minor"},
		{"zero", "authorize", authJSON(`{"amount_minor":0,"currency":"USD"}`), 400, "/amount/amount_minor"},
		{"unknown currency", "authorize", authJSON(`{"amount_minor":1,"currency":"XYZ"}`), 400, "/amount/currency"},
		{"above max", "authorize", authJSON(fmt.Sprintf(`{"amount_minor":%d,"currency":"USD"}`, contracts.MaxAmountMinor+1)), 400, "/amount/amount_minor"},
		{"int64 overflow", "authorize", authJSON(`{"amount_minor":9223372036854775808,"currency":"USD"}`), 400, "/amount/amount_minor"},
		{"unknown jurisdiction", "authorize", []byte(strings.Replace(string(authJSON(`{"amount_minor":1,"currency":"USD"}`)), `"ID"`, `"QQ"`, 1)), 400, "/jurisdiction"},
		{"not json", "authorize", []byte(`{"payment_id":`), 400, ""},
		{"refund above captured", "refund", contracts.RefundPayment{PaymentID: "p1", RefundID: "f1", Amount: usd(1_001), Reason: "x"}, 422, "/amount/amount_minor"},
		{"refund other currency", "refund", contracts.RefundPayment{PaymentID: "p1", RefundID: "f1", Amount: contracts.Money{AmountMinor: 1, Currency: "IDR"}, Reason: "x"}, 422, "/amount/currency"},
		{"capture unknown", "capture", contracts.CapturePayment{PaymentID: "nope"}, 404, "/payment_id"},
		{"refund unknown", "refund", contracts.RefundPayment{PaymentID: "nope", RefundID: "f1", Amount: usd(1), Reason: "x"}, 404, "/payment_id"},
		{"settle unknown", "settle", contracts.SettlePayment{PaymentID: "nope"}, 404, "/payment_id"},
		{"capture twice", "capture", contracts.CapturePayment{PaymentID: "p1"}, 409, "/payment_id"},
		{"authorize twice", "authorize", p1, 409, "/payment_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustFail(t, nc, tc.verb, tc.body, tc.status, tc.field)
			if p.Rule == "" && tc.field != "" {
				t.Errorf("problem names no rule: %+v", p)
			}
		})
	}
	after, err := st.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("bad input moved the stream from %d to %d", before, after)
	}
}

// TestFreezeRace authorizes payments in scope from 32 goroutines over two
// service instances while a freeze effective immediately is appended at a
// random moment. Every authorization in the log must have been decided
// under a policy position before the freeze's and stored before it; every
// authorization asked after the freeze was acknowledged must be refused.
func TestFreezeRace(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	st, _ := startStore(t)
	svcs := []*Service{newService(t, st), newService(t, st)}
	// Every payment is for one order: the payment service does not ask
	// whether an order is paid already, and one order keeps the race about
	// the freeze rather than about placing orders.
	race := withOrder(t, st, auth("race", contracts.ChannelSocialCommerce, 100))
	var (
		wg       sync.WaitGroup
		frozenAt sync.Map // set once the freeze is acknowledged
		mu       sync.Mutex
		accepted = map[string]bool{}
		refused  int
	)
	// afterMax bounds the attempts each worker makes once the freeze is
	// acknowledged: they prove the refusal, and every refused attempt costs
	// the server a consumer for loading a new aggregate.
	const workers, perWorker, afterMax = 32, 40, 3
	for w := range workers {
		wg.Go(func() {
			refusedAfter := 0
			for i := range perWorker {
				_, after := frozenAt.Load("ack")
				if after && refusedAfter == afterMax {
					return
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				c := race
				c.PaymentID = id
				_, err := svcs[(w+i)%2].Authorize(context.Background(), c)
				mu.Lock()
				switch {
				case err == nil && after:
					t.Errorf("%s accepted though asked after the freeze was acknowledged", id)
				case err == nil:
					accepted[id] = true
				case errors.Is(err, events.ErrFrozen):
					refused++
					if after {
						refusedAfter++
					}
				default:
					t.Errorf("%s: %v", id, err)
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
	fz := appendPolicy(t, st, "r-race", freezeNow("r-race"))
	frozenAt.Store("ack", true)
	wg.Wait()
	checkRaceLog(t, st, fz.FirstPosition, accepted)
	t.Logf("freeze at %d: %d accepted, %d refused", fz.FirstPosition, len(accepted), refused)
	if refused == 0 {
		t.Error("no authorization was refused")
	}
}

// checkRaceLog reads every authorization back from the log.
func checkRaceLog(t *testing.T, st events.Store, freezePos uint64, accepted map[string]bool) {
	t.Helper()
	seen := 0
	for e, err := range st.Read(context.Background(), events.Query{Subjects: []string{"ledger.payment.>"}}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Type != "payment.authorized" {
			continue
		}
		seen++
		if !accepted[e.AggregateID] {
			t.Errorf("%s is in the log but its caller was refused", e.AggregateID)
		}
		if e.PolicyPosition >= freezePos || e.Position >= freezePos {
			t.Errorf("%s at %d decided under policy position %d, freeze at %d", e.AggregateID, e.Position, e.PolicyPosition, freezePos)
		}
	}
	if seen != len(accepted) {
		t.Errorf("%d authorizations in the log, %d accepted", seen, len(accepted))
	}
}

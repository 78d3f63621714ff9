package payment

import (
	"fmt"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/testkit/decidertest"
	"pgregory.net/rapid"
)

// ledgerModel is the world of one run over a few payments: the fee, the
// clock and a freeze that comes and goes.
type ledgerModel struct {
	fee    int64
	now    time.Time
	rules  []contracts.Rule
	voided map[string]bool
	events map[string]int // accepted events per payment, numbering refunds
}

func amountGen() *rapid.Generator[int64] {
	return rapid.OneOf(rapid.Int64Range(-3, 2_000), rapid.Int64Range(contracts.MaxAmountMinor-3, contracts.MaxAmountMinor+3),
		rapid.Just(int64(1<<63-1)))
}

// next draws a command for one of the payments, or changes the world.
func (m *ledgerModel) next(t *rapid.T, _ int, state func(string) State) (decidertest.Step[Inputs], bool) {
	pid := rapid.SampledFrom([]string{"p1", "p2", "p3"}).Draw(t, "payment")
	currency := map[string]string{"p1": "USD", "p2": "IDR", "p3": "USD"}[pid]
	amount := contracts.Money{AmountMinor: amountGen().Draw(t, "amount"), Currency: currency}
	var cmd any
	switch rapid.IntRange(0, 6).Draw(t, "command") {
	case 0:
		ch := rapid.SampledFrom(contracts.Channels).Draw(t, "channel")
		cmd = contracts.AuthorizePayment{PaymentID: pid, OrderID: "o" + pid, BuyerID: "b" + pid, SellerID: "s1",
			Channel: ch, Jurisdiction: "ID", Category: "fashion", Amount: amount}
	case 1:
		c := contracts.CapturePayment{PaymentID: pid}
		if rapid.Bool().Draw(t, "partial") {
			c.Amount = &amount
		}
		cmd = c
	case 2:
		cmd = contracts.VoidPayment{PaymentID: pid, Reason: "cancelled"}
	case 3:
		cmd = contracts.RefundPayment{PaymentID: pid, RefundID: fmt.Sprintf("r%d", m.events[pid]), Amount: amount, Reason: "returned"}
	case 4:
		cmd = contracts.SettlePayment{PaymentID: pid}
	case 5:
		m.togglePolicy(t)
		return decidertest.Step[Inputs]{}, false
	case 6:
		m.now = m.now.Add(time.Duration(rapid.IntRange(0, 3).Draw(t, "seconds")) * time.Second)
		return decidertest.Step[Inputs]{}, false
	}
	return decidertest.Step[Inputs]{ID: pid, Cmd: cmd, In: m.inputs(state(pid), pid, cmd), Now: m.now}, true
}

func (m *ledgerModel) togglePolicy(t *rapid.T) {
	if len(m.rules) == 0 || m.rules[len(m.rules)-1].LiftedAt.After(m.now) || !m.rules[len(m.rules)-1].LiftedAt.IsZero() {
		at := m.now.Add(time.Duration(rapid.IntRange(0, 2).Draw(t, "effective")) * time.Second)
		m.rules = append(m.rules, freeze(fmt.Sprintf("f%d", len(m.rules)), socialID, at))
		return
	}
	m.rules[len(m.rules)-1].LiftedAt = m.now
}

// inputs are the inputs of a decision on payment pid in state s.
func (m *ledgerModel) inputs(s State, pid string, cmd any) Inputs {
	// The order each payment is for, as the log has it: priced as the
	// command asks, on the channel drawn for it, and confirmed with the
	// payment once it is authorized (the checkout captures on confirmation).
	o := Order{ID: s.OrderID, Placed: true, BuyerID: s.BuyerID, SellerID: s.SellerID, Channel: s.Target.Channel,
		Jurisdiction: s.Target.Jurisdiction, Category: s.Target.Category,
		Total: contracts.Money{AmountMinor: s.AuthorizedMinor, Currency: s.Currency}, Confirmed: true, PaymentID: pid}
	if c, ok := cmd.(contracts.AuthorizePayment); ok {
		o = Order{ID: c.OrderID, Placed: true, BuyerID: c.BuyerID, SellerID: c.SellerID, Channel: c.Channel,
			Jurisdiction: c.Jurisdiction, Category: c.Category, Total: c.Amount}
	}
	o.UnitPrice = o.Total
	return Inputs{Order: o, Rules: m.rules, FeeBasisPoints: m.fee}
}

// accepted checks one decided event against the payment before it.
func (m *ledgerModel) accepted(t *rapid.T, pid string, s State, e any) {
	m.events[pid]++
	switch e := e.(type) {
	case contracts.PaymentCaptured:
		if m.voided[pid] {
			t.Fatalf("voided payment %s captured", pid)
		}
		m.checkNotFrozen(t, contracts.OpPaymentCapture, s.Target)
	case contracts.PaymentAuthorized:
		m.checkNotFrozen(t, contracts.OpPaymentAuthorize, contracts.Target{Jurisdiction: e.Jurisdiction, Channel: e.Channel,
			Category: e.Category, SellerID: e.SellerID})
	case contracts.PaymentVoided:
		m.voided[pid] = true
	}
}

func (m *ledgerModel) checkNotFrozen(t *rapid.T, op contracts.Operation, target contracts.Target) {
	for _, r := range m.rules {
		if r.Blocks(op, target, contracts.Money{}, m.now) {
			t.Fatalf("%s accepted under freeze %s", op, r.RuleID)
		}
	}
}

// check checks the ledger invariants over every payment.
func check(t *rapid.T, states map[string]State) {
	sums := map[string]int64{}
	for pid, s := range states {
		if s.Corrupt != nil {
			t.Fatalf("%s corrupt: %v", pid, s.Corrupt)
		}
		if s.RefundedMinor > s.CapturedMinor || s.CapturedMinor > s.AuthorizedMinor {
			t.Fatalf("%s: refunded %d, captured %d, authorized %d", pid, s.RefundedMinor, s.CapturedMinor, s.AuthorizedMinor)
		}
		for k, v := range s.Balances {
			sum, ok := addChecked(sums[k.Currency], v)
			if !ok {
				t.Fatalf("sum in %s overflows", k.Currency)
			}
			sums[k.Currency] = sum
		}
	}
	for c, v := range sums {
		if v != 0 {
			t.Fatalf("postings in %s sum to %d", c, v)
		}
	}
}

// TestPropertyLedgerInvariants runs random command sequences over three
// payments under a freeze that comes and goes: postings sum to zero per
// currency, refunds never exceed captures, a voided payment is never
// captured, nothing blocked is accepted, and replaying each payment's
// events gives exactly the state live application built.
func TestPropertyLedgerInvariants(t *testing.T) {
	spec.Property(t, func(t *rapid.T) decidertest.Model[State, Inputs] {
		m := &ledgerModel{fee: rapid.Int64Range(0, MaxFeeBasisPoints).Draw(t, "fee_bps"), now: t0, voided: map[string]bool{}, events: map[string]int{}}
		return decidertest.Model[State, Inputs]{StepsMax: 60, Next: m.next, Accepted: m.accepted, Invariant: check}
	})
}

package projections

import (
	"fmt"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// Balances is the read model of account balances per account and currency,
// in minor units, from the double-entry postings of payment events.
// Captures, refunds and settlements move balances; an authorization is a
// pending transfer, kept apart until it is captured or voided.
//
// After every event it asserts the ledger's invariant: the balances of all
// accounts sum to zero in every currency. A violation is an error naming the
// position, and the engine stops the model rather than serve a wrong sum.
type Balances struct {
	state struct {
		Balances map[string]map[string]int64 `json:"balances"` // account -> currency -> minor units
		Pending  map[string]map[string]int64 `json:"pending"`  // account -> currency -> minor units
		// Authorizations are each payment's pending legs, released on
		// capture or void.
		Authorizations map[string][]contracts.Posting `json:"authorizations"`
	}
	// totals per currency over all accounts; derived, always zero between events.
	totals map[string]int64
}

// NewBalances returns an empty balances model.
func NewBalances() *Balances {
	m := &Balances{totals: map[string]int64{}}
	m.state.Balances = map[string]map[string]int64{}
	m.state.Pending = map[string]map[string]int64{}
	m.state.Authorizations = map[string][]contracts.Posting{}
	return m
}

// Name implements Model.
func (m *Balances) Name() string { return ModelBalances }

// Apply implements Model.
func (m *Balances) Apply(e events.Event, payload any) error {
	const op = "projections.Balances"
	var moved []contracts.Posting
	switch p := payload.(type) {
	case contracts.PaymentAuthorized:
		if err := contracts.CheckPostings(p.PendingPostings); err != nil {
			return positionErr(op, e.Position, err)
		}
		m.state.Authorizations[p.PaymentID] = p.PendingPostings
		addAll(m.state.Pending, p.PendingPostings, 1)
	case contracts.PaymentCaptured:
		m.release(p.PaymentID)
		moved = p.Postings
	case contracts.PaymentVoided:
		m.release(p.PaymentID)
	case contracts.PaymentRefunded:
		moved = p.Postings
	case contracts.PaymentSettled:
		moved = p.Postings
	default:
		return nil
	}
	if moved != nil {
		if err := contracts.CheckPostings(moved); err != nil {
			return positionErr(op, e.Position, err)
		}
		addAll(m.state.Balances, moved, 1)
		for _, p := range moved {
			m.totals[p.Currency] += p.AmountMinor
		}
	}
	return m.checkZero(e.Position)
}

// checkZero asserts the sum per currency over all accounts is zero.
func (m *Balances) checkZero(pos uint64) error {
	for cur, sum := range m.totals {
		if sum != 0 {
			return invariantErr("projections.Balances", pos,
				fmt.Sprintf("balances in %s sum to %d over all accounts, not 0", cur, sum))
		}
	}
	return nil
}

func (m *Balances) release(paymentID string) {
	if legs, ok := m.state.Authorizations[paymentID]; ok {
		addAll(m.state.Pending, legs, -1)
		delete(m.state.Authorizations, paymentID)
	}
}

// addAll adds sign*amount of every leg, dropping balances that reach zero so
// that the snapshot does not depend on how a zero was reached.
func addAll(book map[string]map[string]int64, legs []contracts.Posting, sign int64) {
	for _, p := range legs {
		byCur := book[p.Account]
		if byCur == nil {
			byCur = map[string]int64{}
			book[p.Account] = byCur
		}
		byCur[p.Currency] += sign * p.AmountMinor
		if byCur[p.Currency] == 0 {
			delete(byCur, p.Currency)
			if len(byCur) == 0 {
				delete(book, p.Account)
			}
		}
	}
}

// Snapshot implements Model.
func (m *Balances) Snapshot() ([]byte, error) { return canonical(&m.state) }

// Restore implements Model. It checks the restored balances sum to zero.
func (m *Balances) Restore(data []byte) error {
	n := NewBalances()
	if err := restore(m.Name(), data, &n.state); err != nil {
		return err
	}
	for _, mp := range []*map[string]map[string]int64{&n.state.Balances, &n.state.Pending} {
		if *mp == nil {
			*mp = map[string]map[string]int64{}
		}
	}
	if n.state.Authorizations == nil {
		n.state.Authorizations = map[string][]contracts.Posting{}
	}
	for _, byCur := range n.state.Balances {
		for cur, v := range byCur {
			n.totals[cur] += v
		}
	}
	if err := n.checkZero(0); err != nil {
		return &events.Error{Op: "projections.Restore", Kind: events.KindIntegrity, Field: m.Name(), Err: err}
	}
	*m = *n
	return nil
}

// Balance returns an account's balance in a currency.
func (m *Balances) Balance(account, currency string) int64 {
	return m.state.Balances[account][currency]
}

// Totals returns the sum per currency over all accounts (zero when sound).
func (m *Balances) Totals() map[string]int64 {
	out := map[string]int64{}
	for k, v := range m.totals {
		out[k] = v
	}
	return out
}

// Rows implements Model.
func (m *Balances) Rows() Table {
	t := Table{Columns: []string{"account", "currency", "balance_minor", "pending_minor"}}
	accounts := map[string]bool{}
	for a := range m.state.Balances {
		accounts[a] = true
	}
	for a := range m.state.Pending {
		accounts[a] = true
	}
	for _, a := range sortedKeys(accounts) {
		curs := map[string]bool{}
		for c := range m.state.Balances[a] {
			curs[c] = true
		}
		for c := range m.state.Pending[a] {
			curs[c] = true
		}
		for _, c := range sortedKeys(curs) {
			t.Rows = append(t.Rows, []string{a, c, itoa(m.state.Balances[a][c]), itoa(m.state.Pending[a][c])})
		}
	}
	return t
}

package models

import (
	"fmt"
	"slices"
	"strings"

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
	touched
	monotone
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

// Apply implements Model. Every sum is overflow-checked and computed in
// full before the model changes: an event that would take a balance past
// int64 stops the model with an integrity error naming the position, the
// account and the currency, and leaves the model as it was. (A wrapped
// balance would go unseen by the zero-sum check, which holds modulo 2^64.)
func (m *Balances) Apply(e events.Event, payload any) error {
	const op = "projections.Balances"
	var (
		authorized, released []contracts.Posting
		moved                []contracts.Posting
		paymentID            string
	)
	switch p := payload.(type) {
	case contracts.PaymentAuthorized:
		if err := contracts.CheckPostings(p.PendingPostings); err != nil {
			return positionErr(op, e.Position, err)
		}
		paymentID, authorized = p.PaymentID, p.PendingPostings
	case contracts.PaymentCaptured:
		paymentID, released, moved = p.PaymentID, m.state.Authorizations[p.PaymentID], p.Postings
	case contracts.PaymentVoided:
		paymentID, released = p.PaymentID, m.state.Authorizations[p.PaymentID]
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
	}
	// Pending: an authorization adds its legs, a capture or a void takes
	// them out again; an event does one or the other.
	pending, err := sums(m.state.Pending, authorized, released)
	if err != nil {
		return invariantErr(op, e.Position, "pending "+err.Error())
	}
	balances, err := sums(m.state.Balances, moved, nil)
	if err != nil {
		return invariantErr(op, e.Position, err.Error())
	}
	totals := map[string]int64{}
	for _, p := range moved {
		t, seen := totals[p.Currency]
		if !seen {
			t = m.totals[p.Currency]
		}
		if t, err = add(t, p.AmountMinor, "all accounts", p.Currency); err != nil {
			return invariantErr(op, e.Position, err.Error())
		}
		totals[p.Currency] = t
	}
	// Every sum fits: apply them.
	for _, legs := range [][]contracts.Posting{authorized, released, moved} {
		for _, p := range legs {
			m.touch("account/" + p.Account)
		}
	}
	if paymentID != "" {
		m.touch("authorization/" + paymentID)
	}
	set(m.state.Pending, pending)
	set(m.state.Balances, balances)
	for cur, t := range totals {
		m.totals[cur] = t
	}
	switch {
	case authorized != nil:
		m.state.Authorizations[paymentID] = authorized
	case paymentID != "":
		delete(m.state.Authorizations, paymentID)
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

// cell is one account's balance in one currency.
type cell struct{ account, currency string }

// sums returns the balances of book that plus and minus touch, after
// adding every leg of plus and subtracting every leg of minus, without
// changing book. A sum past int64 is an error naming the account and the
// currency.
func sums(book map[string]map[string]int64, plus, minus []contracts.Posting) (map[cell]int64, error) {
	out := map[cell]int64{}
	for i, legs := range [][]contracts.Posting{plus, minus} {
		for _, p := range legs {
			c := cell{p.Account, p.Currency}
			v, seen := out[c]
			if !seen {
				v = book[p.Account][p.Currency]
			}
			var err error
			if i == 0 {
				v, err = add(v, p.AmountMinor, p.Account, p.Currency)
			} else {
				v, err = sub(v, p.AmountMinor, p.Account, p.Currency)
			}
			if err != nil {
				return nil, err
			}
			out[c] = v
		}
	}
	return out, nil
}

// set writes balances into book, dropping those that reach zero so that
// the snapshot does not depend on how a zero was reached.
func set(book map[string]map[string]int64, balances map[cell]int64) {
	for c, v := range balances {
		byCur := book[c.account]
		if v == 0 {
			delete(byCur, c.currency)
			if len(byCur) == 0 {
				delete(book, c.account)
			}
			continue
		}
		if byCur == nil {
			byCur = map[string]int64{}
			book[c.account] = byCur
		}
		byCur[c.currency] = v
	}
}

// add is contracts.AddMinor with an error naming what overflowed.
func add(a, b int64, account, currency string) (int64, error) {
	s, ok := contracts.AddMinor(a, b)
	if !ok {
		return 0, fmt.Errorf("balance of %s in %s overflows int64: %d + %d", account, currency, a, b)
	}
	return s, nil
}

// sub is contracts.SubMinor with an error naming what overflowed.
func sub(a, b int64, account, currency string) (int64, error) {
	d, ok := contracts.SubMinor(a, b)
	if !ok {
		return 0, fmt.Errorf("balance of %s in %s overflows int64: %d - %d", account, currency, a, b)
	}
	return d, nil
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
	for _, account := range sortedKeys(n.state.Balances) {
		for cur, v := range n.state.Balances[account] {
			t, err := add(n.totals[cur], v, "all accounts (at "+account+")", cur)
			if err != nil {
				return &events.Error{Op: "projections.Restore", Kind: events.KindIntegrity, Field: m.Name(), Err: err}
			}
			n.totals[cur] = t
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
	t := Table{Columns: m.Columns()}
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

// Row implements Keyed: "account/<account>" is one account's balances and
// pending amounts by currency; "authorization/<payment>" is one payment's
// pending legs.
func (m *Balances) Row(key string) ([]byte, bool) {
	if id, ok := strings.CutPrefix(key, "authorization/"); ok {
		legs, ok := m.state.Authorizations[id]
		return row(legs, ok)
	}
	acct, ok := strings.CutPrefix(key, "account/")
	if !ok {
		return nil, false
	}
	b, okB := m.state.Balances[acct]
	p, okP := m.state.Pending[acct]
	if !okB && !okP {
		return nil, false
	}
	return row(accountRow{Balances: b, Pending: p}, true)
}

// Columns implements Tabular.
func (m *Balances) Columns() []string {
	return []string{"account", "currency", "balance_minor", "pending_minor"}
}

// TableRows implements Tabular: an "account/" row is a table row per
// currency it holds a balance or a pending amount in, as Rows gives them;
// an "authorization/" row is in none.
func (m *Balances) TableRows(key string, body []byte) ([][]string, error) {
	acct, ok := strings.CutPrefix(key, "account/")
	if !ok {
		return nil, nil
	}
	var r accountRow
	if err := restore(m.Name(), body, &r); err != nil {
		return nil, err
	}
	curs := map[string]bool{}
	for c := range r.Balances {
		curs[c] = true
	}
	for c := range r.Pending {
		curs[c] = true
	}
	var out [][]string
	for _, c := range sortedKeys(curs) {
		out = append(out, []string{acct, c, itoa(r.Balances[c]), itoa(r.Pending[c])})
	}
	return out, nil
}

// accountRow is one account's row in the balances model.
type accountRow struct {
	Balances map[string]int64 `json:"balances,omitempty"`
	Pending  map[string]int64 `json:"pending,omitempty"`
}

// RowKeys implements Keyed.
func (m *Balances) RowKeys() []string {
	keys := prefixed("account/", sortedKeys(m.state.Balances))
	for acct := range m.state.Pending {
		if _, ok := m.state.Balances[acct]; !ok {
			keys = append(keys, "account/"+acct)
		}
	}
	keys = append(keys, prefixed("authorization/", sortedKeys(m.state.Authorizations))...)
	slices.Sort(keys)
	return keys
}

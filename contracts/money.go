package contracts

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"

	"github.com/marketledger/ledger/events"
)

// Money is an amount in integer minor units of an ISO 4217 currency
// (cents for USD, sen for IDR). Floats never appear: every sum the ledger
// makes is exact.
type Money struct {
	// AmountMinor is the amount in minor units; a price is at least 1.
	AmountMinor int64 `json:"amount_minor" schema:"min=1" doc:"amount in minor units of the currency (cents, sen), at least 1"`
	// Currency is an active ISO 4217 code, upper case.
	Currency string `json:"currency" schema:"currency" doc:"ISO 4217 currency code"`
}

// MaxAmountMinor bounds every single amount: 2^53-1 minor units, the
// largest integer a JSON consumer using IEEE doubles (JavaScript) reads
// exactly. It also keeps the sum of a movement's legs far from int64
// overflow, and a typo of many zeros is refused rather than booked.
const MaxAmountMinor = math.MaxInt64 / 1024

// AddMinor returns a+b and true, or 0 and false when the sum overflows
// int64. Every sum of minor units the ledger keeps (the legs of a movement,
// an account's balance, a seller's day of sales) goes through it or
// SubMinor, so that money is never wrapped modulo 2^64: a wrapped balance can
// still sum to zero with the others, and no zero-sum assertion would see it.
// It works through math/bits so that the check is exact rather than a
// comparison that the compiler may reason away.
func AddMinor(a, b int64) (int64, bool) {
	s, _ := bits.Add64(uint64(a), uint64(b), 0)
	r := int64(s)
	// Signed overflow happened iff a and b share a sign that r does not.
	if (a >= 0) == (b >= 0) && (r >= 0) != (a >= 0) {
		return 0, false
	}
	return r, true
}

// SubMinor returns a-b and true, or 0 and false when the difference
// overflows int64 (math.MinInt64 has no negation, so a-b is not a+(-b)).
func SubMinor(a, b int64) (int64, bool) {
	d, _ := bits.Sub64(uint64(a), uint64(b), 0)
	r := int64(d)
	// Signed overflow happened iff a and b differ in sign and r's sign is not a's.
	if (a >= 0) != (b >= 0) && (r >= 0) != (a >= 0) {
		return 0, false
	}
	return r, true
}

// Validate checks that m is a positive amount in a known currency. Fields of
// the error are relative ("/amount_minor"); callers prefix the path of m.
func (m Money) Validate() error {
	if !IsCurrency(m.Currency) {
		return invalidAt("", "/currency", "ISO 4217 currency code")
	}
	if m.AmountMinor < 1 {
		return invalidAt("", "/amount_minor", "minimum 1")
	}
	if m.AmountMinor > MaxAmountMinor {
		return invalidAt("", "/amount_minor", fmt.Sprintf("maximum %d", int64(MaxAmountMinor)))
	}
	return nil
}

// String formats m as "USD 100.00", with as many decimals as the currency's
// exponent.
func (m Money) String() string {
	exp, ok := CurrencyExponent(m.Currency)
	if !ok || exp == 0 {
		return m.Currency + " " + strconv.FormatInt(m.AmountMinor, 10)
	}
	neg := m.AmountMinor < 0
	u := uint64(m.AmountMinor)
	if neg {
		u = -u
	}
	s := strconv.FormatUint(u, 10)
	for len(s) <= exp {
		s = "0" + s
	}
	s = s[:len(s)-exp] + "." + s[len(s)-exp:]
	if neg {
		s = "-" + s
	}
	return m.Currency + " " + s
}

// ParseMoney parses the human form "USD 100", "USD 100.00" or "IDR 1500000.5"
// (code, one space, a non-negative decimal with at most the currency's
// number of decimals) into minor units. It is meant for CLI flags and
// configuration; JSON bodies carry amount_minor directly.
func ParseMoney(s string) (Money, error) {
	const op = "contracts.ParseMoney"
	code, num, ok := strings.Cut(s, " ")
	if !ok || len(code) != 3 {
		return Money{}, invalidAt(op, "", `money must be "<ISO 4217 code> <amount>", for example "USD 100.00"`)
	}
	exp, ok := CurrencyExponent(code)
	if !ok {
		return Money{}, invalidAt(op, "/currency", "ISO 4217 currency code")
	}
	whole, frac, hasDot := strings.Cut(num, ".")
	if whole == "" || !allDigits(whole) || (hasDot && (frac == "" || !allDigits(frac))) {
		return Money{}, invalidAt(op, "/amount_minor", "amount must be digits with an optional decimal point")
	}
	if len(frac) > exp {
		return Money{}, invalidAt(op, "/amount_minor", fmt.Sprintf("%s has %d decimals", code, exp))
	}
	frac += strings.Repeat("0", exp-len(frac))
	v, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil || v > MaxAmountMinor {
		return Money{}, invalidAt(op, "/amount_minor", fmt.Sprintf("maximum %d", int64(MaxAmountMinor)))
	}
	m := Money{AmountMinor: v, Currency: code}
	if err := m.Validate(); err != nil {
		e := *err.(*events.Error)
		e.Op = op
		return Money{}, &e
	}
	return m, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

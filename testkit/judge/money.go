package judge

import (
	"fmt"
	"math/bits"
)

// posting is one leg of a double-entry movement.
type posting struct {
	Account     string `json:"account"`
	AmountMinor int64  `json:"amount_minor"`
	Currency    string `json:"currency"`
}

// addInt64 adds with overflow detection: the sum wrapped iff both
// operands share a sign the result does not.
func addInt64(a, b int64) (int64, bool) {
	s, _ := bits.Add64(uint64(a), uint64(b), 0)
	r := int64(s)
	if (a >= 0) == (b >= 0) && (r >= 0) != (a >= 0) {
		return 0, false
	}
	return r, true
}

// checkPostings returns what is wrong with one movement: a zero leg, a sum
// per currency that overflows, or one that is not zero.
func checkPostings(ps []posting) []Finding {
	var out []Finding
	sums := map[string]int64{}
	var order []string
	for i, p := range ps {
		if p.AmountMinor == 0 {
			out = append(out, Finding{Kind: FindingPostings, Detail: fmt.Sprintf("posting %d (%s): amount_minor is 0", i, p.Account)})
		}
		s, seen := sums[p.Currency]
		if !seen {
			order = append(order, p.Currency)
		}
		sum, ok := addInt64(s, p.AmountMinor)
		if !ok {
			out = append(out, Finding{Kind: FindingOverflow, Detail: fmt.Sprintf("posting %d (%s): the sum in %s leaves int64", i, p.Account, p.Currency)})
			return out
		}
		sums[p.Currency] = sum
	}
	if len(ps) < 2 {
		out = append(out, Finding{Kind: FindingPostings, Detail: fmt.Sprintf("a movement needs at least 2 postings, has %d", len(ps))})
	}
	for _, c := range order {
		if sums[c] != 0 {
			out = append(out, Finding{Kind: FindingPostings, Detail: fmt.Sprintf("postings in %s sum to %d, not 0", c, sums[c])})
		}
	}
	return out
}

// balances keeps every account's balance per currency, overflow-checked.
type balances map[string]int64

// post adds the movement to the balances, or returns where a balance
// would leave int64 (the balance is then left as it was).
func (b balances) post(ps []posting) []Finding {
	var out []Finding
	for _, p := range ps {
		k := p.Account + " " + p.Currency
		s, ok := addInt64(b[k], p.AmountMinor)
		if !ok {
			out = append(out, Finding{Kind: FindingOverflow, Detail: fmt.Sprintf("the balance of %s in %s leaves int64", p.Account, p.Currency)})
			continue
		}
		b[k] = s
	}
	return out
}

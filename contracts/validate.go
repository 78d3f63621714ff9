package contracts

import (
	"fmt"
	"math/bits"
)

// semantic is implemented by contract types whose rules go beyond what a
// JSON Schema can say (cross-field arithmetic, postings). The errors name
// JSON pointers, like schema errors.
type semantic interface {
	validate() error
}

func (e ListingPriceChanged) validate() error {
	if e.Price.Currency != e.PreviousPrice.Currency {
		return invalidAt("", "/price/currency", "same currency as /previous_price/currency")
	}
	return nil
}

func (e OrderPlaced) validate() error {
	return checkTotal(e.UnitPrice, e.Quantity, e.Total)
}

func (e OrderPlacedV1) validate() error {
	return checkTotal(e.UnitPrice, e.Quantity, e.Total)
}

func checkTotal(unit Money, qty int64, total Money) error {
	if total.Currency != unit.Currency {
		return invalidAt("", "/total/currency", "same currency as /unit_price/currency")
	}
	hi, lo := bits.Mul64(uint64(unit.AmountMinor), uint64(qty))
	if hi != 0 || lo > MaxAmountMinor || int64(lo) != total.AmountMinor {
		return invalidAt("", "/total/amount_minor", "equals /unit_price/amount_minor × /quantity")
	}
	return nil
}

func (e PaymentAuthorized) validate() error {
	return checkMovement("/pending_postings", e.PendingPostings, e.Amount)
}

func (e PaymentCaptured) validate() error { return checkMovement("/postings", e.Postings, e.Amount) }

func (e PaymentRefunded) validate() error { return checkMovement("/postings", e.Postings, e.Amount) }

func (e PaymentSettled) validate() error {
	if e.Net.Currency != e.Gross.Currency {
		return invalidAt("", "/net/currency", "same currency as /gross/currency")
	}
	if sum, ok := AddMinor(e.Net.AmountMinor, e.FeeMinor); !ok || sum != e.Gross.AmountMinor {
		return invalidAt("", "/net/amount_minor", "/net/amount_minor + /fee_minor equals /gross/amount_minor")
	}
	return checkMovement("/postings", e.Postings, e.Gross)
}

// checkMovement checks the double-entry rules and that the movement moves
// exactly amount: its positive legs add up to it, all in its currency.
func checkMovement(at string, ps []Posting, amount Money) error {
	if err := CheckPostings(ps); err != nil {
		return under(at, err)
	}
	var moved int64
	for i, p := range ps {
		if p.Currency != amount.Currency {
			return invalidAt("", fmt.Sprintf("%s/%d/currency", at, i), "same currency as the amount")
		}
		if p.AmountMinor > 0 {
			moved += p.AmountMinor // bounded: CheckPostings summed without overflow
		}
	}
	if moved != amount.AmountMinor {
		return invalidAt("", at, fmt.Sprintf("positive legs sum to %d, the amount is %d", moved, amount.AmountMinor))
	}
	return nil
}

func (e FreezeImposed) validate() error { return checkFreezeScope(e.Scope) }

func (c ImposeFreeze) validate() error { return checkFreezeScope(c.Scope) }

// checkFreezeScope makes freezing everything explicit: a freeze whose scope
// is empty by accident would stop the whole marketplace.
func checkFreezeScope(s Scope) error {
	if s.All && !s.IsEmpty() {
		return invalidAt("", "/scope/all", "all: true excludes jurisdictions, channels, categories and sellers")
	}
	if !s.All && s.IsEmpty() {
		return invalidAt("", "/scope", "a freeze names at least one of jurisdictions, channels, categories, sellers, or sets all: true")
	}
	return nil
}

package payment

import (
	"fmt"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/contracts/policyview"
	"github.com/marketledger/ledger/events"
)

// frozen returns the KindFrozen error of the first freeze in force at now
// that blocks op on target, or nil. Floor prices are not judged here: they
// are about unit prices, which the listing and order services see and a
// payment does not; a payment honours them through the order it pays for.
func frozen(op contracts.Operation, target contracts.Target, rules []contracts.Rule, now time.Time) error {
	for _, r := range rules {
		if r.Kind != contracts.RuleFreeze || !r.Blocks(op, target, contracts.Money{}, now) {
			continue
		}
		// The cause is the shared policyview.Refusal, so that callers (the
		// checkout) read the rule the same way from every service.
		return &events.Error{Op: string(op), Kind: events.KindFrozen, Field: r.RuleID,
			Rule: fmt.Sprintf("%s is frozen by rule %s in force since %s (legal basis: %s)",
				op, r.RuleID, r.EffectiveAt.UTC().Format(time.RFC3339), r.LegalBasis),
			Err: &policyview.Refusal{RuleID: r.RuleID, Kind: r.Kind, LegalBasis: r.LegalBasis}}
	}
	return nil
}

func invalid(op, field, rule string) error {
	return &events.Error{Op: op, Kind: events.KindInvalid, Field: field, Rule: rule}
}

func notFound(op, id string) error {
	return &events.Error{Op: op, Kind: events.KindNotFound, Field: "/payment_id", Rule: fmt.Sprintf("no payment %q", id)}
}

// wrongState refuses a command the payment's status does not allow; it is a
// conflict (409) because the same command may have been valid a moment ago.
func wrongState(op string, s State, rule string) error {
	return &events.Error{Op: op, Kind: events.KindConflict, Field: "/payment_id",
		Rule: fmt.Sprintf("payment %s is %s: %s", s.ID, statusName(s), rule)}
}

func statusName(s State) string {
	switch {
	case s.Status == StatusNew:
		return "new"
	case s.Settled:
		return "settled"
	}
	return string(s.Status)
}

// checkAmount validates a money field of a command against the payment's
// currency (empty: any known currency). Amounts above MaxAmountMinor are
// refused here so that no sum the payment makes can overflow.
func checkAmount(op, field string, m contracts.Money, currency string) error {
	if err := m.Validate(); err != nil {
		if e, ok := err.(*events.Error); ok {
			return invalid(op, field+e.Field, e.Rule)
		}
		return err
	}
	if currency != "" && m.Currency != currency {
		return invalid(op, field+"/currency", fmt.Sprintf("the payment's currency %s", currency))
	}
	return nil
}

package payment

import (
	"fmt"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/policyview"
)

// blocked returns the KindFrozen error of the first rule in force at now
// that blocks op on the order: a freeze of its scope, or else a floor price
// above its unit price, judged exactly as order.place judges the order
// (policyview.Rules.Check on the same target and unit price). A regulator
// who sets a floor on payment.authorize or payment.capture gets it
// enforced by the service that performs the operation (ADR 0014).
func blocked(op contracts.Operation, o Order, rules []contracts.Rule, now time.Time) error {
	if err := frozen(op, o.Target(), rules, now); err != nil {
		return policyview.WithActor(err, o.BuyerID)
	}
	err := policyview.CheckRules(rules, op, o.Target(), o.UnitPrice, now)
	if e, ok := err.(*events.Error); ok && e.Field != "" {
		// The offending value is the order's unit price, which the
		// command names by its order id (order.place names it by the
		// listing id).
		e.Field = "/order_id"
		if ref, ok := policyview.RefusalOf(err); ok && ref.Floor != nil {
			e.Rule = fmt.Sprintf("%s: the unit price of order %s is %s, the floor %s", e.Rule, o.ID, o.UnitPrice, ref.Floor)
		}
	}
	return policyview.WithActor(err, o.BuyerID)
}

// frozen returns the KindFrozen error of the first freeze in force at now
// that blocks op on target, or nil. The handler passes the rules its policy
// snapshot enforces (policyview.Rules.InForce), whose stated instants are
// cleared: enforcement is the view's, by position.
func frozen(op contracts.Operation, target contracts.Target, rules []contracts.Rule, now time.Time) error {
	for _, r := range rules {
		if r.Kind != contracts.RuleFreeze || !r.Blocks(op, target, contracts.Money{}, now) {
			continue
		}
		// The cause is the shared policyview.Refusal, so that callers (the
		// checkout) read the rule the same way from every service.
		return &events.Error{Op: string(op), Kind: events.KindFrozen, Field: r.RuleID,
			Rule: fmt.Sprintf("%s is frozen by rule %s%s (legal basis: %s)", op, r.RuleID, since(r), r.LegalBasis),
			Err:  &policyview.Refusal{RuleID: r.RuleID, Kind: r.Kind, LegalBasis: r.LegalBasis}}
	}
	return nil
}

// since says from when a rule with a stated instant is in force; rules
// resolved by the policy view state none.
func since(r contracts.Rule) string {
	if r.EffectiveAt.IsZero() {
		return ""
	}
	return " in force since " + r.EffectiveAt.UTC().Format(time.RFC3339)
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

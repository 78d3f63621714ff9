package order

import (
	"context"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events/command"
)

// Payment is the order service's own view of a payment aggregate: what the
// checkout needs to know to leave no money behind an order it gave up. It
// is folded from the payment's contract events, because the order service
// never imports the payment service.
type Payment struct {
	ID string
	// Status is "" (nothing in the log), "authorized", "captured",
	// "voided" or "cancelled" (a void came first: the id is spent).
	Status        string
	Currency      string
	CapturedMinor int64
	RefundedMinor int64
}

// Open reports whether money may still be reserved under the payment:
// nothing is in the log yet (an authorization may be on its way) or an
// authorization stands.
func (p Payment) Open() bool { return p.Status == "" || p.Status == "authorized" }

// RefundableMinor is what was captured and not yet refunded.
func (p Payment) RefundableMinor() int64 { return p.CapturedMinor - p.RefundedMinor }

// PaymentAggregate loads a payment's view with command.Load.
var PaymentAggregate = command.Aggregate[Payment]{
	Context: contracts.ServicePayment,
	Initial: func(id string) Payment { return Payment{ID: id} },
	Evolve:  EvolvePayment,
	// The view holds only values: a copy is a clone.
	Clone: func(p Payment) Payment { return p },
}

// EvolvePayment applies one payment event to the view.
func EvolvePayment(p Payment, payload any) Payment {
	switch e := payload.(type) {
	case contracts.PaymentAuthorized:
		p.Status, p.Currency = "authorized", e.Amount.Currency
	case contracts.PaymentCaptured:
		p.Status, p.CapturedMinor = "captured", e.Amount.AmountMinor
	case contracts.PaymentVoided:
		p.Status = "voided"
	case contracts.PaymentCancelled:
		p.Status = "cancelled"
	case contracts.PaymentRefunded:
		p.RefundedMinor += e.Amount.AmountMinor // bounded: refunds never exceed the capture
	}
	return p
}

// LoadPayment returns a payment's view as the log has it.
func (s *Service) LoadPayment(ctx context.Context, id string) (Payment, error) {
	p, _, err := command.Load(ctx, s.runner, PaymentAggregate, id)
	return p, err
}

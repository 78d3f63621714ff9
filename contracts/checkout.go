package contracts

import (
	"crypto/sha256"
	"encoding/hex"
)

// PaymentID is the id of the one payment an order's checkout makes: "pay-"
// and the order id. Every driver of a checkout uses it, so that the
// authorization is idempotent across restarts and the checkout's
// compensation always finds the order's payment (ADR 0016). An order id
// too long for the prefix is hashed, so the id stays within 128 characters.
func PaymentID(orderID string) string {
	id := "pay-" + orderID
	if len(id) <= 128 {
		return id
	}
	sum := sha256.Sum256([]byte(orderID))
	return "pay-" + hex.EncodeToString(sum[:16])
}

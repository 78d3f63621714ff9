package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// errNotOwner is a command a buyer or seller token may not send: it names
// another party, or an aggregate of another party.
type errNotOwner struct {
	field, detail string
}

func (e errNotOwner) Error() string { return e.detail }

func notFound(field, rule string) error {
	return &events.Error{Op: "http", Kind: events.KindNotFound, Field: field, Rule: rule}
}

// scopeKey puts a buyer's or seller's idempotency key in a namespace of
// its own, so that no caller can take a key another caller (or the
// checkout process manager, whose step keys are predictable) will use:
// the stored key is "u" and a digest of role, subject and key. The same
// key from the same caller maps to the same stored key, so retries still
// get the first result. Other roles' keys, and bodies that are not a JSON
// object, are left as they are (dispatch refuses the latter).
func scopeKey(p httpauth.Principal, body []byte) []byte {
	if p.Role != httpauth.RoleBuyer && p.Role != httpauth.RoleSeller {
		return body
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	var key string
	if raw, ok := m["idempotency_key"]; !ok || json.Unmarshal(raw, &key) != nil || key == "" {
		return body
	}
	sum := sha256.Sum256([]byte(p.Role + "\x00" + p.Subject + "\x00" + key))
	m["idempotency_key"], _ = json.Marshal("u" + hex.EncodeToString(sum[:20]))
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}

// checkOwner binds buyer and seller tokens to their subject: a seller
// creates listings as itself and changes only its own listings and orders;
// a buyer places orders as itself and cancels or completes only its own.
// Commands that only the services send each other (stock reservations,
// payments, confirmations) are the operator's over HTTP. Other roles pass:
// the command's role check already admitted them. cmd is the command named
// name as contracts.DecodeCommand decoded and validated it.
func checkOwner(ctx context.Context, st *stack, p httpauth.Principal, name string, cmd any) error {
	if p.Role != httpauth.RoleBuyer && p.Role != httpauth.RoleSeller {
		return nil
	}
	self := p.Subject
	mustBe := func(field, got string) error {
		if got == self {
			return nil
		}
		return errNotOwner{field, fmt.Sprintf("%s %s may act only as itself: %s is %q", p.Role, self, field, got)}
	}
	listingOf := func(id string) error {
		if st.listing == nil {
			return nil // dispatch answers that the service does not run here
		}
		l, v, err := st.listing.Load(ctx, id)
		if err != nil {
			return err
		}
		if v == 0 {
			// Not created yet: refused here, so that a command cannot wait
			// for someone else's listing of a guessed id. The owner never
			// changes once it exists.
			return notFound("listing_id", "listing "+id+" does not exist")
		}
		if l.SellerID != self {
			return errNotOwner{"listing_id", fmt.Sprintf("listing %s is not seller %s's", id, self)}
		}
		return nil
	}
	orderOf := func(id string) error {
		if st.order == nil {
			return nil
		}
		o, v, err := st.order.Load(ctx, id)
		if err != nil {
			return err
		}
		if v == 0 {
			return notFound("order_id", "order "+id+" does not exist")
		}
		party := o.BuyerID
		if p.Role == httpauth.RoleSeller {
			party = o.SellerID
		}
		if party != self {
			return errNotOwner{"order_id", fmt.Sprintf("order %s is not %s %s's", id, p.Role, self)}
		}
		return nil
	}
	if p.Role == httpauth.RoleSeller {
		switch c := cmd.(type) {
		case contracts.CreateListing:
			return mustBe("seller_id", c.SellerID)
		case contracts.ChangePrice:
			return listingOf(c.ListingID)
		case contracts.ChangeStock:
			return listingOf(c.ListingID)
		case contracts.Delist:
			return listingOf(c.ListingID)
		case contracts.CancelOrder:
			return orderOf(c.OrderID)
		case contracts.ShipOrder:
			return orderOf(c.OrderID)
		}
	} else {
		switch c := cmd.(type) {
		case contracts.PlaceOrder:
			return mustBe("buyer_id", c.BuyerID)
		case contracts.CancelOrder:
			return orderOf(c.OrderID)
		case contracts.CompleteOrder:
			return orderOf(c.OrderID)
		}
	}
	return errNotOwner{"", fmt.Sprintf("%s may not send %s over HTTP: the services send it to each other, or the operator does", p.Role, name)}
}

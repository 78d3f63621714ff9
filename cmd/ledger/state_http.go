package main

import (
	"context"
	"net/http"

	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/services/payment"
)

// stateReply is the current state of one aggregate and the version it is
// at (the count of its events).
type stateReply[S any] struct {
	ID      string `json:"id"`
	Version uint64 `json:"version"`
	State   S      `json:"state"`
}

// mountState answers GET /v1/orders/{id}, /v1/listings/{id} and
// /v1/payments/{id} with the aggregate's current state, folded from its
// events: a client that placed an order follows it without reading the
// log. A buyer or seller token reads only the orders and payments it is a
// party to; listings are public to every token.
func (a *api) mountState(st *stack) {
	type loader func(ctx context.Context, id string) (state any, version uint64, parties [2]string, err error)
	route := func(pattern, context string, load loader) {
		a.mux.Handle(pattern, httpauth.Require(httpauth.Roles()...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("id")
			if err := events.ValidateAggregateID(id); err != nil {
				writeError(w, &events.Error{Kind: events.KindInvalid, Reason: events.ReasonMalformed, Field: "id",
					Rule: "1 to 128 letters, digits, '-' or '_', starting with a letter or digit"})
				return
			}
			s, v, parties, err := load(r.Context(), id)
			if err != nil {
				writeError(w, err)
				return
			}
			p, _ := httpauth.PrincipalFrom(r.Context())
			mine := p.Subject == parties[0] || p.Subject == parties[1]
			if v == 0 || ((p.Role == httpauth.RoleBuyer || p.Role == httpauth.RoleSeller) && parties != [2]string{} && !mine) {
				// Another party's order answers as one that does not exist:
				// its existence is nobody else's business.
				writeError(w, &events.Error{Kind: events.KindNotFound, Field: "id", Rule: "no " + context + " " + id})
				return
			}
			writeJSON(w, http.StatusOK, stateReply[any]{ID: id, Version: v, State: s})
		})))
	}
	if st.order != nil {
		route("GET /v1/orders/{id}", "order", func(ctx context.Context, id string) (any, uint64, [2]string, error) {
			o, v, err := st.order.Load(ctx, id)
			return o, v, [2]string{o.BuyerID, o.SellerID}, err
		})
	}
	if st.listing != nil {
		route("GET /v1/listings/{id}", "listing", func(ctx context.Context, id string) (any, uint64, [2]string, error) {
			l, v, err := st.listing.Load(ctx, id)
			return l, v, [2]string{}, err
		})
	}
	if st.payment != nil {
		route("GET /v1/payments/{id}", "payment", func(ctx context.Context, id string) (any, uint64, [2]string, error) {
			p, v, err := st.payment.Load(ctx, id)
			view := payment.NewReply(id, command.Result[payment.State]{State: p, Version: v}).Payment
			return view, v, [2]string{p.BuyerID, p.SellerID}, err
		})
	}
}

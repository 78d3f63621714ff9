package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/service"
)

// mountCommands serves every command of the running services as
// POST /v1/commands/<name> ("order.place"), the body being the command's
// contract JSON, and the policy timeline as GET /v1/policy/rules.
func (a *api) mountCommands(st *stack) {
	a.mux.Handle("POST /v1/commands/{name}", httpauth.RequireCommand()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		start, label := time.Now(), name
		if _, ok := contracts.LookupCommand(name); !ok {
			label = "unknown" // a client's name must not become a label
		}
		fail := func(err error) {
			a.metrics.command(label, start, err)
			writeError(w, err)
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			service.HTTPProblem(http.StatusRequestEntityTooLarge, "too_large", "body too large", err.Error()).Write(w)
			return
		}
		if body, err = idempotencyHeader(r, body); err != nil {
			fail(err)
			return
		}
		corr, err := correlationHeader(r)
		if err != nil {
			fail(err)
			return
		}
		w.Header().Set(service.CorrelationHeader, corr)
		p, _ := httpauth.PrincipalFrom(r.Context()) // RequireCommand admitted a caller
		// A buyer's or seller's idempotency key is scoped to its subject,
		// which rewrites it: the command is first checked as sent, so that a
		// key the contract refuses is refused, not hashed into a valid one.
		scoped := scopeKey(p, body)
		if !bytes.Equal(scoped, body) {
			if _, err := contracts.DecodeCommand(name, body); err != nil {
				fail(err)
				return
			}
		}
		cmd, err := contracts.DecodeCommand(name, scoped)
		if err != nil {
			fail(err)
			return
		}
		var owner errNotOwner
		switch err := checkOwner(r.Context(), st, p, name, cmd); {
		case errors.As(err, &owner):
			fail(&events.Error{Kind: events.KindPermission, Field: owner.field,
				Rule: "a buyer or seller token acts only for its own subject", Err: errors.New(owner.detail)})
			return
		case err != nil:
			fail(err)
			return
		}
		// The caller's subject names who sent the command in the record of
		// its refusal by a policy rule, if a rule refuses it.
		cctx := command.WithPrincipal(command.WithCorrelationID(r.Context(), corr), p.Subject)
		reply, err := dispatchDecoded(cctx, st, name, cmd)
		if err != nil {
			fail(err)
			return
		}
		a.metrics.command(label, start, nil)
		writeJSON(w, http.StatusOK, reply)
	})))
	if st.policy != nil {
		a.mux.Handle("GET /v1/policy/rules", httpauth.Require(httpauth.PolicyRulesRoles...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			asOf, err := parseInstant(r.URL.Query().Get("as_of"))
			if err != nil {
				writeError(w, &events.Error{Kind: events.KindInvalid, Reason: events.ReasonMalformed, Field: "as_of",
					Rule: "RFC 3339 instant with offset", Err: err})
				return
			}
			l, err := st.policy.List(r.Context(), asOf)
			if err != nil {
				writeError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, l)
		})))
	}
}

// errServiceNotRunning is returned for a command whose service this
// process does not run (see serve --services).
var errServiceNotRunning = errors.New("service not running in this process")

// dispatch decodes and validates a command by name and hands it to its
// service. Nothing is appended for a command that breaks its contract.
func dispatch(ctx context.Context, st *stack, name string, body []byte) (any, error) {
	cmd, err := contracts.DecodeCommand(name, body)
	if err != nil {
		return nil, err
	}
	return dispatchDecoded(ctx, st, name, cmd)
}

// dispatchDecoded hands a command contracts.DecodeCommand already decoded
// and validated to the service its contract names.
func dispatchDecoded(ctx context.Context, st *stack, name string, cmd any) (any, error) {
	spec, _ := contracts.LookupCommand(name)
	if h := st.handler(spec.Service); h != nil {
		return h(ctx, cmd)
	}
	return nil, &events.Error{Op: name, Kind: events.KindNotFound, Rule: "the " + spec.Service + " service does not run in this process", Err: errServiceNotRunning}
}

// writeError answers with the error's problem: the same mapping of error
// kinds to statuses as the services' NATS endpoints (runtime/service).
func writeError(w http.ResponseWriter, err error) {
	service.ProblemOf(err).Write(w)
}

// idempotencyHeader takes the Idempotency-Key header as the command's key
// when its body names none. A body that names another key is refused: one
// command has one key.
func idempotencyHeader(r *http.Request, body []byte) ([]byte, error) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return body, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return body, nil // the contract check names what is wrong with the body
	}
	if raw, ok := m["idempotency_key"]; ok {
		var inBody string
		if json.Unmarshal(raw, &inBody) == nil && inBody != key {
			return nil, &events.Error{Kind: events.KindInvalid, Reason: events.ReasonMalformed, Field: "Idempotency-Key",
				Rule: "the header and the body's idempotency_key must be the same when both are sent"}
		}
		return body, nil
	}
	m["idempotency_key"], _ = json.Marshal(key)
	return json.Marshal(m)
}

// correlationHeader returns the Ledger-Correlation-Id the caller sent, or a
// new one: every command's events join a flow the caller can follow
// (`ledger trace ID`), and the answer says which.
func correlationHeader(r *http.Request) (string, error) {
	id := r.Header.Get(service.CorrelationHeader)
	if id == "" {
		return events.NewID(), nil
	}
	if err := events.ValidateAggregateID(id); err != nil {
		return "", &events.Error{Kind: events.KindInvalid, Reason: events.ReasonMalformed, Field: service.CorrelationHeader,
			Rule: "1 to 128 letters, digits, '-' or '_', starting with a letter or digit"}
	}
	return id, nil
}

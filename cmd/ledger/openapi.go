package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/projections/models"
)

// openAPIDoc is the OpenAPI 3.1 document of `ledger serve`'s HTTP API,
// built from the contracts registry so that every command's request body is
// its published JSON Schema. docs/openapi.json is a copy a test keeps fresh.
var openAPIDoc = func() []byte {
	b, err := buildOpenAPI()
	if err != nil {
		panic(err) // the registry's schemas are generated and tested: this cannot fail at run time
	}
	return b
}()

type obj = map[string]any

func buildOpenAPI() ([]byte, error) {
	paths := obj{
		"/healthz":      obj{"get": op("Liveness: the process answers", nil, resp200("alive", jsonSchema(obj{"type": "object"})))},
		"/readyz":       obj{"get": op("Readiness: the LEDGER stream is reachable and has a leader (so have the read models' buckets, naming the one it waits for), keeps its guarantees, the read models run, the services' clock is within --max-clock-skew of the log server's, and the services' policy view has missed no policy message", nil, withProblems(resp200("ready", jsonSchema(obj{"type": "object"})), 503))},
		"/metrics":      obj{"get": op("Prometheus metrics: store batches and conflicts, projection lag, Go runtime", nil, obj{"200": obj{"description": "text exposition format", "content": obj{"text/plain": obj{}}}})},
		"/openapi.json": obj{"get": op("This document", nil, resp200("OpenAPI 3.1", jsonSchema(obj{"type": "object"})))},
		"/v1/policy/rules": obj{"get": op("The policy rules and whether each is in force at as_of",
			[]any{queryParam("as_of", "RFC 3339 instant with offset; default now")}, withProblems(resp200("rules", jsonSchema(obj{"type": "object"})), 400))},
		"/v1/events": obj{"get": op("A page of the global log in order, with a cursor to the next page",
			[]any{queryParam("from", "first position (default 1)"), queryParam("to", "last position"), queryParam("subject", "subject pattern, e.g. ledger.order.> (repeatable)"),
				queryParam("type", "event type, e.g. order.placed (repeatable)"), queryParam("correlation_id", "only the events of this flow (the Ledger-Correlation-Id of the command that started it)"),
				queryParam("limit", "1..1000, default 100")},
			withProblems(resp200("{events, next, more}", jsonSchema(obj{"type": "object"})), 400))},
		"/v1/subscribe": obj{"get": op("Server-sent events from a position, then live; each event's SSE id is its position, and a reconnect with Last-Event-ID resumes after it with no gap and no duplicate",
			[]any{queryParam("from", "first position"), queryParam("subject", "subject pattern (repeatable)"), queryParam("type", "event type (repeatable)"),
				queryParam("correlation_id", "only the events of this flow")},
			withProblems(obj{"200": obj{"description": "an event stream", "content": obj{"text/event-stream": obj{}}}}, 400))},
		"/v1/snapshots": obj{"get": op("A signed regulator bundle (zip) of every read model as of an instant; check it with `ledger verify`",
			[]any{queryParam("as_of", "RFC 3339 instant with offset, or a position"), queryParam("clock", "business (default), recorded or position")},
			withProblems(obj{"200": obj{"description": "the bundle", "content": obj{"application/zip": obj{}}}}, 400, 404))},
	}
	asOfParams := []any{
		queryParam("as_of", "a position, or an RFC 3339 instant with an offset (an instant without one is refused); default: the index's head on the position clock"),
		queryParam("clock", "position (default for a number), recorded (server time) or business (occurred-at; default for an instant)"),
		queryParam("known_at", "business clock only: the last log position considered (bitemporal: as of business time T, as known at position P); default the head"),
	}
	modelParam := obj{"name": "model", "in": "path", "required": true, "schema": obj{"type": "string", "enum": models.ModelNames()}}
	paths["/v1/models/{model}/{key}"] = obj{"get": op("One row of a read model as of a position, a recorded instant or a business instant, "+
		"looked up in the as-of index (ADR 0019), with the position the answer reflects. With proof=true, the events that wrote the row "+
		"with their Merkle inclusion proofs against the newest signed notary checkpoint: save the answer and check it with `ledger verify FILE --key HEX`. "+
		"A point past the index's head waits up to 2 s, then answers 503 saying how far behind the index is. Keys: orders by order id; catalogue by "+
		"listing id; balances account/<account> and authorization/<payment>; seller_sales_daily day/<seller>|<day>|<currency> and payment/<payment>; "+
		"policy_timeline by rule id; violations violation/<position>, listing/<id>, order/<id>, payment/<id>, timeline, counts.",
		append([]any{modelParam, obj{"name": "key", "in": "path", "required": true, "schema": obj{"type": "string"}, "description": "the row's key (it may hold '/')"}},
			append(asOfParams, queryParam("proof", "true: add the events that wrote the row and their inclusion proofs"))...),
		withProblems(resp200("{model, clock, as_of, position, known_at, method (index or fold), rows: [{key, version, state}], proof}", jsonSchema(obj{"type": "object"})), 400, 404, 503))}
	paths["/v1/models/{model}"] = obj{"get": op("A page of a read model's rows as of a point, in key order, from the as-of index",
		append([]any{modelParam}, append(asOfParams, queryParam("prefix", "only keys starting with this"),
			queryParam("after", "the previous page's next"), queryParam("limit", "1..1000, default 100"))...),
		withProblems(resp200("{model, clock, as_of, position, method, rows, next}", jsonSchema(obj{"type": "object"})), 400, 503))}
	for _, kind := range []string{"orders", "listings", "payments"} {
		paths["/v1/"+kind+"/{id}"] = obj{"get": op("The current state of one of the "+kind+", folded from its events, and its version; "+
			"a buyer or seller token reads only the orders and payments it is a party to (another's answers 404)",
			[]any{obj{"name": "id", "in": "path", "required": true, "schema": obj{"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"}}},
			withProblems(resp200("{id, version, state}", jsonSchema(obj{"type": "object"})), 400, 404))}
	}
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json"} {
		paths[p].(obj)["get"].(obj)["security"] = []obj{} // open: probes and discovery
	}
	secure := func(path string, roles []string) {
		secured(paths[path].(obj)["get"].(obj), roles)
	}
	secure("/metrics", httpauth.MetricsRoles)
	secure("/v1/policy/rules", httpauth.PolicyRulesRoles)
	secure("/v1/events", httpauth.ReadRoles)
	secure("/v1/subscribe", httpauth.ReadRoles)
	secure("/v1/snapshots", httpauth.ReadRoles)
	secure("/v1/models/{model}/{key}", httpauth.ReadRoles)
	secure("/v1/models/{model}", httpauth.ReadRoles)
	for _, c := range contracts.Commands {
		schema, err := contracts.CommandSchema(c)
		if err != nil {
			return nil, fmt.Errorf("command %s: %w", c.Name, err)
		}
		var s obj
		if err := json.Unmarshal(schema, &s); err != nil {
			return nil, err
		}
		delete(s, "$schema") // OpenAPI 3.1's dialect is 2020-12 already
		o := op(c.Description+" Emits "+strings.Join(c.Emits, ", ")+".", []any{
			obj{"name": "Ledger-Correlation-Id", "in": "header", "required": false, "schema": obj{"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"},
				"description": "the flow the command joins; a new one when absent. The answer names it in the same header."},
			obj{"name": "Idempotency-Key", "in": "header", "required": false, "schema": obj{"type": "string"},
				"description": "the command's idempotency key when its body names none; refused when the body names another"}},
			withProblems(resp200("the aggregate after the command, with the events appended and their positions", jsonSchema(obj{"type": "object"})), 400, 404, 409, 422, 423, 503))
		o["requestBody"] = obj{"required": true, "content": obj{"application/json": obj{"schema": s}}}
		o["tags"] = []string{c.Service}
		secured(o, httpauth.CommandRoles(c.Name))
		paths["/v1/commands/"+c.Name] = obj{"post": o}
	}
	doc := obj{
		"openapi": "3.1.0",
		"info": obj{"title": "marketledger HTTP API", "version": "1.0.0",
			"description": "The HTTP surface of `ledger serve`. Commands are validated against their contracts before deciding; " +
				"a refused command appends nothing. Errors are application/problem+json (RFC 9457) with `field` (a JSON pointer) and `rule`; " +
				"`type` is urn:marketledger:problem:<kind> and `reason`, when present, tells cases of one kind apart (see docs/operations.md, Errors)."},
		"servers":  []obj{{"url": "http://127.0.0.1:8080"}},
		"paths":    paths,
		"security": []obj{{"bearer": []string{}}},
		"components": obj{"schemas": obj{"Problem": problemSchema}, "securitySchemes": obj{"bearer": obj{
			"type": "http", "scheme": "bearer",
			"description": "A token from `ledger token issue --role ROLE --subject WHO`; each operation lists the roles it admits. " +
				"Buyer and seller tokens act only for their subject."}}},
	}
	return json.MarshalIndent(doc, "", "  ")
}

var problemSchema = obj{"type": "object", "required": []string{"type", "title", "status"}, "properties": obj{
	"type": obj{"type": "string"}, "title": obj{"type": "string"}, "status": obj{"type": "integer"},
	"detail": obj{"type": "string"}, "field": obj{"type": "string", "description": "JSON pointer of the offending field"},
	"rule": obj{"type": "string", "description": "the rule the field broke"},
	"reason": obj{"type": "string", "enum": []string{"malformed", "stale_version", "policy_moved", "contention", "no_stock"},
		"description": "what a client matches to tell cases of one kind apart"}}}

func op(summary string, params []any, responses obj) obj {
	o := obj{"summary": summary, "responses": responses}
	if params != nil {
		o["parameters"] = params
	}
	return o
}

func queryParam(name, desc string) obj {
	return obj{"name": name, "in": "query", "required": false, "description": desc, "schema": obj{"type": "string"}}
}

func jsonSchema(s obj) obj { return obj{"application/json": obj{"schema": s}} }

func resp200(desc string, content obj) obj {
	return obj{"200": obj{"description": desc, "content": content}}
}

// secured marks an operation as needing a bearer token of one of roles, with
// the answers of the authentication, role and in-flight checks.
func secured(o obj, roles []string) {
	o["description"] = "Roles: " + strings.Join(roles, ", ") + "."
	o["x-roles"] = roles
	withProblems(o["responses"].(obj), 401, 403, 429)
}

func withProblems(r obj, codes ...int) obj {
	for _, c := range codes {
		r[fmt.Sprint(c)] = obj{"description": http.StatusText(c),
			"content": obj{"application/problem+json": obj{"schema": obj{"$ref": "#/components/schemas/Problem"}}}}
	}
	return r
}

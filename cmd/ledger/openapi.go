package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/marketledger/ledger/cmd/ledger/internal/eventhttp"
	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/bundle"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/runtime/service"
	"github.com/marketledger/ledger/services/listing"
	"github.com/marketledger/ledger/services/order"
	"github.com/marketledger/ledger/services/payment"
	"github.com/marketledger/ledger/services/policy"
)

// openAPIDoc is the OpenAPI 3.1 document of `ledger serve`'s HTTP API:
// every command's request body is its published contract schema, every
// answer's schema is reflected from the Go type the handler encodes, and
// all of them are named under components/schemas. docs/openapi.json is a
// copy a test keeps fresh; another test validates it with an independent
// OpenAPI library and compiles a client generated from it.
var openAPIDoc = func() []byte {
	b, err := buildOpenAPI()
	if err != nil {
		panic(err) // the registry's schemas and the Go types are fixed at build time and tested: this cannot fail at run time
	}
	return b
}()

type obj = map[string]any

func buildOpenAPI() ([]byte, error) {
	c := newComponents()
	paths := obj{}
	for p, o := range openOperations() {
		paths[p] = obj{"get": o}
	}
	for p, o := range readOperations(c) {
		paths[p] = obj{"get": o}
	}
	ops, err := commandOperations(c)
	if err != nil {
		return nil, err
	}
	for p, o := range ops {
		paths[p] = obj{"post": o}
	}
	// Problem.Reason is a plain string in Go; its values are the reasons
	// the events package defines.
	ref[service.Problem](c)
	c.schemas["Problem"].(obj)["properties"].(obj)["reason"] = obj{"type": "string",
		"enum": []string{string(events.ReasonMalformed), string(events.ReasonStaleVersion), string(events.ReasonPolicyMoved),
			string(events.ReasonContention), string(events.ReasonNoStock)},
		"description": "what a client matches to tell cases of one kind apart"}
	doc := obj{
		"openapi": "3.1.0",
		"info": obj{"title": "marketledger HTTP API", "version": "1.0.0",
			"description": "The HTTP surface of `ledger serve`. Commands are validated against their contracts before deciding; " +
				"a refused command appends nothing. Errors are application/problem+json (RFC 9457, #/components/schemas/Problem) with `field` " +
				"(a JSON pointer) and `rule`; `type` is urn:marketledger:problem:<kind> and `reason`, when present, tells cases of one kind apart " +
				"(see docs/operations.md, Errors)."},
		"servers":  []obj{{"url": "http://127.0.0.1:8080"}},
		"paths":    paths,
		"security": []obj{{"bearer": []string{}}},
		"components": obj{"schemas": c.schemas, "securitySchemes": obj{"bearer": obj{
			"type": "http", "scheme": "bearer",
			"description": "A token from `ledger token issue --role ROLE --subject WHO`. Each operation's description and x-roles " +
				"list the roles it admits (roles: " + strings.Join(httpauth.Roles(), ", ") + "); a token of another role is answered 403. " +
				"Buyer and seller tokens act only for their subject."}}},
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// openOperations are the probes and discovery, which need no token.
func openOperations() map[string]obj {
	object := obj{"type": "object"}
	ops := map[string]obj{
		"/healthz": op("health", "Liveness: the process answers", nil, resp200("alive", jsonSchema(object))),
		"/readyz": op("ready", "Readiness: the LEDGER stream is reachable and has a leader (so have the read models' buckets, naming the one "+
			"it waits for), keeps its guarantees, the read models run, the services' clock is within --max-clock-skew of the log server's, "+
			"and the services' policy view has missed no policy message", nil, withProblems(resp200("ready", jsonSchema(object)), 503)),
		"/openapi.json": op("openapi", "This document", nil, resp200("OpenAPI 3.1", jsonSchema(object))),
	}
	for _, o := range ops {
		o["security"] = []obj{}
	}
	return ops
}

// readOperations are the GET endpoints that need a token of a role.
func readOperations(c *components) map[string]obj {
	ops := map[string]obj{
		"/metrics": secured(op("metrics", "Prometheus metrics: store batches and conflicts, projection lag, Go runtime", nil,
			obj{"200": obj{"description": "text exposition format", "content": obj{"text/plain": obj{"schema": obj{"type": "string"}}}}}),
			httpauth.MetricsRoles),
		"/v1/policy/rules": secured(op("listPolicyRules", "The policy rules and whether each is in force at as_of",
			[]any{queryParam("as_of", "an RFC 3339 instant with an offset; default now", obj{"type": "string", "format": "date-time"})},
			withProblems(resp200("the rules", jsonSchema(ref[policy.Listing](c))), 400)), httpauth.PolicyRulesRoles),
		"/v1/events": secured(op("listEvents", "A page of the global log in order, with a cursor to the next page",
			[]any{queryParam("from", "first position", positionSchema(1)), queryParam("to", "last position", positionSchema(nil)),
				arrayParam("subject", "subject pattern, e.g. ledger.order.> (repeatable, or comma-separated)"),
				arrayParam("type", "event type, e.g. order.placed (repeatable, or comma-separated)"),
				queryParam("correlation_id", "only the events of this flow (the Ledger-Correlation-Id of the command that started it)",
					obj{"type": "string", "pattern": contracts.IDPattern}),
				queryParam("limit", "events at most", limitSchema(eventhttp.MaxLimit, eventhttp.DefaultLimit))},
			withProblems(resp200("a page of events", jsonSchema(ref[eventhttp.Page](c))), 400)), httpauth.ReadRoles),
		"/v1/subscribe": secured(op("subscribe", "Server-sent events from a position, then live; each event's SSE id is its position, "+
			"and a reconnect with Last-Event-ID resumes after it with no gap and no duplicate. Each data line is one Event "+
			"(#/components/schemas/Event, also named by the answer's x-event-schema).",
			[]any{queryParam("from", "first position", positionSchema(1)),
				arrayParam("subject", "subject pattern (repeatable, or comma-separated)"),
				arrayParam("type", "event type (repeatable, or comma-separated)"),
				queryParam("correlation_id", "only the events of this flow", obj{"type": "string", "pattern": contracts.IDPattern}),
				obj{"name": "Last-Event-ID", "in": "header", "required": false, "schema": positionSchema(nil),
					"description": "the last position received: the stream resumes after it"}},
			withProblems(obj{"200": obj{"description": "an event stream; each data line is an Event", "content": obj{"text/event-stream": obj{
				"schema": obj{"type": "string"}, "x-event-schema": ref[eventhttp.Event](c)}}}}, 400)), httpauth.ReadRoles),
		"/v1/snapshots": secured(op("getSnapshot", "A signed regulator bundle (zip) of every read model as of an instant; check it with `ledger verify`",
			[]any{queryParam("as_of", "an RFC 3339 instant with an offset, or a position", obj{"type": "string"}),
				queryParam("clock", "the clock as_of is on", obj{"type": "string", "enum": []string{"business", "recorded", "position"}, "default": "business"})},
			withProblems(obj{"200": obj{"description": "the bundle", "content": obj{"application/zip": obj{
				"schema": obj{"type": "string", "contentMediaType": "application/zip"}}}}}, 400, 404)), httpauth.ReadRoles),
	}
	asOfParams := []any{
		queryParam("as_of", "a position, or an RFC 3339 instant with an offset (an instant without one is refused); default: the index's head on the position clock",
			obj{"type": "string"}),
		queryParam("clock", "position (default for a number), recorded (server time) or business (occurred-at; default for an instant)",
			obj{"type": "string", "enum": []string{"position", "recorded", "business"}}),
		queryParam("known_at", "business clock only: the last log position considered (bitemporal: as of business time T, as known at position P); default the head",
			positionSchema(nil)),
	}
	modelParam := obj{"name": "model", "in": "path", "required": true, "schema": obj{"type": "string", "enum": models.ModelNames()}}
	answer := jsonSchema(ref[bundle.RowAnswer](c))
	ops["/v1/models/{model}/{key}"] = secured(op("getModelRow", "One row of a read model as of a position, a recorded instant or a business instant, "+
		"looked up in the as-of index (ADR 0019), with the position the answer reflects. With proof=true, the events that wrote the row "+
		"with their Merkle inclusion proofs against the newest signed notary checkpoint: save the answer and check it with `ledger verify FILE --key HEX`. "+
		"A point past the index's head waits up to 2 s, then answers 503 saying how far behind the index is. Keys: orders by order id; catalogue by "+
		"listing id; balances account/<account> and authorization/<payment>; seller_sales_daily day/<seller>|<day>|<currency> and payment/<payment>; "+
		"policy_timeline by rule id; violations violation/<position>, listing/<id>, order/<id>, payment/<id>, timeline, counts.",
		append([]any{modelParam, obj{"name": "key", "in": "path", "required": true, "schema": obj{"type": "string"}, "description": "the row's key (it may hold '/')"}},
			append(asOfParams, queryParam("proof", "true: add the events that wrote the row and their inclusion proofs", obj{"type": "boolean", "default": false}))...),
		withProblems(resp200("the row", answer), 400, 404, 503)), httpauth.ReadRoles)
	ops["/v1/models/{model}"] = secured(op("listModelRows", "A page of a read model's rows as of a point, in key order, from the as-of index",
		append([]any{modelParam}, append(asOfParams, queryParam("prefix", "only keys starting with this", obj{"type": "string"}),
			queryParam("after", "the previous page's next", obj{"type": "string"}), queryParam("limit", "rows at most", limitSchema(1000, 100)))...),
		withProblems(resp200("a page of rows", answer), 400, 503)), httpauth.ReadRoles)
	for _, st := range []struct {
		kind, opID string
		schema     obj
	}{{"orders", "getOrder", ref[stateReply[order.Order]](c)}, {"listings", "getListing", ref[stateReply[listing.Listing]](c)},
		{"payments", "getPayment", ref[stateReply[payment.View]](c)}} {
		ops["/v1/"+st.kind+"/{id}"] = secured(op(st.opID, "The current state of one of the "+st.kind+", folded from its events, and its version; "+
			"a buyer or seller token reads only the orders and payments it is a party to (another's answers 404)",
			[]any{obj{"name": "id", "in": "path", "required": true, "schema": obj{"type": "string", "pattern": contracts.IDPattern}}},
			withProblems(resp200("the state", jsonSchema(st.schema)), 400, 404)), httpauth.Roles())
	}
	return ops
}

// commandOperations are POST /v1/commands/<name>, one per command of the
// contracts registry, each with the reply type of its service.
func commandOperations(c *components) (map[string]obj, error) {
	replies := map[string]obj{
		contracts.ServiceListing: ref[listing.Reply](c), contracts.ServiceOrder: ref[order.Reply](c),
		contracts.ServicePayment: ref[payment.Reply](c), contracts.ServicePolicy: ref[policy.Reply](c),
	}
	ops := map[string]obj{}
	for _, cmd := range contracts.Commands {
		body, err := c.command(cmd)
		if err != nil {
			return nil, err
		}
		reply, ok := replies[cmd.Service]
		if !ok {
			return nil, fmt.Errorf("command %s: no reply type for service %s", cmd.Name, cmd.Service)
		}
		o := op(operationID(cmd.Name), cmd.Description+" Emits "+strings.Join(cmd.Emits, ", ")+".", []any{
			obj{"name": "Ledger-Correlation-Id", "in": "header", "required": false, "schema": obj{"type": "string", "pattern": contracts.IDPattern},
				"description": "the flow the command joins; a new one when absent. The answer names it in the same header."},
			obj{"name": "Idempotency-Key", "in": "header", "required": false, "schema": obj{"type": "string", "pattern": contracts.IdempotencyKeyPattern},
				"description": "the command's idempotency key when its body names none; refused when the body names another"}},
			withProblems(obj{"200": obj{"description": "the aggregate after the command, with the events appended and their positions",
				"headers": obj{"Ledger-Correlation-Id": obj{"description": "the flow the command joined", "schema": obj{"type": "string"}}},
				"content": jsonSchema(reply)}}, 400, 404, 409, 413, 422, 423, 503))
		o["requestBody"] = obj{"required": true, "content": obj{"application/json": obj{"schema": body}}}
		o["tags"] = []string{cmd.Service}
		ops["/v1/commands/"+cmd.Name] = secured(o, httpauth.CommandRoles(cmd.Name))
	}
	return ops, nil
}

// operationID is a command's operationId: "order.place" is orderPlace.
func operationID(command string) string {
	ctx, verb, _ := strings.Cut(command, ".")
	parts := strings.Split(verb, "_")
	for i, p := range parts {
		parts[i] = upperFirst(p)
	}
	return ctx + strings.Join(parts, "")
}

// positionSchema is a log position: a whole number from 1.
func positionSchema(def any) obj {
	s := obj{"type": "integer", "format": "int64", "minimum": 1}
	if def != nil {
		s["default"] = def
	}
	return s
}

func limitSchema(maximum, def int) obj {
	return obj{"type": "integer", "minimum": 1, "maximum": maximum, "default": def}
}

func op(id, summary string, params []any, responses obj) obj {
	o := obj{"operationId": id, "summary": summary, "responses": responses}
	if params != nil {
		o["parameters"] = params
	}
	return o
}

func queryParam(name, desc string, schema obj) obj {
	return obj{"name": name, "in": "query", "required": false, "description": desc, "schema": schema}
}

// arrayParam is a repeatable query parameter (?type=a&type=b).
func arrayParam(name, desc string) obj {
	return obj{"name": name, "in": "query", "required": false, "description": desc, "style": "form", "explode": true,
		"schema": obj{"type": "array", "items": obj{"type": "string"}, "maxItems": eventhttp.MaxFilters}}
}

func jsonSchema(s obj) obj { return obj{"application/json": obj{"schema": s}} }

func resp200(desc string, content obj) obj {
	return obj{"200": obj{"description": desc, "content": content}}
}

// secured marks an operation as needing a bearer token of one of roles, with
// the answers of the authentication, role and in-flight checks.
func secured(o obj, roles []string) obj {
	o["description"] = "Roles: " + strings.Join(roles, ", ") + "."
	o["x-roles"] = roles
	o["security"] = []obj{{"bearer": []string{}}}
	withProblems(o["responses"].(obj), 401, 403, 429)
	return o
}

func withProblems(r obj, codes ...int) obj {
	for _, c := range codes {
		r[fmt.Sprint(c)] = obj{"description": http.StatusText(c),
			"content": obj{"application/problem+json": obj{"schema": obj{"$ref": "#/components/schemas/Problem"}}}}
	}
	return r
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"unicode"

	"github.com/invopop/jsonschema"

	"github.com/marketledger/ledger/cmd/ledger/internal/eventhttp"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/bundle"
	"github.com/marketledger/ledger/runtime/service"
	"github.com/marketledger/ledger/services/listing"
	"github.com/marketledger/ledger/services/order"
	"github.com/marketledger/ledger/services/payment"
	"github.com/marketledger/ledger/services/policy"
)

// components collects the named schemas of the OpenAPI document: the
// answers reflected from the Go types the handlers encode (by
// github.com/invopop/jsonschema, so that a field added to a Go type is in
// the document at once), and the commands' contract schemas with their
// shared definitions. Every reference points into #/components/schemas.
type components struct {
	schemas obj
	refl    *jsonschema.Reflector
}

// schemaNames are the component names of the answers; other reflected
// types are named by their package and type ("PaymentEventRef"), so that
// two packages' types of one name never share a component.
var schemaNames = map[reflect.Type]string{
	reflect.TypeFor[service.Problem]():                "Problem",
	reflect.TypeFor[eventhttp.Event]():                "Event",
	reflect.TypeFor[eventhttp.Page]():                 "EventsPage",
	reflect.TypeFor[service.Reply[order.Order]]():     "OrderReply",
	reflect.TypeFor[service.Reply[listing.Listing]](): "ListingReply",
	reflect.TypeFor[payment.Reply]():                  "PaymentReply",
	reflect.TypeFor[policy.Reply]():                   "PolicyReply",
	reflect.TypeFor[stateReply[order.Order]]():        "OrderState",
	reflect.TypeFor[stateReply[listing.Listing]]():    "ListingState",
	reflect.TypeFor[stateReply[payment.View]]():       "PaymentState",
	reflect.TypeFor[policy.Listing]():                 "PolicyRules",
	reflect.TypeFor[policy.RuleView]():                "PolicyRule",
	reflect.TypeFor[bundle.RowAnswer]():               "ModelAnswer",
	reflect.TypeFor[order.Order]():                    "Order",
	reflect.TypeFor[listing.Listing]():                "Listing",
	reflect.TypeFor[payment.View]():                   "Payment",
	reflect.TypeFor[events.Event]():                   "StoredEvent",
}

// schemaDocs describe the answers whose Go doc comments the reflection
// cannot read.
var schemaDocs = map[string]string{
	"Problem": "An RFC 9457 problem: every refusal and error of the API. type is urn:marketledger:problem:<kind>; " +
		"field is a JSON pointer (or a parameter's name) and rule the rule it broke; reason, when present, tells cases of one kind apart.",
	"Event":        "One event of the log as served over HTTP, the same in a page and in an SSE data line; every field its hash covers (docs/verifying.md).",
	"EventsPage":   "A page of the global log: next is the position to ask for next; more is true when the page stopped at its limit.",
	"ModelAnswer":  "A read model's rows as of a point, with the position the answer reflects (and, with proof=true, inclusion proofs).",
	"PolicyRules":  "The policy rules recorded by as_of and whether each is in force.",
	"OrderState":   "An order's current state and its version (the count of its events).",
	"ListingState": "A listing's current state and its version (the count of its events).",
	"PaymentState": "A payment's current state and its version (the count of its events).",
}

func newComponents() *components {
	c := &components{schemas: obj{}}
	c.refl = &jsonschema.Reflector{Anonymous: true, Namer: schemaName}
	return c
}

// schemaName is the component name of a reflected Go type.
func schemaName(t reflect.Type) string {
	if n, ok := schemaNames[t]; ok {
		return n
	}
	pkg := t.PkgPath()[strings.LastIndex(t.PkgPath(), "/")+1:]
	name, _, _ := strings.Cut(t.Name(), "[")
	return upperFirst(pkg) + upperFirst(name)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}

var defsRef = regexp.MustCompile(`"#/\$defs/`)

// reflect adds the schema of Go type t and of every type it names, and
// returns a reference to it.
func (c *components) reflect(t reflect.Type) (obj, error) {
	s := c.refl.ReflectFromType(t)
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	b = defsRef.ReplaceAll(b, []byte(`"#/components/schemas/`))
	var root obj
	if err := json.Unmarshal(b, &root); err != nil {
		return nil, err
	}
	anyValue(root)
	defs, _ := root["$defs"].(map[string]any)
	for name, d := range defs {
		if doc, ok := schemaDocs[name]; ok {
			d.(map[string]any)["description"] = doc
		}
		if err := c.add(name, d.(map[string]any)); err != nil {
			return nil, err
		}
	}
	delete(root, "$defs")
	delete(root, "$schema")
	return root, nil
}

// ref is a reference to the component of Go type T.
func ref[T any](c *components) obj {
	t := reflect.TypeFor[T]()
	r, err := c.reflect(t)
	if err != nil {
		panic(fmt.Sprintf("schema of %s: %v", t, err)) // the types are fixed at build time; a test builds them all
	}
	return r
}

// add names a schema, refusing a second, different one of the same name.
func (c *components) add(name string, s obj) error {
	if old, ok := c.schemas[name]; ok {
		a, _ := json.Marshal(old)
		b, _ := json.Marshal(s)
		if !bytes.Equal(a, b) {
			return fmt.Errorf("two different schemas named %s", name)
		}
		return nil
	}
	c.schemas[name] = s
	return nil
}

// command adds a command's contract schema under the command's name, its
// definitions (money, currency, ...) beside it, and returns a reference.
func (c *components) command(spec contracts.CommandSpec) (obj, error) {
	schema, err := contracts.CommandSchema(spec)
	if err != nil {
		return nil, fmt.Errorf("command %s: %w", spec.Name, err)
	}
	schema = defsRef.ReplaceAll(schema, []byte(`"#/components/schemas/`))
	var s obj
	if err := json.Unmarshal(schema, &s); err != nil {
		return nil, err
	}
	defs, _ := s["$defs"].(map[string]any)
	for name, d := range defs {
		if err := c.add(name, d.(map[string]any)); err != nil {
			return nil, fmt.Errorf("command %s: %w", spec.Name, err)
		}
	}
	// OpenAPI 3.1's dialect is 2020-12 already; the $id URN would make
	// the command a separate resource that tools cannot resolve.
	for _, k := range []string{"$defs", "$schema", "$id"} {
		delete(s, k)
	}
	if err := c.add(spec.Name, s); err != nil {
		return nil, err
	}
	return obj{"$ref": "#/components/schemas/" + spec.Name}, nil
}

// anyValue writes the schema that admits any value (a json.RawMessage: an
// event's body, a read model's row) as {} instead of true: the two are one
// in JSON Schema 2020-12, but generators built on OpenAPI 3.0's Schema
// Object (kin-openapi, and so oapi-codegen) read only the object.
func anyValue(v any) {
	switch v := v.(type) {
	case map[string]any:
		if b, ok := v["items"].(bool); ok && b {
			v["items"] = obj{}
		}
		if props, ok := v["properties"].(map[string]any); ok {
			for k, x := range props {
				if b, ok := x.(bool); ok && b {
					props[k] = obj{}
				}
			}
		}
		for _, x := range v {
			anyValue(x)
		}
	case []any:
		for _, x := range v {
			anyValue(x)
		}
	}
}

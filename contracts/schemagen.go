package contracts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/marketledger/ledger/events"
)

// Schema generation. Every schema is derived from a Go type of the registry
// by reflection, so the Go types and the published schemas cannot drift
// apart silently: the files under schemas/ are this output, checked by
// TestSchemasAgree. Field constraints come from two struct tags:
//
//	json:"name,omitempty"  the property name; omitempty/omitzero make it optional
//	doc:"..."              the property's description
//	schema:"a,b=1,..."     constraints:
//	    id        an id that is also one NATS subject token
//	    key       an idempotency key
//	    text=N    non-empty text of at most N characters
//	    slug      a lower-case category slug
//	    country   an ISO 3166-1 alpha-2 code
//	    currency  an ISO 4217 code
//	    account   an account of the chart of accounts
//	    hex64     64 lower-case hex digits (SHA-256)
//	    ed25519key, ed25519sig  standard base64 of 32 and 64 bytes
//	    min=N, max=N, nonzero   integer bounds
//	    minItems=N, maxItems=N, unique   array constraints
//
// String constraints on a slice field apply to its items.

// JSONSchemaDraft is the dialect of every schema.
const JSONSchemaDraft = "https://json-schema.org/draft/2020-12/schema"

// Patterns shared by the schemas and the Go checks.
const (
	IDPattern             = `^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`
	IdempotencyKeyPattern = `^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`
	SlugPattern           = `^[a-z0-9][a-z0-9_-]{0,63}$`
	Hex64Pattern          = `^[0-9a-f]{64}$`
)

// CommandSchemaURN returns the $id of a command's schema.
func CommandSchemaURN(name string) string { return "urn:marketledger:command:" + name }

// obj is a JSON object under construction; encoding/json sorts its keys,
// which keeps the generated files stable.
type obj = map[string]any

type gen struct {
	defs obj
}

// EventSchema returns the JSON Schema document of one event version.
func EventSchema(s EventSpec) ([]byte, error) {
	g := &gen{defs: obj{}}
	root, err := g.object(s.GoType)
	if err != nil {
		return nil, fmt.Errorf("%s v%d: %w", s.Type, s.Version, err)
	}
	root["$schema"] = JSONSchemaDraft
	root["$id"] = schemaURN(s.Type, s.Version)
	root["title"] = s.Type + " v" + strconv.Itoa(s.Version)
	root["description"] = s.Description
	root["x-publisher"] = s.Publisher
	if len(g.defs) > 0 {
		root["$defs"] = g.defs
	}
	return marshalSchema(root)
}

// CommandSchema returns the JSON Schema document of one command.
func CommandSchema(c CommandSpec) ([]byte, error) {
	g := &gen{defs: obj{}}
	root, err := g.object(c.GoType)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	root["$schema"] = JSONSchemaDraft
	root["$id"] = CommandSchemaURN(c.Name)
	root["title"] = c.Name
	root["description"] = c.Description
	root["x-service"] = c.Service
	if len(g.defs) > 0 {
		root["$defs"] = g.defs
	}
	return marshalSchema(root)
}

func marshalSchema(v obj) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// object describes a struct: every exported field with a json tag is a
// property, required unless omitempty or omitzero.
func (g *gen) object(t reflect.Type) (obj, error) {
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%s is not a struct", t)
	}
	props := obj{}
	required := []string{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			return nil, fmt.Errorf("%s.%s: every field needs a json name", t, f.Name)
		}
		p, err := g.field(f.Type, f.Tag.Get("schema"))
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", t, f.Name, err)
		}
		if d := f.Tag.Get("doc"); d != "" {
			p = withDescription(p, d)
		}
		props[name] = p
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") && f.Type.Kind() != reflect.Pointer {
			required = append(required, name)
		}
	}
	return obj{"type": "object", "additionalProperties": false, "properties": props, "required": required}, nil
}

// withDescription adds a description; next to a $ref it needs no wrapper
// in draft 2020-12.
func withDescription(p obj, d string) obj {
	p["description"] = d
	return p
}

var (
	timeType    = reflect.TypeFor[time.Time]()
	moneyType   = reflect.TypeFor[Money]()
	postingType = reflect.TypeFor[Posting]()
	scopeType   = reflect.TypeFor[Scope]()
)

// enumDefs are the named string types published as enums under $defs.
var enumDefs = map[reflect.Type]struct {
	name, doc string
	values    func() []string
}{
	reflect.TypeFor[Channel](): {"channel", "sales channel", func() []string { return strs(Channels) }},
	reflect.TypeFor[Origin]():  {"origin", "where goods ship from", func() []string { return strs(Origins) }},
	reflect.TypeFor[Operation](): {"operation", "an operation a policy rule can block (a command name)",
		func() []string { return strs(Operations) }},
	reflect.TypeFor[Activation](): {"activation", "how a policy change takes effect: on_recording (this event) or scheduled (its policy.rule_activated)",
		func() []string { return strs(Activations) }},
	reflect.TypeFor[PolicyChange](): {"policy_change", "a policy event an activation activates",
		func() []string { return strs(PolicyChanges) }},
	reflect.TypeFor[RuleKind](): {"rule_kind", "the kind of a policy rule", func() []string { return strs(RuleKinds) }},
}

func strs[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

func (g *gen) field(t reflect.Type, tag string) (obj, error) {
	cons, err := parseTag(tag)
	if err != nil {
		return nil, err
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Slice {
		items, err := g.scalar(t.Elem(), cons)
		if err != nil {
			return nil, err
		}
		a := obj{"type": "array", "items": items}
		if v, ok := cons["minItems"]; ok {
			a["minItems"] = v
		}
		if v, ok := cons["maxItems"]; ok {
			a["maxItems"] = v
		}
		if _, ok := cons["unique"]; ok {
			a["uniqueItems"] = true
		}
		return a, nil
	}
	return g.scalar(t, cons)
}

func (g *gen) ref(name string, build func() (obj, error)) (obj, error) {
	if _, ok := g.defs[name]; !ok {
		g.defs[name] = obj{} // reserve against recursion
		d, err := build()
		if err != nil {
			return nil, err
		}
		g.defs[name] = d
	}
	return obj{"$ref": "#/$defs/" + name}, nil
}

func (g *gen) scalar(t reflect.Type, cons map[string]int64) (obj, error) {
	switch {
	case t == timeType:
		return obj{"type": "string", "format": "date-time"}, nil
	case t == moneyType:
		return g.ref("money", func() (obj, error) {
			return g.named(moneyType, "an amount in integer minor units of an ISO 4217 currency")
		})
	case t == postingType:
		return g.ref("posting", func() (obj, error) { return g.named(postingType, "one leg of a double-entry movement") })
	case t == scopeType:
		return g.ref("scope", func() (obj, error) { return g.named(scopeType, "the trade a rule applies to; empty lists mean all") })
	}
	if e, ok := enumDefs[t]; ok {
		return g.ref(e.name, func() (obj, error) {
			return obj{"type": "string", "enum": e.values(), "description": e.doc}, nil
		})
	}
	switch t.Kind() {
	case reflect.String:
		return g.stringSchema(cons)
	case reflect.Bool:
		return obj{"type": "boolean"}, nil
	case reflect.Int64, reflect.Int, reflect.Uint64:
		return integerSchema(t, cons), nil
	}
	return nil, fmt.Errorf("no schema for Go type %s", t)
}

func (g *gen) named(t reflect.Type, doc string) (obj, error) {
	o, err := g.object(t)
	if err != nil {
		return nil, err
	}
	o["description"] = doc
	return o, nil
}

func integerSchema(t reflect.Type, cons map[string]int64) obj {
	// Default bounds keep every integer exact in IEEE doubles (JavaScript
	// consumers) and every sum of a decision inside int64.
	lo, hi := int64(-MaxAmountMinor), int64(MaxAmountMinor)
	if t.Kind() == reflect.Uint64 {
		lo = 0
	}
	if v, ok := cons["min"]; ok {
		lo = v
	}
	if v, ok := cons["max"]; ok {
		hi = v
	}
	o := obj{"type": "integer", "minimum": lo, "maximum": hi}
	if _, ok := cons["nonzero"]; ok {
		o["not"] = obj{"const": 0}
	}
	return o
}

func (g *gen) stringSchema(cons map[string]int64) (obj, error) {
	switch {
	case has(cons, "currency"):
		return g.ref("currency", func() (obj, error) {
			return obj{"type": "string", "enum": Currencies(), "description": "active ISO 4217 currency code"}, nil
		})
	case has(cons, "country"):
		return g.ref("country", func() (obj, error) {
			return obj{"type": "string", "enum": Countries(), "description": "ISO 3166-1 alpha-2 country code"}, nil
		})
	}
	o := obj{"type": "string"}
	patterns := map[string]string{
		"id": IDPattern, "key": IdempotencyKeyPattern, "slug": SlugPattern, "account": AccountPattern,
		"hex64": Hex64Pattern, "ed25519key": `^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$`,
		"ed25519sig": `^[A-Za-z0-9+/]{85}[AQgw]==$`,
	}
	for k, p := range patterns {
		if has(cons, k) {
			o["pattern"] = p
		}
	}
	if n, ok := cons["text"]; ok {
		o["minLength"], o["maxLength"] = 1, n
	}
	if _, ok := o["pattern"]; !ok && !has(cons, "text") {
		return nil, fmt.Errorf("string field needs a constraint (id, text=N, ...)")
	}
	return o, nil
}

func has(cons map[string]int64, k string) bool { _, ok := cons[k]; return ok }

func parseTag(tag string) (map[string]int64, error) {
	cons := map[string]int64{}
	if tag == "" {
		return cons, nil
	}
	for _, part := range strings.Split(tag, ",") {
		k, v, hasV := strings.Cut(part, "=")
		if !hasV {
			cons[k] = 0
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("schema tag %q: %w", part, err)
		}
		cons[k] = n
	}
	return cons, nil
}

// schemaURN is the envelope's dataschema, so ce-dataschema names the $id.
func schemaURN(typ string, version int) string { return events.SchemaURN(typ, version) }

// EventSchemaPath returns the path, relative to the module root, of an
// event version's schema file.
func EventSchemaPath(typ string, version int) string {
	return "schemas/events/" + typ + ".v" + strconv.Itoa(version) + ".json"
}

// CommandSchemaPath returns the path, relative to the module root, of a
// command's schema file.
func CommandSchemaPath(name string) string { return "schemas/commands/" + name + ".json" }

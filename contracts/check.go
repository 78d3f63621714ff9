package contracts

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// schemaFS holds the generated schema files; the validator compiles these,
// the very bytes published to consumers.
//
//go:embed schemas
var schemaFS embed.FS

type compiledSet struct {
	events   map[eventKey]*jsonschema.Schema
	commands map[string]*jsonschema.Schema
}

var (
	compileOnce sync.Once
	compiled    *compiledSet
	compileErr  error
)

// schemaSet compiles every registered schema once. A registered type
// without a schema file is a build error of the package, reported on first
// use and by the tests.
func schemaSet() (*compiledSet, error) {
	compileOnce.Do(func() { compiled, compileErr = compileAll(schemaFS) })
	return compiled, compileErr
}

func compileAll(fsys fs.FS) (*compiledSet, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	set := &compiledSet{events: map[eventKey]*jsonschema.Schema{}, commands: map[string]*jsonschema.Schema{}}
	load := func(path, id string) (*jsonschema.Schema, error) {
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if err := c.AddResource(id, doc); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return c.Compile(id)
	}
	for _, s := range Events {
		sch, err := load(EventSchemaPath(s.Type, s.Version), schemaURN(s.Type, s.Version))
		if err != nil {
			return nil, err
		}
		set.events[eventKey{s.Type, s.Version}] = sch
	}
	for _, cmd := range Commands {
		sch, err := load(CommandSchemaPath(cmd.Name), CommandSchemaURN(cmd.Name))
		if err != nil {
			return nil, err
		}
		set.commands[cmd.Name] = sch
	}
	return set, nil
}

// Checker validates event bodies against their contract. It implements
// events.TypeChecker, so a store built with events.WithTypeChecker(Checker{})
// never appends a schema-invalid event. The zero value is ready to use.
type Checker struct{}

var _ events.TypeChecker = Checker{}

// CheckEvent validates data as the body of typ at version before it is
// appended: the JSON Schema, a strict decode into the version's Go type, and
// the rules a schema cannot express (postings sum to zero, totals, freeze
// scope). An unknown type or version is refused by name, and so is an old
// version: old versions are only ever read (through Decode), never written.
func (Checker) CheckEvent(typ string, version int, data []byte) error {
	const op = "contracts.CheckEvent"
	if cur, ok := CurrentVersion(typ); ok && version != cur {
		if _, old := LookupEvent(typ, version); old {
			return invalidAt(op, events.HeaderDataSchema, fmt.Sprintf("%s v%d is read-only; new events are written as v%d", typ, version, cur))
		}
	}
	_, err := decodeVersion(op, typ, version, data)
	return err
}

// CheckEvent is Checker{}.CheckEvent, for callers that want a function.
func CheckEvent(typ string, version int, data []byte) error {
	return Checker{}.CheckEvent(typ, version, data)
}

// Decode decodes a stored event body strictly (unknown fields refused, one
// JSON value only) into the Go type of typ at version and upcasts it to the
// current version. The result is a struct value of the current Go type
// (OrderPlaced for order.placed v1 and v2), so deciders and projections never
// see an old version. An unknown type or version is refused by name.
//
// Decode does not run the JSON Schema: every stored body passed CheckEvent
// before it was appended and the store verified its hash on read, and
// replaying a million events must not pay for validating them again (the
// schema costs about 40 µs an event, the decode a tenth of that). A body
// from anywhere else goes through CheckEvent (or DecodeChecked) first.
func Decode(typ string, version int, data []byte) (any, error) {
	const op = "contracts.Decode"
	spec, ok := LookupEvent(typ, version)
	if !ok {
		return nil, unknownEvent(op, typ, version)
	}
	v, err := strictDecode(spec.GoType, data)
	if err != nil {
		return nil, decodeError(op, err)
	}
	return upcast(typ, version, v), nil
}

// DecodeChecked is CheckEvent and Decode in one pass, for bodies that did
// not come from the store. Unlike CheckEvent it accepts old versions.
func DecodeChecked(typ string, version int, data []byte) (any, error) {
	v, err := decodeVersion("contracts.DecodeChecked", typ, version, data)
	if err != nil {
		return nil, err
	}
	return upcast(typ, version, v), nil
}

func upcast(typ string, version int, v any) any {
	for {
		spec, _ := LookupEvent(typ, version)
		if spec.Current() {
			return v
		}
		v, version = spec.Upcast(v), version+1
	}
}

func unknownEvent(op, typ string, version int) error {
	if cur, known := CurrentVersion(typ); known {
		return invalidAt(op, events.HeaderDataSchema, fmt.Sprintf("%s has no version %d (current is %d)", typ, version, cur))
	}
	return invalidAt(op, events.HeaderType, fmt.Sprintf("unknown event type %q", truncate(typ)))
}

// DecodeAs is Decode with the current Go type named by the caller. It fails
// if typ's current Go type is not T.
func DecodeAs[T any](typ string, version int, data []byte) (T, error) {
	var zero T
	v, err := Decode(typ, version, data)
	if err != nil {
		return zero, err
	}
	t, ok := v.(T)
	if !ok {
		return zero, invalidAt("contracts.DecodeAs", "", fmt.Sprintf("%s decodes to %T, not %T", typ, v, zero))
	}
	return t, nil
}

// Encode marshals a value of a current event type and checks it against its
// contract, returning what an events.Event needs: type, schema version and
// body. Old versions cannot be encoded: nothing writes them any more.
func Encode(v any) (typ string, version int, data []byte, err error) {
	const op = "contracts.Encode"
	typ, version, ok := TypeOf(v)
	if !ok {
		return "", 0, nil, invalidAt(op, "", fmt.Sprintf("%T is not a registered event type", v))
	}
	if cur, _ := CurrentVersion(typ); cur != version {
		return "", 0, nil, invalidAt(op, "", fmt.Sprintf("%s v%d is not the current version (v%d)", typ, version, cur))
	}
	data, err = json.Marshal(v)
	if err != nil {
		return "", 0, nil, invalidAt(op, "", err.Error())
	}
	if _, err := decodeVersion(op, typ, version, data); err != nil {
		return "", 0, nil, err
	}
	return typ, version, data, nil
}

// ValidateCommand validates a command body against its contract by command
// name ("order.place"): the JSON Schema, a strict decode and the rules a
// schema cannot express. An unknown name is refused by name.
func ValidateCommand(name string, body []byte) error {
	_, err := DecodeCommand(name, body)
	return err
}

// DecodeCommand is ValidateCommand that also returns the decoded command, a
// struct value of its Go type (PlaceOrder for "order.place").
func DecodeCommand(name string, body []byte) (any, error) {
	const op = "contracts.ValidateCommand"
	spec, ok := LookupCommand(name)
	if !ok {
		return nil, invalidAt(op, "", fmt.Sprintf("unknown command %q", truncate(name)))
	}
	if err := strictJSON(op, body); err != nil {
		var se *strictError
		if errors.As(err, &se) {
			return nil, invalidAt(op, se.pointer, se.rule)
		}
		return nil, err
	}
	set, err := schemaSet()
	if err != nil {
		return nil, &events.Error{Op: op, Kind: events.KindOther, Err: err}
	}
	return check(op, set.commands[name], spec.GoType, body)
}

func decodeVersion(op, typ string, version int, data []byte) (any, error) {
	spec, ok := LookupEvent(typ, version)
	if !ok {
		return nil, unknownEvent(op, typ, version)
	}
	set, err := schemaSet()
	if err != nil {
		return nil, &events.Error{Op: op, Kind: events.KindOther, Err: err}
	}
	return check(op, set.events[eventKey{typ, version}], spec.GoType, data)
}

// check runs the three layers in order. The schema runs first because its
// errors name the field and rule precisely; the strict decode then cannot
// fail on well-formed input, and the semantic rules see typed values.
func check(op string, sch *jsonschema.Schema, goType reflect.Type, data []byte) (any, error) {
	if len(data) > events.MaxDataBytes {
		return nil, invalidAt(op, "", fmt.Sprintf("body is %d bytes, the limit is %d", len(data), events.MaxDataBytes))
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, invalidAt(op, "", "valid JSON: "+err.Error())
	}
	if err := sch.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			field, rule := describe(ve)
			return nil, invalidAt(op, field, rule)
		}
		return nil, invalidAt(op, "", err.Error())
	}
	v, err := strictDecode(goType, data)
	if err != nil {
		return nil, decodeError(op, err)
	}
	if s, ok := v.(semantic); ok {
		if err := s.validate(); err != nil {
			var e *events.Error
			if errors.As(err, &e) {
				c := *e
				c.Op = op
				return nil, &c
			}
			return nil, err
		}
	}
	return v, nil
}

// decodeError names the field of a Go decoding error the schema let
// through: an integer written as 1.0 or 1e3 is an integer to JSON Schema but
// not to an int64.
func decodeError(op string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return invalidAt(op, "/"+strings.ReplaceAll(te.Field, ".", "/"), "type "+te.Type.String()+" (integers without fraction or exponent)")
	}
	return invalidAt(op, "", "strict decode: "+err.Error())
}

// strictDecode decodes exactly one JSON value into a new value of t,
// refusing unknown fields and trailing data, and returns it as a struct
// value (not a pointer).
func strictDecode(t reflect.Type, data []byte) (any, error) {
	p := reflect.New(t).Interface()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	return reflect.ValueOf(p).Elem().Interface(), nil
}

// describe turns the schema validator's error tree into one field and one
// rule: the leaf errors are sorted by pointer and the first is reported, so
// the same input always gets the same message.
func describe(ve *jsonschema.ValidationError) (field, rule string) {
	type leaf struct{ field, rule string }
	var leaves []leaf
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			f, r := leafRule(e)
			leaves = append(leaves, leaf{f, r})
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	sort.Slice(leaves, func(i, j int) bool {
		if leaves[i].field != leaves[j].field {
			return leaves[i].field < leaves[j].field
		}
		return leaves[i].rule < leaves[j].rule
	})
	return leaves[0].field, leaves[0].rule
}

func leafRule(e *jsonschema.ValidationError) (field, rule string) {
	field = pointer(e.InstanceLocation)
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		m := append([]string(nil), k.Missing...)
		sort.Strings(m)
		return field + "/" + pointerEscape(m[0]), "required"
	case *kind.AdditionalProperties:
		p := append([]string(nil), k.Properties...)
		sort.Strings(p)
		return field + "/" + pointerEscape(p[0]), "unknown field (additionalProperties false)"
	case *kind.Type:
		return field, "type " + strings.Join(k.Want, "|")
	case *kind.Enum:
		return field, enumRule(e.SchemaURL, k.Want)
	case *kind.Minimum:
		return field, "minimum " + k.Want.RatString()
	case *kind.Maximum:
		return field, "maximum " + k.Want.RatString()
	case *kind.MinLength:
		return field, "minLength " + strconv.Itoa(k.Want)
	case *kind.MaxLength:
		return field, "maxLength " + strconv.Itoa(k.Want)
	case *kind.Pattern:
		return field, "pattern " + k.Want
	case *kind.Format:
		return field, "format " + k.Want
	case *kind.MinItems:
		return field, "minItems " + strconv.Itoa(k.Want)
	case *kind.MaxItems:
		return field, "maxItems " + strconv.Itoa(k.Want)
	case *kind.UniqueItems:
		return field, fmt.Sprintf("uniqueItems (items %d and %d are equal)", k.Duplicates[0], k.Duplicates[1])
	case *kind.Not:
		return field, "not 0"
	case *kind.Const:
		return field, fmt.Sprintf("const %v", k.Want)
	}
	return field, e.ErrorKind.KeywordPath()[0]
}

// enumRule lists short enums in full; the ISO code lists are named instead
// of printed.
func enumRule(schemaURL string, want []any) string {
	switch {
	case strings.Contains(schemaURL, "/$defs/currency"):
		return "enum ISO 4217 currency code"
	case strings.Contains(schemaURL, "/$defs/country"):
		return "enum ISO 3166-1 alpha-2 country code"
	}
	parts := make([]string, len(want))
	for i, w := range want {
		parts[i] = fmt.Sprint(w)
	}
	return "enum [" + strings.Join(parts, " ") + "]"
}

func pointer(loc []string) string {
	var b strings.Builder
	for _, t := range loc {
		b.WriteString("/")
		b.WriteString(pointerEscape(t))
	}
	return b.String()
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// NewEvent builds the envelope of a current event value: the type, schema
// version and checked body from the contract, a fresh UUIDv7, and the
// publisher's source. The caller adds correlation, causation and policy
// position, and the store seals it.
func NewEvent(v any, aggregateID string, occurredAt time.Time) (events.Event, error) {
	typ, version, data, err := Encode(v)
	if err != nil {
		return events.Event{}, err
	}
	spec, _ := LookupEvent(typ, version)
	return events.Event{ID: events.NewID(), Type: typ, SchemaVersion: version, Source: Source(spec.Publisher),
		AggregateID: aggregateID, OccurredAt: occurredAt, Data: data}, nil
}

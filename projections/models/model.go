package models

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// Model is a read model: a pure fold of the log. The engine and the as-of
// queries drive it; nothing else mutates it.
//
// Concurrency contract: a Model is not safe for concurrent use. One goroutine
// applies events to it in strictly increasing position order, each position
// at most once; whoever reads Snapshot or Rows while it runs must hold the
// same lock (the engine's View does). Apply must be deterministic: the same
// events in the same order give the same Snapshot bytes, whatever the wall
// clock, so that a rebuild from zero reproduces a model exactly.
type Model interface {
	// Name is the model's stable name ("catalogue"); it names its
	// consumers, checkpoints, snapshots and bundle files.
	Name() string
	// Apply folds one event. payload is the event's body decoded by
	// contracts.Decode (the current Go type, upcast). A returned error is an
	// invariant violation or an unreadable event: the model is then unusable
	// and the engine stops it.
	Apply(e events.Event, payload any) error
	// Snapshot returns the model's whole state as canonical JSON: the same
	// state gives the same bytes.
	Snapshot() ([]byte, error)
	// Restore replaces the state with one returned by Snapshot.
	Restore(data []byte) error
	// Rows returns the model as a table, for CSV and people.
	Rows() Table
}

// Versioned is an optional Model interface: the version of the model's code.
// A new version is built beside the old one (blue/green) under its own
// consumer and checkpoint. Models without it are version 1.
type Versioned interface {
	Version() int
}

// ModelVersion returns m's version (1 unless m implements Versioned).
func ModelVersion(m Model) int {
	if v, ok := m.(Versioned); ok && v.Version() > 0 {
		return v.Version()
	}
	return 1
}

// Table is a model as rows of strings under named columns, in a stable order.
type Table struct {
	Columns []string
	Rows    [][]string
}

// The names of the built-in read models.
const (
	ModelCatalogue  = "catalogue"
	ModelOrders     = "orders"
	ModelBalances   = "balances"
	ModelPolicy     = "policy_timeline"
	ModelViolations = "violations"
	ModelSales      = "seller_sales_daily"
)

var builtins = map[string]func() Model{
	ModelCatalogue:   func() Model { return NewCatalogue() },
	ModelOrders:      func() Model { return NewOrders() },
	ModelBalances:    func() Model { return NewBalances() },
	ModelPolicy:      func() Model { return NewPolicyTimeline() },
	ModelViolations:  func() Model { return NewViolations() },
	ModelSales:       func() Model { return NewSellerSales() },
	ModelEnforcement: func() Model { return NewEnforcement() },
}

// ModelNames returns the names of the built-in read models, sorted.
func ModelNames() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NewModel returns a fresh built-in model by name; an unknown name is a
// KindNotFound error that lists the known ones.
func NewModel(name string) (Model, error) {
	f, ok := builtins[name]
	if !ok {
		return nil, &events.Error{Op: "projections.NewModel", Kind: events.KindNotFound, Field: "model",
			Rule: fmt.Sprintf("unknown read model %q; known: %v", name, ModelNames())}
	}
	return f(), nil
}

// NewModels returns fresh models for names, or every built-in model when
// names is empty.
func NewModels(names ...string) ([]Model, error) {
	if len(names) == 0 {
		names = ModelNames()
	}
	out := make([]Model, 0, len(names))
	for _, n := range names {
		m, err := NewModel(n)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// DecodePayload decodes an event's body for Apply. Notary checkpoints decode
// like any other event; models ignore what they do not fold.
func DecodePayload(e *events.Event) (any, error) {
	p, err := contracts.Decode(e.Type, e.SchemaVersion, e.Data)
	if err != nil {
		return nil, positionErr("projections.Decode", e.Position, err)
	}
	return p, nil
}

// IsBusiness reports whether e is a business fact with a meaningful business
// time. Notary checkpoints are facts about the log, not about trade.
func IsBusiness(e *events.Event) bool {
	return e.Context() != contracts.ServiceNotary
}

func positionErr(op string, pos uint64, err error) error {
	return &events.Error{Op: op, Kind: events.KindInvalid, Field: "position " + strconv.FormatUint(pos, 10), Err: err}
}

func invariantErr(op string, pos uint64, rule string) error {
	return &events.Error{Op: op, Kind: events.KindIntegrity, Field: "position " + strconv.FormatUint(pos, 10), Rule: rule}
}

// canonical marshals v as compact JSON with sorted map keys (encoding/json
// sorts them), which is what makes snapshots byte-identical across rebuilds.
func canonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// restore decodes a snapshot strictly: a snapshot written by another model
// or version must fail loudly rather than restore half a state.
func restore(name string, data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &events.Error{Op: "projections.Restore", Kind: events.KindIntegrity, Field: name, Rule: "snapshot does not decode", Err: err}
	}
	return nil
}

// utc normalises an instant so that its JSON form does not depend on the
// zone the producer wrote it in.
func utc(t time.Time) time.Time { return t.UTC() }

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func itoa(n int64) string  { return strconv.FormatInt(n, 10) }
func utoa(n uint64) string { return strconv.FormatUint(n, 10) }
func btoa(b bool) string   { return strconv.FormatBool(b) }

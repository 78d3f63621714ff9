package models

import (
	"slices"
	"time"
)

// Keyed is an optional Model interface: a model whose state is rows under
// keys, so that the as-of index can keep each row's versions instead of
// whole-model snapshots.
//
// Contract: after every Apply, Touched names every row whose Row bytes the
// Apply may have changed (or reports all, for an event that may change any
// row), and Row(k) equals what a fresh model fed the same events returns.
// A key names one row for the whole life of a model version. Touched is
// read once per Apply by the single goroutine that applies events.
type Keyed interface {
	Model
	// Touched returns the keys of the rows the last Apply may have
	// changed, or all when it may have changed any row; it then forgets
	// them.
	Touched() (keys []string, all bool)
	// Row returns the canonical JSON of one row, or false when the model
	// holds no row under key.
	Row(key string) ([]byte, bool)
	// RowKeys returns the key of every row, sorted.
	RowKeys() []string
}

// Derived is an optional Keyed interface: a model whose rows are a stored
// part, which the as-of index versions, and a part derived when read from
// the model's context, a row under the key "" that the model touches when
// it changes. The catalogue's flags derive from its time and rules, which
// move with every event: versioning them in every listing would write every
// listing whenever the time crosses a rule's instant.
//
// Contract: DeriveRow(StoredRow(k), StoredRow("")) equals Row(k).
type Derived interface {
	Keyed
	StoredRow(key string) ([]byte, bool)
	DeriveRow(stored, context []byte) ([]byte, error)
}

// Tabular is an optional Keyed interface: a model whose table (Rows) is
// made of its rows alone, one key at a time, so that a bundle renders its
// CSV row by row from the as-of index instead of from the whole model.
//
// Contract: for any state, the table rows of TableRows(k, Row(k)) for every
// k of RowKeys, in that order, are the rows of Rows().Rows, in the same
// order where the table is in key order (every built-in model but the
// enforcement model, whose table is in log order and whose keys are
// refusal ids), and Columns is Rows().Columns. A row that is in no table
// row gives none.
type Tabular interface {
	Keyed
	Columns() []string
	TableRows(key string, row []byte) ([][]string, error)
}

// TimedContext is an optional Derived interface: a model whose context
// row is the business time of the last event it applied plus a part that
// only some events change (the catalogue's rules), and whose stored rows
// are Monotone (see Monotone). On the business clock the as-of index then
// answers a key by lookup whenever no event applied out of order touched
// its stored row or changed the context other than its time: the row at
// the prefix, derived with the context there at the time of the last
// event the business fold applies.
type TimedContext interface {
	Derived
	// ContextEvent reports whether an event with this payload may change
	// the context other than its time.
	ContextEvent(payload any) bool
	// ContextAt returns the context row with its time set to t.
	ContextAt(context []byte, t time.Time) ([]byte, error)
}

// Monotone is an optional Keyed interface, a promise about Touched: the
// keys an event touches when it is applied after any subsequence of the
// events before it (as a business-time fold applies it) are among the keys
// it touched when applied after all of them. The as-of index then answers
// a business instant by a lookup whenever no event applied out of order
// touched the key. A model whose rows depend on state that any event moves
// (the catalogue's current time) is not Monotone.
type Monotone interface {
	Keyed
	MonotoneTouch()
}

// monotone implements Monotone's marker.
type monotone struct{}

// MonotoneTouch implements Monotone.
func (monotone) MonotoneTouch() {}

// touched collects the keys an Apply changes, for Keyed.Touched.
type touched struct {
	keys []string
	all  bool
}

func (t *touched) touch(keys ...string) { t.keys = append(t.keys, keys...) }

func (t *touched) touchAll() { t.all = true }

// Touched implements Keyed.
func (t *touched) Touched() ([]string, bool) {
	keys, all := t.keys, t.all
	t.keys, t.all = t.keys[:0:0], false
	if len(keys) > 1 {
		slices.Sort(keys)
		keys = slices.Compact(keys)
	}
	return keys, all
}

// row returns the canonical JSON of v when ok.
func row[V any](v V, ok bool) ([]byte, bool) {
	if !ok {
		return nil, false
	}
	b, err := canonical(v)
	return b, err == nil
}

func prefixed(prefix string, keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = prefix + k
	}
	return out
}

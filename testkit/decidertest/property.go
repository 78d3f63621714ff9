package decidertest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"pgregory.net/rapid"
)

// Step is one drawn command: the aggregate it goes to, the command, the
// inputs of its decision and the decision instant.
type Step[I any] struct {
	ID  string
	Cmd any
	In  I
	Now time.Time
}

// Model is one run of a property check, built afresh for every run so that
// its closures may keep the run's own bookkeeping (a supply, the rules in
// force, the instant).
type Model[S, I any] struct {
	// Given are the events that aggregates start from, by id; any other
	// aggregate starts from Initial.
	Given map[string][]any
	// StepsMax bounds the steps of a run (at least one is drawn).
	StepsMax int
	// Next draws step i. It may change the run's world instead (advance
	// the clock, impose a rule) and return ok false: then nothing is
	// decided in this step, and the invariants are checked all the same.
	// state returns an aggregate's current state.
	Next func(t *rapid.T, i int, state func(id string) S) (step Step[I], ok bool)
	// Accepted, when set, checks each decided event against the state
	// before it (the transition), before it is applied.
	Accepted func(t *rapid.T, id string, before S, event any)
	// Invariant, when set, checks every aggregate after each step.
	Invariant func(t *rapid.T, states map[string]S)
}

// Property runs rapid over command sequences drawn by the model that newModel
// builds for each run. A refused command must be refused with an
// *events.Error and no events; an accepted one is applied (Evolve) after
// Model.Accepted saw it and after its contract accepted it; Model.Invariant
// is checked after every step; and at the end each aggregate folded from
// its given and accepted events must equal the state the run built, so
// that Evolve shares nothing between states.
func (sp Spec[S, I]) Property(t *testing.T, newModel func(t *rapid.T) Model[S, I], opts ...cmp.Option) {
	t.Helper()
	rapid.Check(t, func(t *rapid.T) {
		m := newModel(t)
		r := run[S, I]{spec: sp, model: m, states: map[string]S{}, history: map[string][]any{}}
		for i := range rapid.IntRange(1, max(1, m.StepsMax)).Draw(t, "steps") {
			r.step(t, i)
			if m.Invariant != nil {
				m.Invariant(t, r.states)
			}
		}
		r.replay(t, opts)
	})
}

type run[S, I any] struct {
	spec    Spec[S, I]
	model   Model[S, I]
	states  map[string]S
	history map[string][]any
}

func (r *run[S, I]) state(id string) S {
	if s, ok := r.states[id]; ok {
		return s
	}
	s := fold(r.spec, r.spec.Initial(id), r.model.Given[id])
	r.states[id] = s
	return s
}

func (r *run[S, I]) step(t *rapid.T, i int) {
	st, ok := r.model.Next(t, i, r.state)
	if !ok {
		return
	}
	s := r.state(st.ID)
	evs, err := r.spec.Decide(s, st.Cmd, st.In, st.Now)
	if err != nil {
		var e *events.Error
		if !errors.As(err, &e) {
			t.Fatalf("%s: %T refused with %v, not an *events.Error", st.ID, st.Cmd, err)
		}
		if len(evs) != 0 {
			t.Fatalf("%s: refused %T still returned events %v", st.ID, st.Cmd, evs)
		}
		return
	}
	for _, e := range evs {
		if _, _, _, err := contracts.Encode(e); err != nil {
			t.Fatalf("%s: %T breaks its contract: %v", st.ID, e, err)
		}
		if r.model.Accepted != nil {
			r.model.Accepted(t, st.ID, s, e)
		}
		s = r.spec.Evolve(s, e)
	}
	r.states[st.ID] = s
	r.history[st.ID] = append(r.history[st.ID], evs...)
}

func (r *run[S, I]) replay(t *rapid.T, opts []cmp.Option) {
	for id, s := range r.states {
		replayed := fold(r.spec, fold(r.spec, r.spec.Initial(id), r.model.Given[id]), r.history[id])
		if diff := cmp.Diff(s, replayed, opts...); diff != "" {
			t.Fatalf("%s: replay differs from the run (-run +replay):\n%s", id, diff)
		}
	}
}

// Package decidertest tests deciders: one given/when/then harness and one
// property harness for every service, so that a reader who knows the tests
// of one decider knows those of all.
//
// A decider is the triple Initial, Evolve and Decide, with Decide of the
// shape every service shares: Decide(state, command, inputs, now). Inputs
// is what the decision needs besides the aggregate's own state (policy
// rules, a view of another aggregate); the harness passes it as a value, so
// the decider stays pure.
//
// The package builds only on events, contracts, go-cmp and rapid, so that
// the services' tests may import it without building on anything else of
// testkit (cmd/ledger's TestModuleMap holds it to that). It must never
// start a server or read the log.
package decidertest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// Spec is a decider under test: its state type S and its inputs type I.
type Spec[S, I any] struct {
	// ID is the aggregate id a case starts from (Initial(ID)).
	ID string
	// Initial, Evolve and Decide are the decider's.
	Initial func(id string) S
	Evolve  func(s S, event any) S
	Decide  func(s S, cmd any, in I, now time.Time) ([]any, error)
	// Now is the decision instant of a case that does not set one with At.
	Now time.Time
	// Inputs, when set, gives the inputs of a case from the state folded
	// from its given events and its command; With replaces them and Adjust
	// changes them. Without it a case starts from the zero I.
	Inputs func(s S, cmd any) I
	// Check, when set, is run by Then on the history (the given and the
	// decided events) and the state folded from it: the invariants that
	// must hold after replay.
	Check func(t testing.TB, history []any, s S)
}

// Case is one given/when/then case of a Spec. Its methods return a changed
// copy, so a case may be shared as a starting point.
type Case[S, I any] struct {
	spec    Spec[S, I]
	given   []any
	in      *I
	adjusts []func(*I)
	now     time.Time
	cmd     any
}

// Given starts a case from the aggregate's past events.
func (sp Spec[S, I]) Given(past ...any) Case[S, I] {
	return Case[S, I]{spec: sp, given: past, now: sp.Now}
}

// With sets the inputs of the decision, in place of Spec.Inputs.
func (c Case[S, I]) With(in I) Case[S, I] {
	c.in = &in
	return c
}

// Adjust changes the inputs after they are computed (by With, or else by
// Spec.Inputs): a case that sets one part of them keeps the rest.
func (c Case[S, I]) Adjust(f func(in *I)) Case[S, I] {
	c.adjusts = append(append([]func(*I){}, c.adjusts...), f)
	return c
}

// At sets the decision instant.
func (c Case[S, I]) At(now time.Time) Case[S, I] {
	c.now = now
	return c
}

// When sets the command.
func (c Case[S, I]) When(cmd any) Case[S, I] {
	c.cmd = cmd
	return c
}

// State returns the state folded from the case's given events.
func (c Case[S, I]) State() S { return fold(c.spec, c.spec.Initial(c.spec.ID), c.given) }

// Decide decides the case's command and returns what the decider returns.
func (c Case[S, I]) Decide() ([]any, error) {
	s := c.State()
	var in I
	switch {
	case c.in != nil:
		in = *c.in
	case c.spec.Inputs != nil:
		in = c.spec.Inputs(s, c.cmd)
	}
	for _, f := range c.adjusts {
		f(&in)
	}
	return c.spec.Decide(s, c.cmd, in, c.now)
}

// Then checks that the command is accepted with exactly want (none: it
// changes nothing), that each event passes its contract, and that the
// history with them replays to a state that passes Spec.Check.
func (c Case[S, I]) Then(t testing.TB, want ...any) {
	t.Helper()
	got, err := c.Decide()
	if err != nil {
		t.Fatalf("decide %T: unexpected error: %v", c.cmd, err)
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	checkContracts(t, got)
	if c.spec.Check != nil {
		history := append(append([]any{}, c.given...), got...)
		c.spec.Check(t, history, fold(c.spec, c.spec.Initial(c.spec.ID), history))
	}
}

// ThenError checks that the command is refused with an *events.Error of
// kind on field, and with no events; it returns the error so that a test
// can look further (the reason, the rule it names).
func (c Case[S, I]) ThenError(t testing.TB, kind events.Kind, field string) *events.Error {
	t.Helper()
	got, err := c.Decide()
	var e *events.Error
	if !errors.As(err, &e) {
		t.Fatalf("got events %v and error %v, want a %s error on %q", got, err, kind, field)
	}
	if e.Kind != kind || e.Field != field {
		t.Errorf("got %s on %q (%v), want %s on %q", e.Kind, e.Field, err, kind, field)
	}
	if len(got) != 0 {
		t.Errorf("refused command still returned events %v", got)
	}
	return e
}

func fold[S, I any](sp Spec[S, I], s S, evs []any) S {
	for _, e := range evs {
		s = sp.Evolve(s, e)
	}
	return s
}

// checkContracts fails t for every event that its contract refuses: a
// decider must never decide what the log would not store.
func checkContracts(t testing.TB, evs []any) {
	t.Helper()
	for _, e := range evs {
		if _, _, _, err := contracts.Encode(e); err != nil {
			t.Errorf("contract: %T: %v", e, err)
		}
	}
}

package models

import (
	"reflect"
	"testing"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// TestEnforcementListsRefusals folds a refusal record among other events:
// it is listed with its rule, command, actor and the envelope's
// correlation id, and the model survives a snapshot and restore.
func TestEnforcementListsRefusals(t *testing.T) {
	m := NewEnforcement()
	r := contracts.CommandRefused{RefusalID: "rf-1", Command: contracts.OpOrderPlace, AggregateID: "o-1", RuleID: "f",
		RuleKind: contracts.RuleFreeze, LegalBasis: "Permendag 31/2023", Detail: "frozen", Actor: "b-1",
		CommandDigest: "00", PolicyPosition: 2}
	if err := m.Apply(events.Event{Position: 3, OccurredAt: freezeAt}, contracts.OrderCancelled{OrderID: "o-0", Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(events.Event{Position: 4, CorrelationID: "o-1", OccurredAt: freezeAt, RecordedAt: freezeAt}, r); err != nil {
		t.Fatal(err)
	}
	want := []Refusal{{Position: 4, RefusalID: "rf-1", Command: contracts.OpOrderPlace, AggregateID: "o-1", RuleID: "f",
		RuleKind: contracts.RuleFreeze, LegalBasis: "Permendag 31/2023", Actor: "b-1", CorrelationID: "o-1", PolicyPosition: 2,
		OccurredAt: freezeAt.UTC(), RecordedAt: freezeAt.UTC()}}
	if got := m.Refusals(); !reflect.DeepEqual(got, want) {
		t.Errorf("refusals %+v, want %+v", got, want)
	}
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	back := NewEnforcement()
	if err := back.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if got, want := back.Rows(), m.Rows(); !reflect.DeepEqual(got, want) || back.Count() != 1 {
		t.Errorf("restored rows %v, want %v", got, want)
	}
}

package testkit

import (
	"time"

	"github.com/marketledger/ledger/events"
)

// NewEvent returns a valid event of type "<ref.Context>.<name>" for ref with
// a fresh id and a small JSON object body.
func NewEvent(ref events.AggregateRef, name string) events.Event {
	return events.Event{
		ID:            events.NewID(),
		Type:          ref.Context + "." + name,
		SchemaVersion: 1,
		Source:        "/ledger/testkit",
		AggregateID:   ref.ID,
		OccurredAt:    time.Now().UTC(),
		Data:          []byte(`{"n":1}`),
	}
}

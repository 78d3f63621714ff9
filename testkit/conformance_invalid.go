package testkit

import (
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
)

// invalidCase breaks one rule of a decision that is otherwise valid.
type invalidCase struct {
	name  string
	spoil func(d *events.Decision)
}

// bodyOfSize returns a JSON object of exactly n bytes.
func bodyOfSize(n int) []byte {
	const frame = `{"pad":""}`
	return []byte(`{"pad":"` + strings.Repeat("x", n-len(frame)) + `"}`)
}

func invalidCases() []invalidCase {
	last := func(d *events.Decision) *events.Event { return &d.Events[len(d.Events)-1] }
	return []invalidCase{
		{"id not a UUID", func(d *events.Decision) { last(d).ID = "not-a-uuid" }},
		{"id a UUIDv4", func(d *events.Decision) { last(d).ID = "6ba7b810-9dad-41d1-80b4-00c04fd430c8" }},
		{"id empty", func(d *events.Decision) { last(d).ID = "" }},
		{"type not lower case", func(d *events.Decision) { last(d).Type = "Order.Placed" }},
		{"type without context", func(d *events.Decision) { last(d).Type = "placed" }},
		{"type with a wildcard", func(d *events.Decision) { last(d).Type = "order.>" }},
		{"type of another context", func(d *events.Decision) { last(d).Type = "payment.captured" }},
		{"event of another aggregate", func(d *events.Decision) { last(d).AggregateID = d.Aggregate.ID + "x" }},
		{"schema version 0", func(d *events.Decision) { last(d).SchemaVersion = 0 }},
		{"no occurred-at", func(d *events.Decision) { last(d).OccurredAt = time.Time{} }},
		{"body over MaxDataBytes", func(d *events.Decision) { last(d).Data = bodyOfSize(events.MaxDataBytes + 1) }},
		{"body an array", func(d *events.Decision) { last(d).Data = []byte(`[1,2]`) }},
		{"body a string", func(d *events.Decision) { last(d).Data = []byte(`"order"`) }},
		{"body a number", func(d *events.Decision) { last(d).Data = []byte(`42`) }},
		{"body null", func(d *events.Decision) { last(d).Data = []byte(`null`) }},
		{"body not JSON", func(d *events.Decision) { last(d).Data = []byte(`{"a":`) }},
		{"body empty", func(d *events.Decision) { last(d).Data = nil }},
		{"no events", func(d *events.Decision) { d.Events = nil }},
		{"too many events", func(d *events.Decision) {
			for len(d.Events) <= events.MaxEventsPerDecision {
				d.Events = append(d.Events, NewEvent(d.Aggregate, "line_added"))
			}
		}},
		{"key without digest", func(d *events.Decision) { d.IdempotencyKey, d.CommandDigest = "k-"+d.Aggregate.ID, "" }},
	}
}

func (s *suite) testInvalid(t *testing.T) {
	ctx, st := s.ctx(t), s.newStore(t)
	for _, tc := range invalidCases() {
		ref := s.ref("order")
		// The broken event is the last of three: a refusal must not leave
		// the valid ones before it.
		d := decision(ref, 0, "placed", "line_added", "confirmed")
		tc.spoil(&d)
		if _, err := st.Append(ctx, d); events.KindOf(err) != events.KindInvalid {
			t.Errorf("%s: got %v, want %s", tc.name, err, events.KindInvalid)
		}
		if evs := mustLoad(ctx, t, st, ref); len(evs) != 0 {
			t.Errorf("%s: refused decision stored %d events", tc.name, len(evs))
		}
	}
	for _, id := range []string{"a.b", "a b", "*", ">", "", "-x", strings.Repeat("a", events.MaxIDLen+1)} {
		ref := events.AggregateRef{Context: "order", ID: id}
		d := decision(ref, 0, "placed")
		if _, err := st.Append(ctx, d); events.KindOf(err) != events.KindInvalid {
			t.Errorf("aggregate id %q: got %v, want %s", id, err, events.KindInvalid)
		}
	}
	// The limits are inclusive: a body of exactly MaxDataBytes is accepted.
	ref := s.ref("order")
	d := decision(ref, 0, "placed")
	d.Events[0].Data = bodyOfSize(events.MaxDataBytes)
	s.mustAppend(ctx, t, st, d)
	if evs := mustLoad(ctx, t, st, ref); len(evs) != 1 || len(evs[0].Data) != events.MaxDataBytes {
		t.Errorf("a body of exactly MaxDataBytes did not round-trip")
	}
}

package events_test

import (
	"context"
	"errors"
	"testing"

	"github.com/marketledger/ledger/events"
)

// TestAppendWithPartsRecordsEachCommand: a decision of several commands on
// one aggregate stores their events together and one idempotency record per
// keyed part; each key then answers its own part's positions and version,
// and a later decision reusing one of the keys is refused whole.
func TestAppendWithPartsRecordsEachCommand(t *testing.T) {
	st, _ := startStore(t)
	ctx := context.Background()
	ref := events.AggregateRef{Context: "listing", ID: "l1"}
	if _, err := st.Append(ctx, events.Decision{Aggregate: ref, Events: []events.Event{ev("l1", "listing.created")}}); err != nil {
		t.Fatal(err)
	}
	evs := []events.Event{ev("l1", "listing.stock_reserved"), ev("l1", "listing.stock_reserved"), ev("l1", "listing.stock_reserved"), ev("l1", "listing.stock_reserved")}
	parts := []events.Part{{Events: 1, IdempotencyKey: "a", CommandDigest: "da"}, {Events: 2, IdempotencyKey: "b", CommandDigest: "db"}, {Events: 1}}
	a, err := st.Append(ctx, events.Decision{Aggregate: ref, ExpectedVersion: 1, Events: evs, Parts: parts})
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != 5 || a.LastPosition-a.FirstPosition != 3 {
		t.Fatalf("appended %+v, want version 5 over 4 positions", a)
	}
	want := map[string]events.Appended{
		"a": {Version: 2, FirstPosition: a.FirstPosition, LastPosition: a.FirstPosition, Replayed: true},
		"b": {Version: 4, FirstPosition: a.FirstPosition + 1, LastPosition: a.FirstPosition + 2, Replayed: true},
	}
	for key, w := range want {
		got, found, err := st.LookupIdempotency(ctx, ref, key, "d"+key)
		if err != nil || !found || got != w {
			t.Errorf("key %s: %+v %t %v, want %+v", key, got, found, err, w)
		}
	}
	if _, found, _ := st.LookupIdempotency(ctx, ref, "c", "dc"); found {
		t.Error("an unkeyed part left a record")
	}
	_, err = st.Append(ctx, events.Decision{Aggregate: ref, ExpectedVersion: 5, Events: []events.Event{ev("l1", "listing.stock_reserved"), ev("l1", "listing.stock_reserved")},
		Parts: []events.Part{{Events: 1, IdempotencyKey: "new", CommandDigest: "dn"}, {Events: 1, IdempotencyKey: "b", CommandDigest: "db"}}})
	if events.KindOf(err) != events.KindConflict {
		t.Fatalf("a part reusing key b: %v, want a conflict", err)
	}
	if _, found, _ := st.LookupIdempotency(ctx, ref, "new", "dn"); found {
		t.Error("a refused decision stored a part's record")
	}
	if evs, err := st.Load(ctx, ref, 0); err != nil || len(evs) != 5 {
		t.Errorf("aggregate has %d events (%v), want 5", len(evs), err)
	}
}

// TestAppendRefusesMalformedParts: the parts must share out the events, one
// or more each, with their keys in the parts only and each key once.
func TestAppendRefusesMalformedParts(t *testing.T) {
	st, _ := startStore(t)
	ctx := context.Background()
	ref := events.AggregateRef{Context: "listing", ID: "l2"}
	two := func() []events.Event {
		return []events.Event{ev("l2", "listing.created"), ev("l2", "listing.stock_reserved")}
	}
	for _, tc := range []struct {
		name  string
		d     events.Decision
		field string
	}{
		{"short", events.Decision{Parts: []events.Part{{Events: 1}}}, "parts"},
		{"empty part", events.Decision{Parts: []events.Part{{Events: 2}, {Events: 0}}}, "parts/1/events"},
		{"key on the decision", events.Decision{IdempotencyKey: "k", CommandDigest: "d", Parts: []events.Part{{Events: 2}}}, "idempotency_key"},
		{"key twice", events.Decision{Parts: []events.Part{{Events: 1, IdempotencyKey: "k", CommandDigest: "d"}, {Events: 1, IdempotencyKey: "k", CommandDigest: "d"}}}, "parts/1/idempotency_key"},
		{"key without digest", events.Decision{Parts: []events.Part{{Events: 1, IdempotencyKey: "k"}, {Events: 1}}}, "parts/0/command_digest"},
	} {
		tc.d.Aggregate, tc.d.Events = ref, two()
		_, err := st.Append(ctx, tc.d)
		var e *events.Error
		if events.KindOf(err) != events.KindInvalid || !errors.As(err, &e) || e.Field != tc.field {
			t.Errorf("%s: %v, want invalid %s", tc.name, err, tc.field)
		}
	}
	if evs, err := st.Load(ctx, ref, 0); err != nil || len(evs) != 0 {
		t.Errorf("refused decisions stored %d events (%v)", len(evs), err)
	}
}

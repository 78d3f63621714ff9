package enforcement_test

import (
	"context"
	"fmt"
	"iter"
	"sync"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/enforcement"
	"github.com/marketledger/ledger/runtime/policyview"
)

// memStore keeps appended decisions by aggregate: a second decision on an
// aggregate that exists is a conflict, as the log answers one with
// expected version 0. Only Append is used.
type memStore struct {
	events.Store
	mu   sync.Mutex
	aggs map[events.AggregateRef][]events.Event
	fail error
}

func (s *memStore) Append(_ context.Context, d events.Decision) (events.Appended, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return events.Appended{}, s.fail
	}
	if uint64(len(s.aggs[d.Aggregate])) != d.ExpectedVersion {
		return events.Appended{}, &events.Error{Kind: events.KindConflict, Field: d.Aggregate.String(), Rule: "wrong version"}
	}
	for _, e := range d.Events {
		if err := contracts.CheckEvent(e.Type, e.SchemaVersion, e.Data); err != nil {
			return events.Appended{}, err
		}
	}
	s.aggs[d.Aggregate] = append(s.aggs[d.Aggregate], d.Events...)
	return events.Appended{Version: uint64(len(s.aggs[d.Aggregate]))}, nil
}

func (s *memStore) Read(context.Context, events.Query) iter.Seq2[events.Event, error] { return nil }

func (s *memStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.aggs)
}

// refusal is a placement by buyer refused by a freeze, under key.
func refusal(buyer, orderID, key string) command.Refused {
	rules := policyview.Fold(contracts.FreezeImposed{RuleID: "freeze-1", Scope: contracts.Scope{Jurisdictions: []string{"ID"}},
		BlockedOperations: contracts.FreezeOperations, Activation: contracts.ActivationOnRecording, LegalBasis: "Permendag 31/2023", Issuer: "Kemendag"})
	err := rules.Check(contracts.OpOrderPlace, contracts.Target{Jurisdiction: "ID", Channel: contracts.ChannelSocialCommerce}, contracts.Money{}, time.Now())
	cmd := contracts.PlaceOrder{OrderID: orderID, BuyerID: buyer, ListingID: "l1", Quantity: 1, IdempotencyKey: key}
	digest, _ := command.Digest(cmd)
	return command.Refused{Aggregate: events.AggregateRef{Context: contracts.ServiceOrder, ID: orderID},
		Meta:   command.Meta{CommandID: events.NewID(), CorrelationID: orderID, IdempotencyKey: key, Command: cmd},
		Digest: digest, PolicyPosition: rules.Position, DecidedAt: time.Now(), Err: policyview.WithActor(err, buyer)}
}

func wait(t *testing.T, r *enforcement.Recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := r.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestFloodFromOneActorIsCapped: one buyer's 500 refused placements within
// one instant leave ActorBurst records; the rest are counted as limited.
// Another buyer is still recorded, and time refills the first buyer's
// allowance.
func TestFloodFromOneActorIsCapped(t *testing.T) {
	st := &memStore{aggs: map[events.AggregateRef][]events.Event{}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r, err := enforcement.New(enforcement.Config{Store: st, Now: clock, ActorBurst: 5, ActorPerSecond: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		r.Refused(t.Context(), refusal("b-flood", fmt.Sprintf("o-%d", i), ""))
	}
	r.Refused(t.Context(), refusal("b-other", "o-other", ""))
	wait(t, r)
	if got := st.count(); got != 6 {
		t.Errorf("%d records, want 5 of the flooding buyer and 1 of the other", got)
	}
	if s := r.Stats(); s.Recorded != 6 || s.Limited != 495 {
		t.Errorf("stats %+v, want 6 recorded and 495 limited", s)
	}
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	for i := range 3 {
		r.Refused(t.Context(), refusal("b-flood", fmt.Sprintf("o-later-%d", i), ""))
	}
	wait(t, r)
	if s := r.Stats(); s.Recorded != 8 || s.Limited != 496 {
		t.Errorf("two seconds later: stats %+v, want 8 recorded and 496 limited", s)
	}
}

// TestOneRecordPerCommand: the same command refused again (same key, or
// no key and the same body) adds no record; a failing log is counted and
// changes nothing for the caller; refusals that are not by a rule are not
// recorded.
func TestOneRecordPerCommand(t *testing.T) {
	st := &memStore{aggs: map[events.AggregateRef][]events.Event{}}
	r, err := enforcement.New(enforcement.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	keyed, bare := refusal("b1", "o1", "place-o1"), refusal("b1", "o2", "")
	for range 3 {
		r.Refused(t.Context(), keyed)
		r.Refused(t.Context(), bare)
		wait(t, r)
	}
	other := refusal("b1", "o3", "")
	other.Err = &events.Error{Kind: events.KindConflict, Rule: "not a rule's refusal"}
	r.Refused(t.Context(), other)
	wait(t, r)
	if got := st.count(); got != 2 {
		t.Errorf("%d records, want one per command", got)
	}
	if s := r.Stats(); s.Recorded != 2 || s.Repeated != 4 {
		t.Errorf("stats %+v, want 2 recorded and 4 repeats", s)
	}
	st.fail = &events.Error{Kind: events.KindUnavailable, Rule: "log down"}
	r.Refused(t.Context(), refusal("b2", "o4", ""))
	wait(t, r)
	if s := r.Stats(); s.Failed != 1 {
		t.Errorf("stats %+v, want 1 failed", s)
	}
}

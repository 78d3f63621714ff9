package models

import (
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// specLog builds a log for the violations audit event by event, with the
// positions, clocks and policy positions a test chooses.
type specLog struct {
	t   *testing.T
	v   *Violations
	pos uint64
}

func newSpecLog(t *testing.T) *specLog { return &specLog{t: t, v: NewViolations()} }

// add applies payload as the next event, decided at decided (ce-time),
// recorded at recorded, under policy position policy.
func (l *specLog) add(payload any, decided, recorded time.Time, policy uint64) uint64 {
	l.t.Helper()
	typ, sv, data, err := contracts.Encode(payload)
	if err != nil {
		l.t.Fatal(err)
	}
	l.pos++
	e := events.Event{Type: typ, SchemaVersion: sv, Position: l.pos, OccurredAt: decided, RecordedAt: recorded,
		PolicyPosition: policy, Data: data}
	if err := l.v.Apply(e, payload); err != nil {
		l.t.Fatal(err)
	}
	return l.pos
}

var (
	specNow    = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	specSocial = contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{contracts.ChannelSocialCommerce}}
)

func idrMinor(v int64) contracts.Money { return contracts.Money{AmountMinor: v, Currency: "IDR"} }

func specListing(id string, price int64) contracts.ListingCreated {
	return contracts.ListingCreated{ListingID: id, SellerID: "s-1", Title: "t", Category: "fashion",
		Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID", Origin: contracts.OriginCrossBorder, Price: idrMinor(price), Stock: 5}
}

func specOrder(id string, price int64) contracts.OrderPlaced {
	return contracts.OrderPlaced{OrderID: id, BuyerID: "b-1", ListingID: "l-1", SellerID: "s-1", Quantity: 1,
		UnitPrice: idrMinor(price), Total: idrMinor(price), Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID",
		Category: "fashion", Origin: contracts.OriginCrossBorder}
}

func kindsOf(v Violation) []ViolationKind { return v.Kinds }

// TestViolationListingPriceBelowFloor: a price change below an "effective
// now" floor, accepted and stored after the floor, is a violation.
func TestViolationListingPriceBelowFloor(t *testing.T) {
	l := newSpecLog(t)
	l.add(specListing("l-1", 150_000), specNow, specNow, 0)
	floor := l.add(contracts.FloorPriceSet{RuleID: "floor-id", Scope: specSocial, BlockedOperations: contracts.FloorPriceOperations,
		Amount: idrMinor(100_000), EffectiveAt: specNow.Add(time.Minute), Activation: contracts.ActivationOnRecording, LegalBasis: "Permendag 31/2023", Issuer: "kemendag"},
		specNow.Add(time.Minute), specNow.Add(time.Minute), 0)
	ok := l.add(contracts.ListingPriceChanged{ListingID: "l-1", Price: idrMinor(120_000), PreviousPrice: idrMinor(150_000)},
		specNow.Add(2*time.Minute), specNow.Add(2*time.Minute), floor)
	bad := l.add(contracts.ListingPriceChanged{ListingID: "l-1", Price: idrMinor(90_000), PreviousPrice: idrMinor(120_000)},
		specNow.Add(3*time.Minute), specNow.Add(3*time.Minute), floor)
	created := l.add(specListing("l-2", 50_000), specNow.Add(4*time.Minute), specNow.Add(4*time.Minute), floor)
	got := l.v.List()
	if len(got) != 2 {
		t.Fatalf("want 2 violations (price change at %d, listing at %d), got %+v (price change at %d above the floor)", bad, created, got, ok)
	}
	if got[0].Position != bad || got[0].Operation != contracts.OpListingChangePrice || got[0].RuleID != "floor-id" {
		t.Errorf("price change: %+v", got[0])
	}
	if got[1].Position != created || got[1].Operation != contracts.OpListingCreate {
		t.Errorf("listing: %+v", got[1])
	}
	for _, v := range got {
		if len(v.Kinds) == 0 || v.Kinds[0] != ViolationPositional {
			t.Errorf("kinds %v, want positional", v.Kinds)
		}
	}
}

// TestViolationSlowClockAfterEffectiveNowFreeze: a service whose clock is
// 10 minutes behind decides an order after it saw an "effective now"
// freeze; its ce-time is before the freeze's stated instant, its
// recording after the freeze's position. It is a violation (positional).
func TestViolationSlowClockAfterEffectiveNowFreeze(t *testing.T) {
	l := newSpecLog(t)
	freeze := l.add(contracts.FreezeImposed{RuleID: "fz", Scope: specSocial, BlockedOperations: contracts.FreezeOperations,
		EffectiveAt: specNow, Activation: contracts.ActivationOnRecording, LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}, specNow, specNow, 0)
	order := l.add(specOrder("o-1", 100_000), specNow.Add(-10*time.Minute), specNow.Add(time.Second), freeze)
	got := l.v.List()
	if len(got) != 1 || got[0].Position != order || got[0].RuleID != "fz" {
		t.Fatalf("want the order at %d as a violation of fz, got %+v", order, got)
	}
}

package judge

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestCanonicalHashMatchesTheLedger pins the hash to values the ledger's
// own implementation computed for the same event (with and without a
// previous position), so the two cannot drift apart unnoticed.
func TestCanonicalHashMatchesTheLedger(t *testing.T) {
	for _, c := range []struct {
		prevPos uint64
		want    string
	}{
		{0, "61e92a285cf97cb75c663c4fe22c63725ade64a77593bb0d2852a3ca0488a737"},
		{41, "fbe0bca3f576b03cb6f488c092b4fbab201bcdf5a6c496bb073ad1ee10699b43"},
	} {
		e := &event{ID: "0190f0c2-0000-7000-8000-000000000001", Type: "order.placed", SchemaVersion: 2, Source: "/ledger/order",
			AggregateID: "o-1", TimeRaw: "2023-10-04T17:00:00.123+07:00", Correlation: "c-1", Causation: "k-1", PolicyPosition: 7,
			AggregateVersion: 3, PrevHash: "abababababababababababababababababababababababababababababababab", PrevPosition: c.prevPos}
		e.Data = []byte(`{"order_id":"o-1"}`)
		if got := canonicalHash(e); got != c.want {
			t.Errorf("prevposition %d: hash %s, want %s", c.prevPos, got, c.want)
		}
	}
}

func TestCleanLogHasNoProblems(t *testing.T) {
	w := startLog(t)
	o := w.put(ev{Type: "order.placed", Agg: "o1", Body: order("o1", "toys", 100)})
	w.record("ledger.order._fence")
	w.put(ev{Type: "payment.authorized", Agg: "p1", Body: authorized("p1", "o1", "toys", 100)})
	w.put(ev{Type: "payment.captured", Agg: "p1", Body: captured("p1", "o1", posting{"buyer:b-1", -100, "IDR"}, posting{"escrow:o1", 100, "IDR"})})
	w.put(ev{Type: "order.confirmed", Agg: "o1", Body: map[string]any{"order_id": "o1", "payment_id": "p1"}})
	r := w.check()
	if !r.OK() {
		t.Errorf("problems in a clean log: %v", r.Problems())
	}
	if r.Messages != 5 || r.Events != 4 || r.Records != 1 || r.Checked != 3 || r.LastSeq != o+4 {
		t.Errorf("read %d messages (%d events, %d records, %d checked) to %d; want 5 (4, 1, 3) to %d",
			r.Messages, r.Events, r.Records, r.Checked, r.LastSeq, o+4)
	}
}

func TestPositionalViolation(t *testing.T) {
	w := startLog(t)
	before := w.put(ev{Type: "order.placed", Agg: "o0", Body: order("o0", "toys", 100)})
	f := w.put(ev{Type: "policy.freeze_imposed", Agg: "fz", Policy: before, Body: freeze("fz", "toys", time.Now(), modeOnRecording)})
	o1 := w.put(ev{Type: "order.placed", Agg: "o1", Policy: f, Body: order("o1", "toys", 100)})
	w.put(ev{Type: "order.placed", Agg: "o2", Policy: f, Body: order("o2", "books", 100)}) // out of scope
	r := w.check()
	want := []string{fmt.Sprintf("order.placed@%d:fz:[positional]", o1)}
	if got := violationsOf(r); !slices.Equal(got, want) {
		t.Errorf("violations %v, want %v", got, want)
	}
	if len(r.Findings) != 0 || len(r.InFlight) != 0 {
		t.Errorf("findings %v, in flight %v; want none", r.Findings, r.InFlight)
	}
	if c := r.Rules[0]; c.Accepted != 1 || c.Violations != 1 || c.ActivationPosition != f || c.Activation != modeOnRecording {
		t.Errorf("rule count %+v, want 1 accepted, 1 violation, activated at %d on recording", c, f)
	}
}

func TestDecisionInstantViolation(t *testing.T) {
	w := startLog(t)
	E := time.Now().Add(time.Hour).Round(time.Millisecond)
	f := w.put(ev{Type: "policy.freeze_imposed", Agg: "fz", Body: freeze("fz", "toys", E, modeScheduled)})
	early := w.put(ev{Type: "order.placed", Agg: "o1", Policy: f, Decided: E.Add(-time.Second), Body: order("o1", "toys", 100)})
	late := w.put(ev{Type: "order.placed", Agg: "o2", Policy: f, Decided: E, Body: order("o2", "toys", 100)})
	r := w.check()
	want := []string{fmt.Sprintf("order.placed@%d:fz:[decision_instant]", late)}
	if got := violationsOf(r); !slices.Equal(got, want) {
		t.Errorf("violations %v, want %v (the order at %d was decided before the instant)", got, want, early)
	}
	if len(r.Findings) != 0 || len(r.InFlight) != 0 {
		t.Errorf("findings %v, in flight %v; want none", r.Findings, r.InFlight)
	}
}

// TestInFlightIsListedNotFlagged: decided before a scheduled freeze's
// instant, recorded after it and positioned before its activation, an
// accepted order is in flight, not a violation; one positioned after the
// activation is.
func TestInFlightIsListedNotFlagged(t *testing.T) {
	w := startLog(t)
	E := time.Now().Truncate(time.Millisecond) // never after the recording of what follows
	f := w.put(ev{Type: "policy.freeze_imposed", Agg: "fz", Decided: E.Add(-time.Second), Body: freeze("fz", "toys", E, modeScheduled)})
	flight := w.put(ev{Type: "order.placed", Agg: "o1", Policy: f, Decided: E.Add(-time.Millisecond), Body: order("o1", "toys", 100)})
	a := w.put(ev{Type: "policy.rule_activated", Agg: "fz", Policy: f, Decided: E, Body: activated("fz", "freeze_imposed", E)})
	after := w.put(ev{Type: "order.placed", Agg: "o2", Policy: f, Decided: E.Add(-time.Millisecond), Body: order("o2", "toys", 100)})
	r := w.check()
	want := []string{fmt.Sprintf("order.placed@%d:fz:[positional]", after)}
	if got := violationsOf(r); !slices.Equal(got, want) {
		t.Errorf("violations %v, want %v", got, want)
	}
	if len(r.InFlight) != 1 || r.InFlight[0].Position != flight || r.InFlight[0].ActivationPosition != a {
		t.Errorf("in flight %+v, want the order at %d before the activation at %d", r.InFlight, flight, a)
	}
	// Decided under the freeze's position, stored after its activation:
	// the fence did not hold.
	if got, want := kinds(r), []FindingKind{FindingStalePolicy}; !slices.Equal(got, want) {
		t.Errorf("findings %v, want %v", r.Findings, want)
	}
	if c := r.Rules[0]; c.InFlight != 1 || c.Accepted != 2 || c.ActivationPosition != a {
		t.Errorf("rule count %+v, want 1 in flight, 2 accepted, activated at %d", c, a)
	}
}

// TestLiftedRule: a lift counts from its activation, never from its
// instant: an order after a scheduled lift but before its activation still
// breaks the freeze; one after the activation does not.
func TestLiftedRule(t *testing.T) {
	w := startLog(t)
	f := w.put(ev{Type: "policy.freeze_imposed", Agg: "fz", Body: freeze("fz", "toys", time.Now(), modeOnRecording)})
	w.put(ev{Type: "order.rejected", Agg: "o0", Policy: f, Body: map[string]any{"order_id": "o0", "reason": "frozen", "rule_id": "fz"}})
	E := time.Now().Add(-time.Second)
	l := w.put(ev{Type: "policy.freeze_lifted", Agg: "fz", Policy: f, Body: lift("fz", E, modeScheduled)})
	before := w.put(ev{Type: "order.placed", Agg: "o1", Policy: l, Body: order("o1", "toys", 100)})
	a := w.put(ev{Type: "policy.rule_activated", Agg: "fz", Policy: l, Body: activated("fz", "freeze_lifted", E)})
	w.put(ev{Type: "order.placed", Agg: "o2", Policy: a, Body: order("o2", "toys", 100)})
	r := w.check()
	want := []string{fmt.Sprintf("order.placed@%d:fz:[positional]", before)}
	if got := violationsOf(r); !slices.Equal(got, want) {
		t.Errorf("violations %v, want %v", got, want)
	}
	if len(r.Findings) != 0 {
		t.Errorf("findings %v, want none", r.Findings)
	}
	c := r.Rules[0]
	if c.Refused != 1 || c.Accepted != 1 || c.LiftPosition != l || c.LiftActivationPosition != a {
		t.Errorf("rule count %+v, want 1 refused, 1 accepted, lift at %d activated at %d", c, l, a)
	}
}

// TestLegacyChanges: a change stored without an activation field is in
// force from its own position when its instant was not after its
// recording, and by decision instant otherwise.
func TestLegacyChanges(t *testing.T) {
	w := startLog(t)
	now := w.put(ev{Type: "policy.freeze_imposed", Agg: "fz-now", Body: freeze("fz-now", "toys", time.Now(), "")})
	o1 := w.put(ev{Type: "order.placed", Agg: "o1", Policy: now, Body: order("o1", "toys", 100)})
	E := time.Now().Add(time.Hour).Round(time.Millisecond)
	sched := w.put(ev{Type: "policy.freeze_imposed", Agg: "fz-later", Policy: now, Body: freeze("fz-later", "books", E, "")})
	w.put(ev{Type: "order.placed", Agg: "o2", Policy: sched, Body: order("o2", "books", 100)})
	o3 := w.put(ev{Type: "order.placed", Agg: "o3", Policy: sched, Decided: E, Body: order("o3", "books", 100)})
	r := w.check()
	want := []string{fmt.Sprintf("order.placed@%d:fz-now:[positional]", o1), fmt.Sprintf("order.placed@%d:fz-later:[decision_instant]", o3)}
	if got := violationsOf(r); !slices.Equal(got, want) {
		t.Errorf("violations %v, want %v", got, want)
	}
	if got := []string{r.Rules[0].Activation, r.Rules[1].Activation}; !slices.Equal(got, []string{modeLegacyNow, modeLegacyScheduled}) {
		t.Errorf("activations %v, want legacy_now, legacy_scheduled", got)
	}
}

// TestScopeComesFromTheOrder: a capture carries no scope; it is judged on
// its order's, and a payment that states another scope than its order's
// is reported.
func TestScopeComesFromTheOrder(t *testing.T) {
	w := startLog(t)
	w.put(ev{Type: "order.placed", Agg: "o1", Body: order("o1", "toys", 100)})
	w.put(ev{Type: "payment.authorized", Agg: "p1", Body: authorized("p1", "o1", "books", 100)})
	f := w.put(ev{Type: "policy.freeze_imposed", Agg: "fz", Body: freeze("fz", "toys", time.Now(), modeOnRecording)})
	c := w.put(ev{Type: "payment.captured", Agg: "p1", Policy: f,
		Body: captured("p1", "o1", posting{"buyer:b-1", -100, "IDR"}, posting{"escrow:o1", 100, "IDR"})})
	r := w.check()
	want := []string{fmt.Sprintf("payment.captured@%d:fz:[positional]", c)}
	if got := violationsOf(r); !slices.Equal(got, want) {
		t.Errorf("violations %v, want %v", got, want)
	}
	if got := kinds(r); !slices.Equal(got, []FindingKind{FindingReference}) {
		t.Errorf("findings %v, want the authorization's scope reported", r.Findings)
	}
}

// TestFloorPrice: a floor blocks listings below it; a price change is
// judged on its listing's scope and its new price.
func TestFloorPrice(t *testing.T) {
	w := startLog(t)
	f := w.put(ev{Type: "policy.floor_price_set", Agg: "fl", Body: map[string]any{"rule_id": "fl", "scope": scopeJSON{Sellers: []string{"s-1"}},
		"blocked_operations": []string{"listing.create", "listing.change_price"}, "amount": m(1000), "effective_at": time.Now(),
		"activation": modeOnRecording, "legal_basis": "Permendag 31/2023", "issuer": "kemendag"}})
	listing := func(id, seller string, price int64) map[string]any {
		return map[string]any{"listing_id": id, "seller_id": seller, "title": "t", "category": "toys", "channel": "marketplace",
			"jurisdiction": "ID", "origin": "domestic", "price": m(price), "stock": 1}
	}
	low := w.put(ev{Type: "listing.created", Agg: "l1", Policy: f, Body: listing("l1", "s-1", 999)})
	w.put(ev{Type: "listing.created", Agg: "l2", Policy: f, Body: listing("l2", "s-1", 1000)})
	w.put(ev{Type: "listing.created", Agg: "l3", Policy: f, Body: listing("l3", "s-2", 10)})
	cut := w.put(ev{Type: "listing.price_changed", Agg: "l2", Policy: f, Body: map[string]any{"listing_id": "l2", "price": m(900), "previous_price": m(1000)}})
	w.put(ev{Type: "listing.price_changed", Agg: "l3", Policy: f, Body: map[string]any{"listing_id": "l3", "price": m(9), "previous_price": m(10)}})
	r := w.check()
	want := []string{fmt.Sprintf("listing.created@%d:fl:[positional]", low), fmt.Sprintf("listing.price_changed@%d:fl:[positional]", cut)}
	if got := violationsOf(r); !slices.Equal(got, want) {
		t.Errorf("violations %v, want %v", got, want)
	}
	if len(r.Findings) != 0 {
		t.Errorf("findings %v, want none", r.Findings)
	}
}

func TestBrokenHashChain(t *testing.T) {
	w := startLog(t)
	w.put(ev{Type: "order.placed", Agg: "o1", Body: order("o1", "toys", 100)})
	// Sealed onto a head that is not the stored one: its own hash holds,
	// its link does not.
	h := w.heads["order.o1"]
	w.heads["order.o1"] = head{version: h.version, pos: h.pos, hash: "ab" + h.hash[2:]}
	linked := w.put(ev{Type: "order.cancelled", Agg: "o1", Body: map[string]any{"order_id": "o1", "reason": "r"}})
	// A body changed after sealing: its hash fails, the chain after it
	// still links to the hash as stored.
	tampered := w.put(ev{Type: "order.placed", Agg: "o2", Body: order("o2", "toys", 100), Edit: func(m *nats.Msg) {
		m.Data = []byte(`{"order_id":"o2","category":"books"}`)
	}})
	w.put(ev{Type: "order.cancelled", Agg: "o2", Body: map[string]any{"order_id": "o2", "reason": "r"}})
	r := w.check()
	var got []string
	for _, f := range r.Findings {
		got = append(got, fmt.Sprintf("%s@%d", f.Kind, f.Position))
	}
	want := []string{fmt.Sprintf("chain@%d", linked), fmt.Sprintf("hash@%d", tampered)}
	if !slices.Equal(got, want) {
		t.Errorf("findings %v, want %v", r.Findings, want)
	}
}

func TestGap(t *testing.T) {
	w := startLog(t)
	w.put(ev{Type: "order.placed", Agg: "o1", Body: order("o1", "toys", 100)})
	gone := w.record("ledger.order._fence")
	w.put(ev{Type: "order.cancelled", Agg: "o1", Body: map[string]any{"order_id": "o1", "reason": "r"}})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	s, err := w.js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, gone); err != nil {
		t.Fatal(err)
	}
	r := w.check()
	if got := kinds(r); !slices.Equal(got, []FindingKind{FindingGap}) || r.Findings[0].Position != gone+1 {
		t.Errorf("findings %v, want a gap before %d", r.Findings, gone+1)
	}
}

func TestPostings(t *testing.T) {
	w := startLog(t)
	pay := func(id string, ps ...posting) {
		w.put(ev{Type: "order.placed", Agg: "o" + id, Body: order("o"+id, "toys", 100)})
		w.put(ev{Type: "payment.authorized", Agg: "p" + id, Body: authorized("p"+id, "o"+id, "toys", 100)})
		w.put(ev{Type: "payment.captured", Agg: "p" + id, Body: captured("p"+id, "o"+id, ps...)})
	}
	t.Run("non-zero sum", func(t *testing.T) {
		pay("1", posting{"buyer:b-1", -100, "IDR"}, posting{"escrow:o1", 90, "IDR"})
		if got := kinds(w.check()); !slices.Equal(got, []FindingKind{FindingPostings}) {
			t.Errorf("findings %v, want postings", got)
		}
	})
	t.Run("overflow in a movement", func(t *testing.T) {
		w = startLog(t)
		pay("2", posting{"escrow:o2", math.MaxInt64, "IDR"}, posting{"escrow:o2", 1, "IDR"}, posting{"buyer:b-1", math.MinInt64, "IDR"})
		if got := kinds(w.check()); !slices.Equal(got, []FindingKind{FindingOverflow}) {
			t.Errorf("findings %v, want overflow (the sum wraps to 0 mod 2^64)", got)
		}
	})
	t.Run("overflow of a balance", func(t *testing.T) {
		w = startLog(t)
		pay("3", posting{"buyer:b-1", -math.MaxInt64, "IDR"}, posting{"escrow:o3", math.MaxInt64, "IDR"})
		pay("4", posting{"buyer:b-1", -math.MaxInt64, "IDR"}, posting{"escrow:o4", math.MaxInt64, "IDR"})
		if got := kinds(w.check()); !slices.Equal(got, []FindingKind{FindingOverflow}) {
			t.Errorf("findings %v, want overflow of buyer:b-1", got)
		}
	})
}

func TestDuplicateEventID(t *testing.T) {
	w := startLog(t)
	w.put(ev{Type: "order.placed", Agg: "o1", Body: order("o1", "toys", 100)})
	w.n-- // the next event gets the same id
	dup := w.put(ev{Type: "order.placed", Agg: "o2", Body: order("o2", "toys", 100)})
	r := w.check()
	if got := kinds(r); !slices.Equal(got, []FindingKind{FindingDuplicateID}) || r.Findings[0].Position != dup {
		t.Errorf("findings %v, want a duplicate id at %d", r.Findings, dup)
	}
}

func TestStalePolicyAndMalformed(t *testing.T) {
	w := startLog(t)
	w.put(ev{Type: "policy.freeze_imposed", Agg: "fz", Body: freeze("fz", "books", time.Now(), modeOnRecording)})
	stale := w.put(ev{Type: "order.placed", Agg: "o1", Body: order("o1", "toys", 100)})
	bad := w.put(ev{Type: "order.placed", Agg: "o2", Body: order("o2", "toys", 100), Edit: func(m *nats.Msg) { m.Header.Del("ce-hash") }})
	r := w.check()
	var got []string
	for _, f := range r.Findings {
		got = append(got, fmt.Sprintf("%s@%d", f.Kind, f.Position))
	}
	want := []string{fmt.Sprintf("stale_policy@%d", stale), fmt.Sprintf("malformed@%d", bad)}
	if !slices.Equal(got, want) {
		t.Errorf("findings %v, want %v", r.Findings, want)
	}
}

// TestSimulatedDay: a day played on a business clock (4 October 2023,
// recorded years later) is judged on that clock: a freeze decided in the
// morning for 17:00 blocks what is decided from 17:00, and nothing is in
// flight, although every event was recorded after 17:00 by the server's
// clock.
func TestSimulatedDay(t *testing.T) {
	w := startLog(t)
	wib := time.FixedZone("WIB", 7*3600)
	at := func(h, m int) time.Time { return time.Date(2023, 10, 4, h, m, 0, 0, wib) }
	f := w.put(ev{Type: "policy.freeze_imposed", Agg: "fz", Decided: at(9, 0), Body: freeze("fz", "toys", at(17, 0), "")})
	w.put(ev{Type: "order.placed", Agg: "o1", Policy: f, Decided: at(16, 55), Body: order("o1", "toys", 100)})
	late := w.put(ev{Type: "order.placed", Agg: "o2", Policy: f, Decided: at(17, 0), Body: order("o2", "toys", 100)})
	r := w.check()
	want := []string{fmt.Sprintf("order.placed@%d:fz:[decision_instant]", late)}
	if got := violationsOf(r); !slices.Equal(got, want) {
		t.Errorf("violations %v, want %v", got, want)
	}
	if len(r.InFlight) != 0 || len(r.Findings) != 0 || r.Rules[0].Activation != modeLegacyScheduled {
		t.Errorf("in flight %v, findings %v, rule %+v; want none, none, legacy_scheduled", r.InFlight, r.Findings, r.Rules[0])
	}
}

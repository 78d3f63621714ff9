package console

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
)

var wib = time.FixedZone("WIB", 7*3600)

type fakeLog []events.Event

func (f fakeLog) LastPosition(context.Context) (uint64, error) { return uint64(len(f)), nil }

func (f fakeLog) Read(_ context.Context, q events.Query) iter.Seq2[events.Event, error] {
	return func(yield func(events.Event, error) bool) {
		for _, e := range f {
			if e.Position >= q.From && (q.To == 0 || e.Position <= q.To) && !yield(e, nil) {
				return
			}
		}
	}
}

func (f *fakeLog) add(typ string, at time.Time, body any) {
	b, _ := json.Marshal(body)
	*f = append(*f, events.Event{Type: typ, Position: uint64(len(*f) + 1), OccurredAt: at, RecordedAt: at.Add(time.Hour), Data: b,
		ID: fmt.Sprint("e", len(*f)+1)})
}

// TestDayPutsTheFreezeOnItsInstantAndCountsEachSideOfIt: checkouts are
// counted per bucket by channel, the activation of a rule is a marker at
// its instant on the chart's axis, and a refresh reads only what is new.
func TestDayPutsTheFreezeOnItsInstantAndCountsEachSideOfIt(t *testing.T) {
	freeze := time.Date(2023, 10, 4, 17, 0, 0, 0, wib)
	var log fakeLog
	log.add("order.placed", freeze.Add(-90*time.Second), map[string]string{"channel": "social_commerce"})
	log.add("order.placed", freeze.Add(-30*time.Second), map[string]string{"channel": "marketplace"})
	log.add("policy.rule_activated", freeze, map[string]string{"rule_id": "f1"})
	log.add("order.placed", freeze.Add(30*time.Second), map[string]string{"channel": "marketplace"})
	log.add("payment.refunded", freeze.Add(40*time.Second), map[string]string{"reason": "buyer request"})
	log.add("order.rejected", freeze.Add(50*time.Second), map[string]string{"rule_id": "f1"})
	log.add("enforcement.command_refused", freeze.Add(55*time.Second), map[string]string{"rule_id": "f1", "command": "order.place"})
	d := NewDay(log[:2])
	if err := d.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.r = log
	if err := d.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := d.Bin(Business, freeze.Add(-2*time.Minute), freeze.Add(2*time.Minute), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range s.Buckets {
		got = append(got, fmt.Sprintf("%s sc=%d mp=%d refunds=%d refused=%d", b.Start.In(wib).Format("15:04"),
			b.Checkouts["social_commerce"], b.Checkouts["marketplace"], b.Refunds, b.Refusals["rule f1"]))
	}
	want := []string{"16:58 sc=1 mp=0 refunds=0 refused=0", "16:59 sc=0 mp=1 refunds=0 refused=0",
		"17:00 sc=0 mp=1 refunds=1 refused=2", "17:01 sc=0 mp=0 refunds=0 refused=0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("buckets:\n%v\nwant\n%v", got, want)
	}
	c := NewChart("t", s, wib, nil)
	if len(c.Markers) != 1 || !c.Markers[0].Effective || c.Markers[0].Time != "2023-10-04T17:00:00+07:00" {
		t.Fatalf("markers = %+v", c.Markers)
	}
	if mid := float64(c.Left+c.Right) / 2; c.Markers[0].X != mid {
		t.Errorf("freeze at x=%.1f, want the middle of the axis %.1f", c.Markers[0].X, mid)
	}
	if _, err := d.Bin(Business, freeze, freeze.Add(24*time.Hour), time.Second); err == nil {
		t.Error("a day by second was binned; want it refused as too many buckets")
	}
}

func TestSignInSendsOnlyToConsolePages(t *testing.T) {
	for in, want := range map[string]string{"/console/trace?id=x": "/console/trace?id=x", "https://evil.example/": "/console/",
		"//evil.example/console": "/console/", "/v1/events": "/console/", "": "/console/"} {
		if got := localNext(in); got != want {
			t.Errorf("localNext(%q) = %q, want %q", in, got, want)
		}
	}
}

package projections

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/internal/logtest"
)

// TestAsOfEqualsRebuild checks, for many random points on each clock, that
// the as-of state (nearest snapshot plus tail) equals a fresh fold stopped
// at the same point, byte for byte, for every model.
func TestAsOfEqualsRebuild(t *testing.T) {
	env := startEnv(t)
	g := logtest.Generate(t, env.Store, logtest.Config{Seed: 21, Listings: 10, Flows: 150})
	eng := startEngine(t, env, nil)
	waitHead(t, env, eng)
	eng.Stop()
	g.More(20, 4, 22) // an unindexed tail the engine has not seen
	evs, ps := logtest.ReadAll(t, env.Store)
	ctx := context.Background()
	q := NewQuerier(ctx, env.Store)
	rng := rand.New(rand.NewPCG(21, 2))
	const points = 50
	var replayed, total int
	check := func(at AsOf, keep func(*events.Event) bool) {
		t.Helper()
		s, err := q.State(ctx, at)
		if err != nil {
			t.Fatalf("%s: %v", at, err)
		}
		want := logtest.FoldMem(t, evs, ps, keep)
		for _, m := range s.Models {
			got, _ := m.Snapshot()
			if !bytes.Equal(got, want[m.Name()]) {
				t.Fatalf("%s: %s differs from a fresh fold (snapshot at %d)", at, m.Name(), s.Snapshots[m.Name()])
			}
		}
		replayed += s.Replayed
		total += len(evs)
	}
	for range points {
		e := evs[rng.IntN(len(evs))]
		check(AtPosition(e.Position), func(x *events.Event) bool { return x.Position <= e.Position })
	}
	if replayed*3 > total {
		t.Errorf("position as-of replayed %d of %d events: snapshots not used", replayed, total)
	}
	for range points {
		e := evs[rng.IntN(len(evs))]
		at := e.RecordedAt.Add(time.Duration(rng.IntN(2000)-1000) * time.Microsecond)
		if at.Before(evs[0].RecordedAt) {
			at = evs[0].RecordedAt
		}
		pos, err := env.Store.PositionAt(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		check(AtRecorded(at), func(x *events.Event) bool { return x.Position <= pos })
	}
	lo, hi := evs[0].OccurredAt, evs[0].OccurredAt
	for i := range evs {
		lo, hi = minTime(lo, evs[i].OccurredAt), maxTime(hi, evs[i].OccurredAt)
	}
	for i := range points {
		at := lo.Add(time.Duration(rng.Int64N(int64(hi.Sub(lo)))))
		if i == 0 {
			at = hi
		}
		check(AtBusiness(at), BusinessFilter(at))
	}
}

func TestAsOfBadInput(t *testing.T) {
	env := startEnv(t)
	ctx := context.Background()
	q := NewQuerier(ctx, env.Store)
	if _, err := q.State(ctx, AtPosition(1)); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("empty log: %v", err)
	}
	logtest.Generate(t, env.Store, logtest.Config{Seed: 1, Listings: 3, Flows: 5})
	evs, _ := logtest.ReadAll(t, env.Store)
	last := evs[len(evs)-1]
	lo := evs[0].OccurredAt
	for _, e := range evs {
		lo = minTime(lo, e.OccurredAt)
	}
	tests := []struct {
		at   AsOf
		want string
	}{
		{AtPosition(last.Position + 1), "after the last position"},
		{AtRecorded(evs[0].RecordedAt.Add(-time.Second)), "before the first event"},
		{AtRecorded(time.Now().Add(time.Hour)), "in the future"},
		{AtBusiness(lo.Add(-time.Second)), "before the first event"},
		{AtBusiness(time.Now().Add(time.Hour)), "in the future"},
		{AsOf{Clock: "wall"}, "unknown clock"},
	}
	for _, tt := range tests {
		_, err := q.State(ctx, tt.at)
		if !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want %q", tt.at, err, tt.want)
		}
	}
	// "Now" on a quiet ledger, after its last event on either clock, is
	// the head of the log.
	now := time.Now()
	for _, at := range []AsOf{AtRecorded(now), AtBusiness(now)} {
		s, err := q.State(ctx, at)
		if err != nil {
			t.Errorf("%s on a quiet ledger: %v", at, err)
			continue
		}
		if s.Point.Position != last.Position {
			t.Errorf("%s on a quiet ledger: position %d, want the head %d", at, s.Point.Position, last.Position)
		}
	}
	if _, err := q.State(ctx, AtPosition(1), "nope"); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("unknown model: %v", err)
	}
	for _, in := range [][2]string{{"business", "yesterday"}, {"recorded", "2023-10-04 16:59:59"}, {"position", "-3"}, {"position", "0"}, {"wall", "1"}} {
		if _, err := ParseAsOf(in[0], in[1]); !errors.Is(err, events.ErrInvalid) {
			t.Errorf("ParseAsOf(%q, %q): %v", in[0], in[1], err)
		}
	}
	if a, err := ParseAsOf("", "2023-10-04T16:59:59+07:00"); err != nil || a.Clock != ClockBusiness {
		t.Errorf("default clock: %+v %v", a, err)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

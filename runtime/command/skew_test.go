package command_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
)

// TestSkewRefusesFencedCommands runs a runner whose decision clock is off
// the server's by ten seconds, behind and ahead: the first append measures
// it, and the next fenced command is refused as unavailable, naming the
// direction, while an unfenced one still runs. A clock within the bound
// refuses nothing.
func TestSkewRefusesFencedCommands(t *testing.T) {
	for _, tc := range []struct {
		offset  time.Duration
		refused bool
		dir     string
	}{
		{-10 * time.Second, true, "behind"},
		{10 * time.Second, true, "ahead of"},
		{0, false, ""},
	} {
		t.Run(fmt.Sprintf("offset=%s", tc.offset), func(t *testing.T) {
			r, _ := newRunner(t)
			r.Clock = func() time.Time { return time.Now().Add(tc.offset) }
			r.Skew = &command.Skew{SampleEvery: -1}
			ctx := context.Background()
			agg := counter(true)
			open := func(context.Context, bool) (command.Policy[struct{}], error) { return command.Policy[struct{}]{}, nil }
			meta := command.Meta{CommandID: "c1", Command: 1}
			if _, err := command.Run(ctx, r, agg, "s1", meta, nil, add(1)); err != nil {
				t.Fatal(err)
			}
			est, ok := r.Skew.Estimate()
			// recorded - decided: +10 s when the clock is behind, -10 s ahead.
			if want := -tc.offset; !ok || est < want || est > want+time.Second {
				t.Errorf("estimate %s (%v), want about %s", est, ok, want)
			}
			_, err := command.Run(ctx, r, agg, "s1", command.Meta{CommandID: "c2", Command: 2}, open, add(1))
			switch {
			case tc.refused && events.KindOf(err) != events.KindUnavailable:
				t.Errorf("fenced command under a skewed clock: %v, want unavailable", err)
			case tc.refused:
				if e, ok := err.(*events.Error); !ok || e.Field != "clock" || !strings.Contains(e.Rule, tc.dir) {
					t.Errorf("refusal %v does not say the clock is %s", err, tc.dir)
				}
				if r.Skew.Check() == nil {
					t.Error("Check passes beyond the bound")
				}
			case err != nil:
				t.Errorf("fenced command within the bound: %v", err)
			}
			if _, err := command.Run(ctx, r, agg, "s1", command.Meta{CommandID: "c3", Command: 3}, nil, add(1)); err != nil {
				t.Errorf("unfenced command: %v", err)
			}
		})
	}
}

// slowStore answers every append only after wait, as a store does whose
// append waited through a stream leader's election.
type slowStore struct {
	events.Store
	wait time.Duration
}

func (s slowStore) Append(ctx context.Context, d events.Decision) (events.Appended, error) {
	time.Sleep(s.wait) // the append's own wait, not a synchronisation
	return s.Store.Append(ctx, d)
}

// TestSkewIgnoresAnAppendThatWaited runs a runner whose clock is the
// server's and whose store answers an append after more than half the skew
// bound: the wait is latency, not skew, and must not make the runner refuse
// fenced commands.
func TestSkewIgnoresAnAppendThatWaited(t *testing.T) {
	const bound = 400 * time.Millisecond
	r, st := newRunner(t)
	r.Store = slowStore{Store: st, wait: bound}
	r.Skew = &command.Skew{Max: bound, SampleEvery: -1}
	ctx := context.Background()
	agg := counter(true)
	open := func(context.Context, bool) (command.Policy[struct{}], error) { return command.Policy[struct{}]{}, nil }
	if _, err := command.Run(ctx, r, agg, "s1", command.Meta{CommandID: "c1", Command: 1}, nil, add(1)); err != nil {
		t.Fatal(err)
	}
	if est, ok := r.Skew.Estimate(); ok {
		t.Errorf("an append answered after %s was measured: estimate %s", bound, est)
	}
	if _, err := command.Run(ctx, r, agg, "s1", command.Meta{CommandID: "c2", Command: 2}, open, add(1)); err != nil {
		t.Errorf("fenced command after a slow append, clock exact: %v", err)
	}
}

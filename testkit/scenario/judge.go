package scenario

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit/checkoutrun"
	"github.com/marketledger/ledger/testkit/invariant"
)

// Judge checks what the loops saw against the freeze: every blocked step
// of an in-scope checkout sent after cut was refused, none was refused
// before early (the instant a scheduled freeze takes effect; zero for a
// freeze effective at once), and every control checkout was accepted.
// Services refuse from the instant by their clock and from the activation
// by position; nothing refuses earlier (ADR 0004).
func (l *Load) Judge(cut, early time.Time) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, c := range l.Checkouts {
		for _, s := range c.Steps {
			if !Blocked(s.Name) {
				if s.Err != nil {
					out = append(out, fmt.Sprintf("%s %s via %s: %v (never blocked by a freeze)", c.OrderID, s.Name, s.Instance, s.Err))
				}
				continue
			}
			if s.Err == nil && s.Issued.After(cut) {
				out = append(out, fmt.Sprintf("%s %s via %s accepted though sent %s after the freeze's cut",
					c.OrderID, s.Name, s.Instance, s.Issued.Sub(cut)))
			}
			if events.KindOf(s.Err) == events.KindFrozen && s.Done.Before(early) {
				out = append(out, fmt.Sprintf("%s %s via %s refused %s before the freeze's instant",
					c.OrderID, s.Name, s.Instance, early.Sub(s.Done)))
			}
		}
	}
	for _, c := range l.Controls {
		if c.Outcome != Accepted {
			out = append(out, fmt.Sprintf("control checkout %s (out of scope) ended %s", c.OrderID, c.Outcome))
		}
	}
	return out
}

// JudgeLog reads the log and checks it against freeze ruleID from the log
// alone, twice: with Log.Violations and with the projections' violations
// audit. It fails t for every violation and returns the log.
func JudgeLog(t testing.TB, ctx context.Context, store events.Store, ruleID string) *Log {
	t.Helper()
	lg, err := ReadLog(ctx, store)
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	f := lg.Freezes[ruleID]
	if f == nil {
		t.Fatalf("freeze %s is not in the log", ruleID)
	}
	if len(lg.InScope(f)) == 0 {
		t.Errorf("no transaction in the scope of %s was accepted at all: the run proves nothing", ruleID)
	}
	for _, v := range lg.Violations(f) {
		t.Errorf("violation: %s", v)
	}
	audit, err := Audit(ctx, store)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	if audit.Checked() == 0 {
		t.Errorf("the violations audit checked no transaction")
	}
	for _, v := range audit.List() {
		t.Errorf("audit violation: %+v", v)
	}
	t.Logf("log: head %d, %d transaction events (%d in scope of %s, %d in flight at its instant), audit checked %d, freeze at %d recorded %s, activated at %d recorded %s",
		lg.Head, len(lg.Txs), len(lg.InScope(f)), ruleID, len(lg.InFlight(f)), audit.Checked(), f.Position,
		f.Recorded.Format(time.RFC3339Nano), f.ActivationPosition, f.InForce.Format(time.RFC3339Nano))
	return lg
}

// JudgeCheckouts waits until the checkout has handled the log of w, then
// fails t for every order the log shows stranding stock or money
// (invariant.NothingStranded). Call it once the buyers have stopped.
func JudgeCheckouts(t testing.TB, ctx context.Context, w *Checkouts) {
	t.Helper()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := checkoutrun.Settle(dctx, w.store, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := invariant.NothingStranded(ctx, w.store); err != nil {
		t.Error(err)
	}
	t.Logf("checkout: %d steps sent, nothing stranded", w.Runner.Steps())
}

// Seeds returns the seeds a test runs: LEDGER_SCENARIO_SEED replays one,
// otherwise n seeds from the clock (LEDGER_SCENARIO_SEEDS overrides n).
func Seeds(n int) []uint64 {
	if s, err := strconv.ParseUint(os.Getenv("LEDGER_SCENARIO_SEED"), 10, 64); err == nil {
		return []uint64{s}
	}
	if k, err := strconv.Atoi(os.Getenv("LEDGER_SCENARIO_SEEDS")); err == nil && k > 0 {
		n = k
	}
	base := uint64(time.Now().UnixNano())
	out := make([]uint64, n)
	for i := range out {
		out[i] = base + uint64(i)*7919
	}
	return out
}

// ForSeeds runs f as a subtest per seed, naming the seed on failure so that
// LEDGER_SCENARIO_SEED=<seed> replays it.
func ForSeeds(t *testing.T, n int, f func(t *testing.T, seed uint64)) {
	for _, seed := range Seeds(n) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("replay with LEDGER_SCENARIO_SEED=%d", seed)
				}
			})
			f(t, seed)
		})
	}
}

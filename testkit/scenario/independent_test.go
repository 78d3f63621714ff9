package scenario

import (
	"context"
	"sync"
	"testing"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit/judge"
)

// reported holds, per log (keyed by the store judged), the problems an
// earlier run on the same log already failed its test for: runs that share
// a cluster's log fail only for what is new, not again for an earlier
// run's violation.
var reported = struct {
	sync.Mutex
	seen map[*events.JetStreamStore]map[string]bool
}{seen: map[*events.JetStreamStore]map[string]bool{}}

// judgeRaw runs the independent judge (testkit/judge), which shares no code
// with the services, the contracts or the projections, on the raw stream
// under st, and fails t for every violation and every failed log check it
// reports that no earlier run on this log reported. It returns the report.
func judgeRaw(t testing.TB, ctx context.Context, st *events.JetStreamStore) *judge.Report {
	t.Helper()
	r, err := judge.Check(ctx, st.JetStream(), events.StreamName)
	if err != nil {
		t.Fatalf("independent judge: %v", err)
	}
	reported.Lock()
	seen := reported.seen[st]
	if seen == nil {
		seen = map[string]bool{}
		reported.seen[st] = seen
	}
	earlier := 0
	for _, p := range r.Problems() {
		if seen[p] {
			earlier++
			continue
		}
		seen[p] = true
		t.Errorf("independent judge: %s", p)
	}
	reported.Unlock()
	if earlier > 0 {
		t.Logf("independent judge: %d problems of this log were reported by an earlier run on it", earlier)
	}
	if r.Checked == 0 {
		t.Errorf("independent judge: no transaction judged: the run proves nothing")
	}
	t.Logf("independent judge: %s", r.Summary())
	return r
}

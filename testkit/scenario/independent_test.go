package scenario

import (
	"context"
	"testing"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit/judge"
)

// judgeRaw runs the independent judge (testkit/judge), which shares no code
// with the services, the contracts or the projections, on the raw stream
// under st, and fails t for every violation and every failed log check it
// reports. It returns the report.
func judgeRaw(t testing.TB, ctx context.Context, st *events.JetStreamStore) *judge.Report {
	t.Helper()
	r, err := judge.Check(ctx, st.JetStream(), events.StreamName)
	if err != nil {
		t.Fatalf("independent judge: %v", err)
	}
	for _, p := range r.Problems() {
		t.Errorf("independent judge: %s", p)
	}
	if r.Checked == 0 {
		t.Errorf("independent judge: no transaction judged: the run proves nothing")
	}
	t.Logf("independent judge: %s", r.Summary())
	return r
}

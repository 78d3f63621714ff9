package testkit_test

import (
	"context"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit"
)

func TestClusterSurvivesStepDownAndNodeRestart(t *testing.T) {
	c := testkit.StartCluster(t, 3)
	st := c.NewStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ref := events.AggregateRef{Context: "order", ID: "cluster-1"}
	appendOne := func(version uint64) {
		t.Helper()
		d := events.Decision{Aggregate: ref, ExpectedVersion: version,
			Events: []events.Event{testkit.NewEvent(ref, "placed")}}
		if _, err := st.Append(ctx, d); err != nil {
			t.Fatalf("append at version %d: %v", version, err)
		}
	}
	appendOne(0)
	old := c.StreamLeader()
	start := time.Now()
	leader, err := c.StepDownStreamLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stepdown %s -> %s in %s", old, leader, time.Since(start))
	if leader == old {
		t.Errorf("leader after stepdown = %s, want another node", leader)
	}
	appendOne(1)
	i := c.NodeIndex(leader)
	c.ShutdownNode(i)
	start = time.Now()
	if err := c.WaitStreamReady(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("new leader %s after shutdown of %s in %s", c.StreamLeader(), leader, time.Since(start))
	appendOne(2)
	start = time.Now()
	if err := c.RestartNode(ctx, i); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart of %s in %s", leader, time.Since(start))
	appendOne(3)
	// Load reads through a consumer that may sit on any replica, the
	// restarted one included; wait until they all hold the last append.
	if err := c.WaitStreamReady(ctx); err != nil {
		t.Fatal(err)
	}
	// A replica that reports the same last sequence can still answer a
	// filtered read without the newest events for a moment (seen about once
	// in eight full runs); count such stale loads instead of failing on the
	// first, but fail if the events never show.
	stale := 0
	err = pollUntilCtx(ctx, func() bool {
		evs, err := c.NewStore(t).Load(ctx, ref, 0)
		if err == nil && len(evs) == 4 {
			return true
		}
		stale++
		t.Logf("load after restart: %d events, %v; want 4", len(evs), err)
		return false
	})
	if err != nil {
		t.Fatalf("the 4 acknowledged events never showed after the restart: %v", err)
	}
	if stale > 0 {
		t.Logf("%d stale loads before all 4 acknowledged events showed", stale)
	}
}

// pollUntilCtx re-checks cond every 20 ms until it holds or ctx ends.
func pollUntilCtx(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

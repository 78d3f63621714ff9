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
	evs, err := st.Load(ctx, ref, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 {
		t.Errorf("loaded %d events, want 4", len(evs))
	}
}

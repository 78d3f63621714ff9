package testkit_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit"
)

func TestConformanceSingleNode(t *testing.T) {
	node := testkit.StartNode(t)
	testkit.RunStoreConformance(t, func(t *testing.T) events.Store { return node.NewStore(t) },
		testkit.ConformanceOptions{JetStream: true})
}

// stepdownTimeout bounds one injected stream leader stepdown.
const stepdownTimeout = 30 * time.Second

// TestConformanceClusterWithStepDown runs the suite on a 3-node cluster and
// steps the stream leader down midway through every subtest that races
// appends. An append caught by the election may end with KindUnavailable
// (outcome unknown); the suite then retries it with the same decision and
// idempotency key, which the Store contract allows, and checks the retry's
// answer. Each attempt has its own deadline, as a caller's request would, so
// that an attempt whose request the old leader dropped ends in time to be
// retried.
func TestConformanceClusterWithStepDown(t *testing.T) {
	c := testkit.StartCluster(t, 3)
	var stepdowns atomic.Int32
	disrupt := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, stepdownTimeout)
		defer cancel()
		old := c.StreamLeader()
		leader, err := c.StepDownStreamLeader(ctx)
		if err == nil {
			stepdowns.Add(1)
			t.Logf("stream leader stepped down: %s -> %s", old, leader)
		}
		return err
	}
	testkit.RunStoreConformance(t, func(t *testing.T) events.Store { return c.NewStore(t) },
		testkit.ConformanceOptions{
			JetStream:          true,
			Disrupt:            disrupt,
			UnavailableRetries: 5,
			AppendTimeout:      8 * time.Second,
		})
	if stepdowns.Load() == 0 {
		t.Error("no stepdown was injected")
	}
}

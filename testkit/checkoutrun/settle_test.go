package checkoutrun

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/testkit"
)

// settleAfterKillMax bounds how long Settle may take when the checkpoint
// bucket's leader was killed just before: the followers' Raft election
// time-out (4 to 9 s in nats-server v2.15.2) and a few asks.
const settleAfterKillMax = 20 * time.Second

// TestSettleAsksAgainWhenTheBucketLeaderIsKilled kills the nats-server
// process that leads the checkout's checkpoint bucket and calls Settle at
// once. Its first look at the bucket reaches the cluster before the
// followers know their leader is gone, and none of them answers it: Settle
// must ask again, bounded, and return once the new leader answers, not wait
// for its caller's whole deadline (the failover test's reads right after
// the kill, one run in six).
func TestSettleAsksAgainWhenTheBucketLeaderIsKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("three nats-server processes")
	}
	c := testkit.StartProcCluster(t, 3)
	st := c.NewStore(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*settleAfterKillMax)
	defer cancel()
	js := st.JetStream()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "ledger_checkout", Storage: jetstream.FileStorage,
		Replicas: 3, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	var zero [8]byte
	binary.BigEndian.PutUint64(zero[:], 0)
	if _, err := kv.Put(ctx, "position", zero[:]); err != nil {
		t.Fatal(err)
	}
	bucket, err := js.Stream(ctx, "KV_ledger_checkout")
	if err != nil || bucket.CachedInfo().Cluster == nil {
		t.Fatalf("the bucket's stream: %v", err)
	}
	leader := c.NodeIndex(bucket.CachedInfo().Cluster.Leader)
	if leader < 0 {
		t.Fatalf("bucket leader %q is none of the cluster's nodes", bucket.CachedInfo().Cluster.Leader)
	}
	if err := c.KillNode(leader); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = Settle(ctx, st, "", "")
	took := time.Since(start)
	t.Logf("killed %s, the bucket's leader; Settle returned after %s: %v", c.Nodes[leader].Name, took.Round(time.Millisecond), err)
	if err != nil {
		t.Fatal(err)
	}
	if took > settleAfterKillMax {
		t.Errorf("Settle took %s after the bucket's leader was killed, want at most %s", took.Round(time.Millisecond), settleAfterKillMax)
	}
}

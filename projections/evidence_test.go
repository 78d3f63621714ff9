package projections

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// leaderlessOnce is a JetStream whose first opening of a bucket times out,
// as opening one another process has just created does on a cluster until
// its stream has a leader.
type leaderlessOnce struct {
	jetstream.JetStream
	opened atomic.Int32
}

func (l *leaderlessOnce) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	if l.opened.Add(1) == 1 {
		return nil, context.DeadlineExceeded
	}
	return l.JetStream.KeyValue(ctx, bucket)
}

// TestCommittedCheckpointsWaitOutABucketWithoutALeader: a bucket that
// answers nothing on the first read (created meanwhile by another
// process, no leader yet) is read again; `ledger serve` on a fresh cluster
// once exited at start on it.
func TestCommittedCheckpointsWaitOutABucketWithoutALeader(t *testing.T) {
	env := startEnv(t)
	ctx := t.Context()
	st, err := openStorage(ctx, env.JS, true)
	if err != nil {
		t.Fatal(err)
	}
	c := Checkpoint{Model: "orders", Version: 1, Position: 7}
	if _, err := st.commitCheckpoint(ctx, c, 0); err != nil {
		t.Fatal(err)
	}
	js := &leaderlessOnce{JetStream: env.JS}
	got, err := CommittedCheckpoints(ctx, js)
	if err != nil {
		t.Fatalf("a bucket that answered nothing once was not read again: %v", err)
	}
	if len(got) != 1 || got[0].Model != "orders" || got[0].Position != 7 {
		t.Fatalf("checkpoints = %+v, want orders v1 at 7", got)
	}
	if n := js.opened.Load(); n != 2 {
		t.Fatalf("bucket opened %d times, want 2", n)
	}
}

package projections

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
)

// CommittedCheckpoints returns every model version's committed checkpoint,
// ordered by model and version; none when the read models have never run.
// Each says that the log once held every position up to its Position: a
// log that now ends before it has lost history (`ledger serve` refuses to
// serve it). It only reads, so the investigator's user may call it.
//
// On a cluster another process may create the bucket between the wait for
// its leader and the read, and a bucket without a leader yet answers
// nothing: a read that finds the log unavailable is tried again, bounded by
// events.LeaderWaitMax, each try bounded by checkpointsAsk.
func CommittedCheckpoints(ctx context.Context, js jetstream.JetStream) ([]Checkpoint, error) {
	deadline := time.Now().Add(events.LeaderWaitMax)
	for {
		actx, cancel := context.WithTimeout(ctx, checkpointsAsk)
		out, err := committedCheckpoints(actx, js)
		cancel()
		var e *events.Error
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) ||
			!errors.As(err, &e) || e.Kind != events.KindUnavailable {
			return out, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(checkpointsPause):
		}
	}
}

// checkpointsAsk bounds one try at reading the checkpoints.
const checkpointsAsk = 5 * time.Second

// checkpointsPause is the pause between two tries: the leader election it
// waits out announces nothing to await.
const checkpointsPause = 100 * time.Millisecond

func committedCheckpoints(ctx context.Context, js jetstream.JetStream) ([]Checkpoint, error) {
	const op = "projections.CommittedCheckpoints"
	if err := awaitLeader(ctx, js, "KV_"+StateBucket); err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, StateBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Field: StateBucket, Err: err}
	}
	keys, err := kv.ListKeysFiltered(ctx, "ckpt.>")
	if err != nil {
		return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Field: StateBucket, Err: err}
	}
	defer keys.Stop()
	var out []Checkpoint
	for key := range keys.Keys() {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Field: key, Err: err}
		}
		var c Checkpoint
		if err := json.Unmarshal(e.Value(), &c); err != nil {
			return nil, &events.Error{Op: op, Kind: events.KindIntegrity, Field: key, Err: err}
		}
		out = append(out, c)
	}
	if err := ctx.Err(); err != nil {
		return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Field: StateBucket, Err: err}
	}
	slices.SortFunc(out, func(a, b Checkpoint) int {
		if c := strings.Compare(a.Model, b.Model); c != 0 {
			return c
		}
		return a.Version - b.Version
	})
	return out, nil
}

package projections

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
)

// Where read-model state lives (ADR 0007): small records in a KV bucket,
// snapshot bodies in an Object Store, both JetStream, both with the LEDGER
// stream's replica count, so the embedded node and a cluster work alike.
const (
	// StateBucket is the KV bucket of checkpoints, the snapshot index and
	// the active version of each model.
	StateBucket = "LEDGER_PROJECTIONS"
	// SnapshotBucket is the Object Store of snapshot bodies.
	SnapshotBucket = "LEDGER_SNAPSHOTS"
)

// Checkpoint is a model version's committed progress: every position up to
// Position is applied, and the object holds the model's state right after it.
type Checkpoint struct {
	Model    string `json:"model"`
	Version  int    `json:"version"`
	Position uint64 `json:"position"`
	Object   string `json:"object"`
	SHA256   string `json:"sha256"`
	Size     int    `json:"size"`
	// The fold of the clocks up to Position, which the snapshot index
	// needs to carry on after a restart.
	MaxOccurredAt time.Time `json:"max_occurred_at,omitzero"`
	SegMinOccAt   time.Time `json:"seg_min_occurred_at,omitzero"`
	LastSnapshot  uint64    `json:"last_snapshot"`
	LastBusiness  uint64    `json:"last_business"`
}

// SnapshotEntry is one entry of the as-of snapshot index: the model's state
// right after Position, with the clocks that say which queries may start
// from it.
type SnapshotEntry struct {
	Model    string `json:"model"`
	Version  int    `json:"version"`
	Position uint64 `json:"position"`
	// RecordedAt is the server time of the last event at or before Position.
	RecordedAt time.Time `json:"recorded_at"`
	// MaxOccurredAt is the latest business time of any business event at
	// or before Position: the snapshot serves business instants at or
	// after it.
	MaxOccurredAt time.Time `json:"max_occurred_at,omitzero"`
	// SegMinOccurredAt is the earliest business time of the events after
	// the previous entry up to Position (zero if there were none): a
	// business-time query before it needs nothing from that segment.
	SegMinOccurredAt time.Time `json:"seg_min_occurred_at,omitzero"`
	// LastBusiness is the position of the last business event at or
	// before Position (0 if none).
	LastBusiness uint64 `json:"last_business"`
	Object       string `json:"object"`
	SHA256       string `json:"sha256"`
	Size         int    `json:"size"`
}

type storage struct {
	kv  jetstream.KeyValue
	obj jetstream.ObjectStore
}

// openStorage opens (creating if asked) the buckets with the LEDGER
// stream's replica count.
func openStorage(ctx context.Context, js jetstream.JetStream, create bool) (*storage, error) {
	const op = "projections.storage"
	if !create {
		kv, err := js.KeyValue(ctx, StateBucket)
		if err != nil {
			return nil, &events.Error{Op: op, Kind: events.KindNotFound, Field: StateBucket, Err: err}
		}
		obj, err := js.ObjectStore(ctx, SnapshotBucket)
		if err != nil {
			return nil, &events.Error{Op: op, Kind: events.KindNotFound, Field: SnapshotBucket, Err: err}
		}
		return &storage{kv: kv, obj: obj}, nil
	}
	replicas := 1
	if st, err := js.Stream(ctx, events.StreamName); err == nil {
		replicas = max(1, st.CachedInfo().Config.Replicas)
	}
	// On a cluster several processes may create the buckets at once, and a
	// bucket another one just created answers nothing until its stream has
	// a leader: create (or check) them again, bounded, after waiting for
	// their leaders.
	deadline := time.Now().Add(events.LeaderWaitMax)
	for {
		st, err := createStorage(ctx, js, replicas)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return st, err
		}
		for _, stream := range []string{"KV_" + StateBucket, "OBJ_" + SnapshotBucket} {
			if err := awaitLeader(ctx, js, stream); err != nil {
				return nil, err
			}
		}
	}
}

// createAsk bounds one attempt at creating the buckets.
const createAsk = 5 * time.Second

// createStorage creates the buckets, or checks them, and waits until both
// have a leader.
func createStorage(ctx context.Context, js jetstream.JetStream, replicas int) (*storage, error) {
	const op = "projections.storage"
	actx, cancel := context.WithTimeout(ctx, createAsk)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(actx, jetstream.KeyValueConfig{Bucket: StateBucket, History: 1,
		Storage: jetstream.FileStorage, Replicas: replicas, Description: "projection checkpoints and snapshot index"})
	if err != nil {
		return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Field: StateBucket, Err: err}
	}
	obj, err := js.CreateOrUpdateObjectStore(actx, jetstream.ObjectStoreConfig{Bucket: SnapshotBucket,
		Storage: jetstream.FileStorage, Replicas: replicas, Description: "read-model snapshots"})
	if err != nil {
		return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Field: SnapshotBucket, Err: err}
	}
	for _, stream := range []string{"KV_" + StateBucket, "OBJ_" + SnapshotBucket} {
		if err := awaitLeader(ctx, js, stream); err != nil {
			return nil, err
		}
	}
	return &storage{kv: kv, obj: obj}, nil
}

// awaitLeader waits, bounded by events.LeaderWaitMax, until the stream of a
// bucket has a leader; a bucket not created yet is no error.
func awaitLeader(ctx context.Context, js jetstream.JetStream, stream string) error {
	ctx, cancel := context.WithTimeout(ctx, events.LeaderWaitMax)
	defer cancel()
	_, err := events.WaitStreamLeader(ctx, js, stream)
	if events.KindOf(err) == events.KindPermission {
		return err
	}
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return &events.Error{Op: "projections.storage", Kind: events.KindUnavailable, Field: stream, Rule: "bucket stream has no leader", Err: err}
	}
	return nil
}

func checkpointKey(model string, version int) string {
	return "ckpt." + model + ".v" + strconv.Itoa(version)
}

func indexKey(model string, version int) string {
	return "idx." + model + ".v" + strconv.Itoa(version)
}

func activeKey(model string) string { return "active." + model }

func objectName(kind, model string, version int, pos uint64) string {
	return fmt.Sprintf("%s/v%d/%s/%020d", model, version, kind, pos)
}

// putBody stores a snapshot body and returns its name and digest.
func (s *storage) putBody(ctx context.Context, name string, body []byte) (string, error) {
	if _, err := s.obj.PutBytes(ctx, name, body); err != nil {
		return "", &events.Error{Op: "projections.snapshot", Kind: events.KindUnavailable, Field: name, Err: err}
	}
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:]), nil
}

// getBody reads a snapshot body and checks its digest.
func (s *storage) getBody(ctx context.Context, name, digest string) ([]byte, error) {
	body, err := s.obj.GetBytes(ctx, name)
	if err != nil {
		return nil, &events.Error{Op: "projections.snapshot", Kind: events.KindUnavailable, Field: name, Err: err}
	}
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != digest {
		return nil, &events.Error{Op: "projections.snapshot", Kind: events.KindIntegrity, Field: name,
			Rule: "snapshot body does not match its recorded SHA-256"}
	}
	return body, nil
}

// loadCheckpoint returns the checkpoint and its KV revision (0 if none).
func (s *storage) loadCheckpoint(ctx context.Context, model string, version int) (Checkpoint, uint64, error) {
	var c Checkpoint
	e, err := s.kv.Get(ctx, checkpointKey(model, version))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return c, 0, nil
	}
	if err != nil {
		return c, 0, &events.Error{Op: "projections.checkpoint", Kind: events.KindUnavailable, Err: err}
	}
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return c, 0, &events.Error{Op: "projections.checkpoint", Kind: events.KindIntegrity, Field: e.Key(), Err: err}
	}
	return c, e.Revision(), nil
}

// commitCheckpoint writes c if the key is still at revision rev: two
// engines running the same model version cannot both advance it.
func (s *storage) commitCheckpoint(ctx context.Context, c Checkpoint, rev uint64) (uint64, error) {
	b, _ := json.Marshal(c)
	key := checkpointKey(c.Model, c.Version)
	var err error
	var n uint64
	if rev == 0 {
		n, err = s.kv.Create(ctx, key, b)
	} else {
		n, err = s.kv.Update(ctx, key, b, rev)
	}
	if err != nil {
		kind := events.KindUnavailable
		if errors.Is(err, jetstream.ErrKeyExists) {
			kind = events.KindConflict
		}
		return 0, &events.Error{Op: "projections.checkpoint", Kind: kind, Field: key,
			Rule: "another engine advanced this model version", Err: err}
	}
	return n, nil
}

// putIndex adds an as-of snapshot to the model version's index. The index
// is one KV value per model version, so that a query reads it with one
// direct get; only that version's runner writes it.
func (s *storage) putIndex(ctx context.Context, e SnapshotEntry) error {
	es, rev, err := s.index(ctx, e.Model, e.Version)
	if err != nil {
		return err
	}
	es = slices.DeleteFunc(es, func(x SnapshotEntry) bool { return x.Position >= e.Position }) // a rerun after a crash rewrites the same entries
	es = append(es, e)
	b, _ := json.Marshal(es)
	key := indexKey(e.Model, e.Version)
	if rev == 0 {
		_, err = s.kv.Create(ctx, key, b)
	} else {
		_, err = s.kv.Update(ctx, key, b, rev)
	}
	if err != nil {
		return &events.Error{Op: "projections.snapshot", Kind: events.KindUnavailable, Field: key, Err: err}
	}
	return nil
}

// index returns a model version's snapshot index by position, and its KV
// revision (0 if there is none).
func (s *storage) index(ctx context.Context, model string, version int) ([]SnapshotEntry, uint64, error) {
	key := indexKey(model, version)
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, &events.Error{Op: "projections.index", Kind: events.KindUnavailable, Field: key, Err: err}
	}
	var es []SnapshotEntry
	if err := json.Unmarshal(e.Value(), &es); err != nil {
		return nil, 0, &events.Error{Op: "projections.index", Kind: events.KindIntegrity, Field: key, Err: err}
	}
	sortEntries(es)
	return es, e.Revision(), nil
}

func sortEntries(es []SnapshotEntry) {
	slices.SortFunc(es, func(a, b SnapshotEntry) int { return cmp.Compare(a.Position, b.Position) })
}

// activeVersion returns the version serving a model (1 when never set).
func (s *storage) activeVersion(ctx context.Context, model string) (int, error) {
	e, err := s.kv.Get(ctx, activeKey(model))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 1, nil
	}
	if err != nil {
		return 0, &events.Error{Op: "projections.active", Kind: events.KindUnavailable, Err: err}
	}
	v, err := strconv.Atoi(string(e.Value()))
	if err != nil || v < 1 {
		return 0, &events.Error{Op: "projections.active", Kind: events.KindIntegrity, Field: e.Key(), Rule: "not a version number"}
	}
	return v, nil
}

func (s *storage) setActive(ctx context.Context, model string, version int) error {
	if _, err := s.kv.Put(ctx, activeKey(model), []byte(strconv.Itoa(version))); err != nil {
		return &events.Error{Op: "projections.active", Kind: events.KindUnavailable, Err: err}
	}
	return nil
}

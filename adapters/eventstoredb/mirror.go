package eventstoredb

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/marketledger/ledger/events"
)

// CheckpointStream is the EventStoreDB stream where Mirror records the last
// ledger position it has copied.
const CheckpointStream = "ledger-mirror-checkpoint"

// checkpointEventType is the ESDB event type of checkpoint records.
const checkpointEventType = "ledger-mirror-checkpoint"

// MirrorOptions tunes Mirror.
type MirrorOptions struct {
	// To is the last ledger position to copy; 0 means the source's head
	// when Mirror starts.
	To uint64
	// CheckpointEvery is how many events are copied between two
	// checkpoints; 0 means 256. A restart copies at most this many events
	// again, and they deduplicate by event id.
	CheckpointEvery int
	// Progress, when set, is called after every checkpoint.
	Progress func(MirrorProgress)
	// CheckpointStream names the checkpoint stream; empty means
	// CheckpointStream. Another name lets several mirrors of different
	// ledgers share one database; it must not be an aggregate stream's name
	// ("<context>-<id>"): start it with '_' to be sure.
	CheckpointStream string
}

// MirrorProgress says how far a mirror has come.
type MirrorProgress struct {
	// Position is the last ledger position copied and checkpointed.
	Position uint64
	// Copied counts the events this call wrote or found already written.
	Copied int
}

// checkpoint is the body of a checkpoint record.
type checkpoint struct {
	Position uint64    `json:"position"`
	At       time.Time `json:"at"`
}

// Mirror copies the ledger log of src into dst, in log order, from the
// position after dst's checkpoint up to opts.To (or src's head), so that
// teams can use their EventStoreDB tools on ledger events. Each event keeps
// its id, envelope and hash chain; its metadata also records its ledger
// position ("ledgerposition"). Consecutive events of one aggregate are
// appended together at their expected revision.
//
// Mirror is resumable and idempotent: it continues after its checkpoint,
// and an event already copied (a crash between an append and the next
// checkpoint) is recognised by its id and version and not written twice.
//
// Before it writes anything, Mirror reads every destination stream it will
// write to and refuses, with an error naming the stream, one that holds an
// event that is not a ledger event, or a checkpoint stream that holds
// anything but checkpoints, so such input leaves no partial mirror.
// Only one Mirror may run against a destination at a time; the checkpoint's
// expected revision makes a second one fail instead of interleaving.
func Mirror(ctx context.Context, src events.Store, dst *Store, opts MirrorOptions) (MirrorProgress, error) {
	const op = "eventstoredb.Mirror"
	every := opts.CheckpointEvery
	if every <= 0 {
		every = 256
	}
	cpStream := opts.CheckpointStream
	if cpStream == "" {
		cpStream = CheckpointStream
	}
	cp, cpNext, err := dst.readCheckpoint(ctx, cpStream)
	if err != nil {
		return MirrorProgress{}, err
	}
	progress := MirrorProgress{Position: cp.Position}

	// Preflight: the streams to write, and the range, fixed before any write.
	refs := map[events.AggregateRef]bool{}
	to := opts.To
	var last uint64
	for e, err := range src.Read(ctx, events.Query{From: cp.Position + 1, To: to}) {
		if err != nil {
			return progress, withOp(op, err)
		}
		refs[events.AggregateRef{Context: e.Context(), ID: e.AggregateID}] = true
		last = e.Position
	}
	if last == 0 {
		return progress, nil
	}
	for ref := range refs {
		if err := dst.checkMirrorStream(ctx, ref); err != nil {
			return progress, err
		}
	}

	var batch []events.Event
	sinceCheckpoint := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := dst.copyBatch(ctx, batch); err != nil {
			return err
		}
		progress.Copied += len(batch)
		sinceCheckpoint += len(batch)
		progress.Position = batch[len(batch)-1].Position
		batch = batch[:0]
		return nil
	}
	save := func() error {
		if sinceCheckpoint == 0 {
			return nil
		}
		if err := dst.writeCheckpoint(ctx, cpStream, cpNext, progress.Position); err != nil {
			return err
		}
		cpNext = esdb.Revision(revisionAfter(cpNext))
		sinceCheckpoint = 0
		if opts.Progress != nil {
			opts.Progress(progress)
		}
		return nil
	}
	for e, err := range src.Read(ctx, events.Query{From: cp.Position + 1, To: last}) {
		if err != nil {
			return progress, withOp(op, err)
		}
		if n := len(batch); n > 0 && (batch[n-1].AggregateID != e.AggregateID || batch[n-1].Context() != e.Context() ||
			batch[n-1].AggregateVersion+1 != e.AggregateVersion || n == events.MaxEventsPerDecision) {
			if err := flush(); err != nil {
				return progress, err
			}
			if sinceCheckpoint >= every {
				if err := save(); err != nil {
					return progress, err
				}
			}
		}
		batch = append(batch, e)
	}
	if err := flush(); err != nil {
		return progress, err
	}
	return progress, save()
}

// revisionAfter returns the revision the checkpoint stream has after one
// more record is appended to a stream expected at r.
func revisionAfter(r esdb.ExpectedRevision) uint64 {
	if rev, ok := r.(esdb.StreamRevision); ok {
		return rev.Value + 1
	}
	return 0
}

// copyBatch appends consecutive events of one aggregate, as sealed in the
// ledger, after their predecessor's revision.
func (s *Store) copyBatch(ctx context.Context, batch []events.Event) error {
	const op = "eventstoredb.Mirror"
	ref := events.AggregateRef{Context: batch[0].Context(), ID: batch[0].AggregateID}
	datas := make([]esdb.EventData, len(batch))
	for i := range batch {
		var err error
		if datas[i], err = ToEventData(&batch[i], batch[i].Position); err != nil {
			return withOp(op, err)
		}
	}
	expected := batch[0].AggregateVersion - 1
	_, err := s.write(ctx, ref, expected, ids(batch), datas)
	if events.KindOf(err) == events.KindConflict {
		return &events.Error{Op: op, Kind: events.KindConflict, Field: "stream " + StreamName(ref),
			Rule: fmt.Sprintf("the destination stream diverges from the ledger at version %d (ledger position %d): it holds other events there", expected+1, batch[0].Position)}
	}
	return withOp(op, err)
}

// checkMirrorStream refuses a destination stream that holds anything but
// valid ledger events of its aggregate.
func (s *Store) checkMirrorStream(ctx context.Context, ref events.AggregateRef) error {
	const op = "eventstoredb.Mirror"
	stream := StreamName(ref)
	for r, err := range s.b.readStream(ctx, stream, false, 0, unbounded) {
		if err != nil {
			return mapCtx(ctx, op, err)
		}
		_, ok, err := FromRecorded(r)
		if err != nil {
			return &events.Error{Op: op, Kind: events.KindInvalid, Field: "stream " + stream,
				Rule: "the destination stream holds an event that claims to be a ledger event but does not verify; nothing was mirrored", Err: err}
		}
		if !ok {
			return &events.Error{Op: op, Kind: events.KindInvalid, Field: "stream " + stream,
				Rule: fmt.Sprintf("the destination stream holds foreign events (revision %d, type %q, metadata without the ledger's CloudEvents attributes); nothing was mirrored", r.EventNumber, r.EventType)}
		}
	}
	return nil
}

// readCheckpoint returns the newest checkpoint and the expected revision of
// the next one.
func (s *Store) readCheckpoint(ctx context.Context, stream string) (checkpoint, esdb.ExpectedRevision, error) {
	const op = "eventstoredb.Mirror"
	var cp checkpoint
	var next esdb.ExpectedRevision = esdb.NoStream{}
	for r, err := range s.b.readStream(ctx, stream, true, 0, 1) {
		if err != nil {
			return cp, next, mapCtx(ctx, op, err)
		}
		if r.EventType != checkpointEventType || json.Unmarshal(r.Data, &cp) != nil || cp.Position == 0 {
			return cp, next, &events.Error{Op: op, Kind: events.KindInvalid, Field: "stream " + stream,
				Rule: fmt.Sprintf("holds a foreign event at revision %d (type %q) where a mirror checkpoint was expected; nothing was mirrored", r.EventNumber, r.EventType)}
		}
		next = esdb.Revision(r.EventNumber)
	}
	return cp, next, nil
}

func (s *Store) writeCheckpoint(ctx context.Context, stream string, expected esdb.ExpectedRevision, position uint64) error {
	const op = "eventstoredb.Mirror"
	b, _ := json.Marshal(checkpoint{Position: position, At: time.Now().UTC()})
	d := esdb.EventData{EventID: uuid.Must(uuid.NewV7()), EventType: checkpointEventType, ContentType: esdb.ContentTypeJson, Data: b}
	err := s.b.appendEvents(ctx, stream, expected, []esdb.EventData{d})
	if err != nil {
		m := mapCtx(ctx, op, err)
		if events.KindOf(m) == events.KindConflict {
			return &events.Error{Op: op, Kind: events.KindConflict, Field: "stream " + stream,
				Rule: "the checkpoint moved under this mirror: another mirror is writing to the same destination"}
		}
		return m
	}
	return nil
}

// MirrorPosition returns the last ledger position Mirror has checkpointed
// in dst's checkpoint stream (CheckpointStream if stream is empty), 0 if
// none.
func MirrorPosition(ctx context.Context, dst *Store, stream string) (uint64, error) {
	if stream == "" {
		stream = CheckpointStream
	}
	cp, _, err := dst.readCheckpoint(ctx, stream)
	return cp.Position, err
}

package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/runtime/tracing"
)

// errGap means Follow delivered a position past the next one: the runner
// follows again from the next position rather than skip one.
var errGap = errors.New("gap in delivered positions")

// gapRereadsMax bounds how many times in a row the runner follows the log
// again from the position it misses. The stream denies deletes, so a
// position that is still missing after that is a damaged log: the model
// fails, naming it, rather than skip it or spin.
const gapRereadsMax = 3

// runner runs one model version.
type runner struct {
	eng     *Engine
	name    string
	version int
	labels  []string

	mu       sync.Mutex // guards m, applied, err and progress
	m        models.Model
	applied  uint64
	err      error
	progress chan struct{} // closed and replaced whenever applied moves

	// work serialises applying and committing: the follower applies and
	// commits when due, a ticker commits while the log is quiet. It guards
	// what follows.
	work        sync.Mutex
	clocks      clocks
	ckpt        Checkpoint
	rev         uint64
	lastCommit  time.Time
	unpublished int // messages applied since the last publish

	head      atomic.Uint64 // the log's head as last seen
	committed atomic.Uint64 // ckpt.Position, for readers

	cancel context.CancelFunc
	done   chan struct{}
}

// clocks is the fold of the log's clocks the snapshot index needs.
type clocks struct {
	lastRecorded time.Time
	maxOcc       time.Time
	segMin       time.Time
	lastSnap     uint64
	lastBusiness uint64
}

// see folds one event's clocks.
func (c *clocks) see(e *events.Event) {
	c.lastRecorded = e.RecordedAt
	if !models.IsBusiness(e) {
		return
	}
	c.lastBusiness = e.Position
	if e.OccurredAt.After(c.maxOcc) {
		c.maxOcc = e.OccurredAt
	}
	if c.segMin.IsZero() || e.OccurredAt.Before(c.segMin) {
		c.segMin = e.OccurredAt
	}
}

func newRunner(e *Engine, m models.Model) *runner {
	r := &runner{eng: e, m: m, name: m.Name(), version: models.ModelVersion(m), progress: make(chan struct{}), done: make(chan struct{})}
	r.labels = []string{r.name, strconv.Itoa(r.version)}
	return r
}

// legacyConsumerName is the durable consumer earlier versions of the
// engine kept for the model version; the engine deletes it when it starts
// the version.
func (r *runner) legacyConsumerName() string {
	return "proj_" + r.name + "_v" + strconv.Itoa(r.version)
}

// restore loads the checkpoint, if any, and restores the model from it.
func (r *runner) restore(ctx context.Context) error {
	c, rev, err := r.eng.st.loadCheckpoint(ctx, r.name, r.version)
	if err != nil || rev == 0 {
		return err
	}
	body, err := r.eng.st.getBody(ctx, c.Object, c.SHA256)
	if err != nil {
		return err
	}
	if err := r.m.Restore(body); err != nil {
		return err
	}
	r.ckpt, r.rev, r.applied = c, rev, c.Position
	r.committed.Store(c.Position)
	r.clocks = clocks{maxOcc: c.MaxOccurredAt, segMin: c.SegMinOccAt, lastSnap: c.LastSnapshot, lastBusiness: c.LastBusiness}
	r.lastCommit = time.Now()
	return nil
}

// run follows the log through events.Follow from the first position not
// applied, applies every message in order and commits checkpoints, until
// ctx ends or the model fails. The checkpoint is the only record of
// progress: Follow reads on a consumer of its own, re-created bounded after
// any failure, so the runner rides through a leader change as every other
// follower of the log does.
func (r *runner) run(ctx context.Context) {
	defer close(r.done)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	wait := min(max(r.eng.cfg.CheckpointInterval, 20*time.Millisecond), time.Second)
	ticked := make(chan struct{})
	go func() { defer close(ticked); r.tick(ctx, stop, wait) }()
	err := r.follow(ctx, wait)
	stop()
	<-ticked
	if err != nil {
		r.fail(err)
		return
	}
	if r.error() != nil {
		return // the ticker's commit failed
	}
	r.work.Lock()
	defer r.work.Unlock()
	if err := r.commitDetached(ctx); err != nil {
		r.fail(err)
	}
}

// follow applies the log until ctx ends (nil) or the model fails (its
// error). A gap makes it follow again from the missing position, at most
// gapRereadsMax times in a row; an unreachable stream, after a pause.
func (r *runner) follow(ctx context.Context, wait time.Duration) error {
	rereads := 0
	for ctx.Err() == nil {
		from := r.appliedPos() + 1
		var failed error
		err := events.Follow(ctx, r.eng.js, []string{events.SubjectPrefix + ">"}, from, time.Time{},
			func(m jetstream.Msg, meta *jetstream.MsgMetadata) error {
				err := r.apply(ctx, m, meta)
				switch {
				case err == nil:
					rereads = 0
				case !errors.Is(err, errGap):
					failed = err
				}
				return err
			})
		switch {
		case ctx.Err() != nil:
			return nil
		case failed != nil:
			return failed
		case errors.Is(err, errGap):
			if rereads++; rereads > gapRereadsMax {
				return &events.Error{Op: "projections.run", Kind: events.KindIntegrity, Field: "position " + strconv.FormatUint(from, 10),
					Rule: fmt.Sprintf("still missing from the log after %d re-reads; restore the stream", gapRereadsMax)}
			}
		case events.KindOf(err) == events.KindIntegrity:
			return err
		}
		sleepCtx(ctx, wait)
	}
	return nil
}

// apply handles one message under work, publishes progress when the
// runner caught up with the log (or every FetchBatch messages), and
// commits when due.
func (r *runner) apply(ctx context.Context, m jetstream.Msg, meta *jetstream.MsgMetadata) error {
	r.work.Lock()
	defer r.work.Unlock()
	if err := r.handle(ctx, m, meta); err != nil {
		return err
	}
	if r.unpublished++; meta.NumPending == 0 || r.unpublished >= r.eng.cfg.FetchBatch {
		r.publish()
	}
	if r.due() {
		return r.commitDetached(ctx)
	}
	return nil
}

// tick publishes progress and commits when due every wait while the log is
// quiet; a failed commit fails the model and stops the follower.
func (r *runner) tick(ctx context.Context, stop context.CancelFunc, wait time.Duration) {
	t := time.NewTicker(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.work.Lock()
		r.publish()
		var err error
		if r.due() {
			err = r.commitDetached(ctx)
		}
		r.work.Unlock()
		if err != nil {
			r.fail(err)
			stop()
			return
		}
	}
}

// commitDetached commits with a context Stop does not cancel: a commit cut
// off half way leaves its outcome unknown.
func (r *runner) commitDetached(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return r.commit(cctx)
}

// handle applies one delivered message, in order, at most once. The
// caller holds work.
func (r *runner) handle(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata) error {
	seq := meta.Sequence.Stream
	if h := seq + meta.NumPending; h > r.head.Load() {
		r.head.Store(h)
	}
	applied := r.appliedPos()
	switch {
	case seq <= applied:
		return nil // a redelivery of something applied: idempotent
	case seq != applied+1:
		return errGap
	}
	if events.IsControlSubject(msg.Subject()) {
		r.advance(seq, meta)
		return nil
	}
	e, err := events.Decode(msg.Subject(), msg.Headers(), msg.Data())
	if err != nil {
		return positionErr("projections.run", seq, err)
	}
	e.Position, e.RecordedAt = seq, meta.Timestamp
	payload, err := models.DecodePayload(&e)
	if err != nil {
		return err
	}
	_, span := tracing.StartConsumer(ctx, "projection.apply", &e)
	if span.Recording() {
		span.Set(tracing.String("ledger.projection", r.name))
	}
	r.mu.Lock()
	err = r.m.Apply(e, payload)
	r.mu.Unlock()
	span.End(err)
	if err != nil {
		return err
	}
	r.clocks.see(&e)
	r.advance(seq, meta)
	if seq >= r.clocks.lastSnap+r.eng.cfg.SnapshotEvery {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return r.snapshotAsOf(sctx, seq)
	}
	return nil
}

func (r *runner) advance(seq uint64, meta *jetstream.MsgMetadata) {
	r.mu.Lock()
	r.applied = seq
	r.mu.Unlock()
	r.clocks.lastRecorded = meta.Timestamp
}

// snapshotAsOf stores the model's state at pos for as-of queries.
func (r *runner) snapshotAsOf(ctx context.Context, pos uint64) error {
	r.mu.Lock()
	body, err := r.m.Snapshot()
	r.mu.Unlock()
	if err != nil {
		return err
	}
	name := objectName("asof", r.name, r.version, pos)
	digest, err := r.eng.st.putBody(ctx, name, body)
	if err != nil {
		return err
	}
	se := SnapshotEntry{Model: r.name, Version: r.version, Position: pos, RecordedAt: r.clocks.lastRecorded.UTC(),
		MaxOccurredAt: r.clocks.maxOcc.UTC(), SegMinOccurredAt: r.clocks.segMin.UTC(), LastBusiness: r.clocks.lastBusiness,
		Object: name, SHA256: digest, Size: len(body)}
	if err := r.eng.st.putIndex(ctx, se); err != nil {
		return err
	}
	r.clocks.lastSnap, r.clocks.segMin = pos, time.Time{}
	return nil
}

func (r *runner) due() bool {
	applied := r.appliedPos()
	if applied <= r.ckpt.Position && r.rev != 0 {
		return false
	}
	return applied-r.ckpt.Position >= r.eng.cfg.CheckpointEvery || time.Since(r.lastCommit) >= r.eng.cfg.CheckpointInterval
}

// commit writes the checkpoint: snapshot body first, then the KV record
// (the commit point, guarded by its revision). A crash between the steps
// leaves an orphan body, never a checkpoint ahead of its state. The caller
// holds work.
func (r *runner) commit(ctx context.Context) error {
	r.mu.Lock()
	pos := r.applied
	if pos == 0 || (pos == r.ckpt.Position && r.rev != 0) {
		r.mu.Unlock()
		return nil
	}
	body, err := r.m.Snapshot()
	r.mu.Unlock()
	if err != nil {
		return err
	}
	name := objectName("ckpt", r.name, r.version, pos)
	digest, err := r.eng.st.putBody(ctx, name, body)
	if err != nil {
		return err
	}
	c := Checkpoint{Model: r.name, Version: r.version, Position: pos, Object: name, SHA256: digest, Size: len(body),
		MaxOccurredAt: r.clocks.maxOcc.UTC(), SegMinOccAt: r.clocks.segMin.UTC(), LastSnapshot: r.clocks.lastSnap,
		LastBusiness: r.clocks.lastBusiness}
	rev, err := r.eng.st.commitCheckpoint(ctx, c, r.rev)
	if err != nil {
		// An earlier commit whose answer was lost may have landed: the
		// record then names our own object, and is ours to adopt.
		got, grev, lerr := r.eng.st.loadCheckpoint(ctx, r.name, r.version)
		if lerr != nil || got.Object != name || got.SHA256 != digest {
			return err
		}
		rev = grev
	}
	if old := r.ckpt.Object; old != "" && old != name {
		_ = r.eng.st.obj.Delete(ctx, old) // an orphan costs space, not correctness
	}
	r.ckpt, r.rev, r.lastCommit = c, rev, time.Now()
	r.committed.Store(c.Position)
	return nil
}

func (r *runner) publish() {
	r.unpublished = 0
	applied := r.appliedPos()
	r.eng.applied.WithLabelValues(r.labels...).Set(float64(applied))
	lag := uint64(0)
	if h := r.head.Load(); h > applied {
		lag = h - applied
	}
	r.eng.lag.WithLabelValues(r.labels...).Set(float64(lag))
	// Behind the head, the model shows the log as it was when its last
	// applied event was recorded: that long ago.
	stale := 0.0
	if lag > 0 && !r.clocks.lastRecorded.IsZero() {
		stale = max(0, time.Since(r.clocks.lastRecorded).Seconds())
	}
	r.eng.lagSeconds.WithLabelValues(r.labels...).Set(stale)
	r.mu.Lock()
	close(r.progress)
	r.progress = make(chan struct{})
	r.mu.Unlock()
}

func (r *runner) appliedPos() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applied
}

func (r *runner) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	close(r.progress)
	r.progress = make(chan struct{})
	r.mu.Unlock()
}

func (r *runner) error() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *runner) status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	lag := uint64(0)
	if h := r.head.Load(); h > r.applied {
		lag = h - r.applied
	}
	return Status{Model: r.name, Version: r.version, Applied: r.applied, Committed: r.committed.Load(), Lag: lag, Err: r.err}
}

// wait blocks until the runner has applied pos, failed, or ctx ends.
func (r *runner) wait(ctx context.Context, pos uint64) error {
	for {
		r.mu.Lock()
		applied, err, ch := r.applied, r.err, r.progress
		r.mu.Unlock()
		if err != nil {
			return err
		}
		if applied >= pos {
			return nil
		}
		select {
		case <-ch:
		case <-r.done:
			if e := r.error(); e != nil {
				return e
			}
			if r.appliedPos() >= pos {
				return nil
			}
			return &events.Error{Op: "projections.wait", Kind: events.KindUnavailable, Rule: r.name + " stopped"}
		case <-ctx.Done():
			return &events.Error{Op: "projections.wait", Kind: events.KindUnavailable,
				Rule: r.name + " has not applied position " + strconv.FormatUint(pos, 10), Err: ctx.Err()}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// positionErr names the log position whose message could not be read, so an
// operator can find it.
func positionErr(op string, pos uint64, err error) error {
	return &events.Error{Op: op, Kind: events.KindInvalid, Field: "position " + strconv.FormatUint(pos, 10), Err: err}
}

package projections

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/runtime/tracing"
)

// errGap means the consumer delivered a position past the next one: the
// runner reopens its consumer at the next position rather than skip one.
var errGap = errors.New("gap in delivered positions")

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

	// Owned by the run goroutine.
	clocks     clocks
	ckpt       Checkpoint
	rev        uint64
	lastCommit time.Time
	ackMsg     jetstream.Msg
	head       atomic.Uint64 // the log's head as last seen
	committed  atomic.Uint64 // ckpt.Position, for readers

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

func (r *runner) consumerName() string { return "proj_" + r.name + "_v" + strconv.Itoa(r.version) }

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

// consumer (re)creates the model version's durable consumer at the first
// position not applied. The checkpoint, not the consumer, is the record of
// progress: a consumer left by an earlier run may have delivered past it.
func (r *runner) consumer(ctx context.Context) (jetstream.Consumer, error) {
	name := r.consumerName()
	if err := r.eng.js.DeleteConsumer(ctx, events.StreamName, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, &events.Error{Op: "projections.consumer", Kind: events.KindUnavailable, Field: name, Err: err}
	}
	cfg := jetstream.ConsumerConfig{Durable: name, Description: "read model " + r.name + " v" + strconv.Itoa(r.version),
		FilterSubject: events.SubjectPrefix + ">", AckPolicy: jetstream.AckAllPolicy, AckWait: 5 * time.Minute,
		MaxAckPending: -1, DeliverPolicy: jetstream.DeliverAllPolicy}
	if r.applied > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, r.applied+1
	}
	cons, err := r.eng.js.CreateConsumer(ctx, events.StreamName, cfg)
	if err != nil {
		return nil, &events.Error{Op: "projections.consumer", Kind: events.KindUnavailable, Field: name, Err: err}
	}
	if info := cons.CachedInfo(); info != nil {
		r.head.Store(r.applied + info.NumPending)
	}
	r.publish()
	return cons, nil
}

// run pulls, applies and checkpoints until ctx ends or the model fails.
func (r *runner) run(ctx context.Context, cons jetstream.Consumer) {
	defer close(r.done)
	wait := min(max(r.eng.cfg.CheckpointInterval, 20*time.Millisecond), time.Second)
	for ctx.Err() == nil {
		if cons == nil {
			// Recreating the consumer after a gap failed (no stream
			// leader during a failover): try again before fetching.
			if cons, _ = r.consumer(ctx); cons == nil {
				sleepCtx(ctx, wait)
				continue
			}
		}
		batch, err := cons.Fetch(r.eng.cfg.FetchBatch, jetstream.FetchMaxWait(wait))
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			cons = nil // lost with its server's state: recreate it where the checkpoint says
		}
		if err != nil {
			sleepCtx(ctx, wait) // the server is away; the consumer is durable, try again
			continue
		}
		gap := false
		for msg := range batch.Messages() {
			if gap {
				continue
			}
			if err := r.handle(ctx, msg); errors.Is(err, errGap) {
				gap = true
			} else if err != nil {
				r.fail(err)
				return
			}
		}
		if gap {
			if cons, err = r.consumer(ctx); err != nil {
				cons = nil
				sleepCtx(ctx, wait)
			}
		}
		r.publish()
		if r.due() {
			if err := r.commitDetached(ctx); err != nil {
				r.fail(err)
				return
			}
		}
	}
	if err := r.commitDetached(ctx); err != nil {
		r.fail(err)
	}
}

// commitDetached commits with a context Stop does not cancel: a commit cut
// off half way leaves its outcome unknown.
func (r *runner) commitDetached(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return r.commit(cctx)
}

// handle applies one delivered message, in order, at most once.
func (r *runner) handle(ctx context.Context, msg jetstream.Msg) error {
	meta, err := msg.Metadata()
	if err != nil {
		return &events.Error{Op: "projections.run", Kind: events.KindIntegrity, Err: err}
	}
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
		r.advance(seq, msg)
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
	r.advance(seq, msg)
	if seq >= r.clocks.lastSnap+r.eng.cfg.SnapshotEvery {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return r.snapshotAsOf(sctx, seq)
	}
	return nil
}

func (r *runner) advance(seq uint64, msg jetstream.Msg) {
	r.mu.Lock()
	r.applied = seq
	r.mu.Unlock()
	if meta, err := msg.Metadata(); err == nil {
		r.clocks.lastRecorded = meta.Timestamp
	}
	r.ackMsg = msg
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
// (the commit point, guarded by its revision), then the ack of everything
// up to it. A crash between the steps leaves an orphan body, never a
// checkpoint ahead of its state.
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
	if r.ackMsg != nil {
		_ = r.ackMsg.Ack() // AckAll: everything up to the checkpoint
	}
	return nil
}

func (r *runner) publish() {
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

package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/models"
)

// Engine defaults. Each is a bound: the engine never holds more than
// CheckpointEvery applied-but-uncommitted events per model.
const (
	DefaultCheckpointEvery    = 10_000
	DefaultCheckpointInterval = time.Second
	DefaultSnapshotEvery      = 10_000
	DefaultFetchBatch         = 512
	maxFetchBatch             = 4096
)

// EngineConfig configures an Engine.
type EngineConfig struct {
	// Models are the read models to run, fresh (the engine restores them
	// from their checkpoints). Names must be distinct.
	Models []models.Model
	// Registerer, when set, receives the engine's gauges:
	// ledger_projection_lag_events (head position minus applied position)
	// and ledger_projection_applied_position, labelled model and version.
	Registerer prometheus.Registerer
	// CheckpointEvery commits a checkpoint after this many positions
	// (default DefaultCheckpointEvery).
	CheckpointEvery uint64
	// CheckpointInterval commits a checkpoint this long after the last one
	// when anything new was applied (default DefaultCheckpointInterval). It
	// also bounds how long Stop waits for a fetch to return.
	CheckpointInterval time.Duration
	// SnapshotEvery stores an as-of snapshot every this many positions
	// (default DefaultSnapshotEvery).
	SnapshotEvery uint64
	// FetchBatch is how many messages a model applies, at most, between two
	// publications of its progress (gauges, WaitApplied) while it catches
	// up with the log (default 512); it publishes at once when caught up.
	FetchBatch int
}

func (c *EngineConfig) defaults() {
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = DefaultCheckpointEvery
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = DefaultSnapshotEvery
	}
	if c.FetchBatch <= 0 {
		c.FetchBatch = DefaultFetchBatch
	}
	c.FetchBatch = min(c.FetchBatch, maxFetchBatch)
}

// Engine runs read models from the log. Each model version follows
// ledger.> through events.Follow from its own checkpoint (the record of its
// progress: the server keeps no consumer of it), in its own goroutine, with
// its own as-of snapshots, so a slow or failed model never holds back
// another, and a new version can be built beside the old one (Deploy).
//
// Concurrency contract: every method is safe for concurrent use. Models are
// only touched by their runner goroutine and inside View.
type Engine struct {
	js  jetstream.JetStream
	st  *storage
	cfg EngineConfig

	lag, applied, lagSeconds *prometheus.GaugeVec

	mu      sync.Mutex
	active  map[string]*runner
	runners []*runner
	ctx     context.Context
	cancel  context.CancelFunc
}

// NewEngine prepares an engine on js: it creates the state buckets if
// needed and registers the gauges. Start runs it.
func NewEngine(ctx context.Context, js jetstream.JetStream, cfg EngineConfig) (*Engine, error) {
	const op = "projections.NewEngine"
	cfg.defaults()
	seen := map[string]bool{}
	for _, m := range cfg.Models {
		if seen[m.Name()] {
			return nil, &events.Error{Op: op, Kind: events.KindInvalid, Field: "models", Rule: "model " + m.Name() + " named twice"}
		}
		seen[m.Name()] = true
	}
	st, err := openStorage(ctx, js, true)
	if err != nil {
		return nil, err
	}
	e := &Engine{js: js, st: st, cfg: cfg, active: map[string]*runner{}}
	e.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ledger_projection_lag_events",
		Help: "Head position of the log minus the position the read model has applied."}, []string{"model", "version"})
	e.applied = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ledger_projection_applied_position",
		Help: "Last log position the read model has applied."}, []string{"model", "version"})
	e.lagSeconds = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ledger_projection_lag_seconds",
		Help: "While the read model is behind the head: how long ago its last applied event was recorded; 0 when caught up."}, []string{"model", "version"})
	if cfg.Registerer != nil {
		if e.lagSeconds, err = register(cfg.Registerer, e.lagSeconds); err != nil {
			return nil, &events.Error{Op: op, Kind: events.KindInvalid, Field: "registerer", Err: err}
		}
		if e.lag, err = register(cfg.Registerer, e.lag); err != nil {
			return nil, &events.Error{Op: op, Kind: events.KindInvalid, Field: "registerer", Err: err}
		}
		if e.applied, err = register(cfg.Registerer, e.applied); err != nil {
			return nil, &events.Error{Op: op, Kind: events.KindInvalid, Field: "registerer", Err: err}
		}
	}
	return e, nil
}

// register registers g, or reuses the gauge already registered under its
// name (a second engine in one process shares it).
func register(r prometheus.Registerer, g *prometheus.GaugeVec) (*prometheus.GaugeVec, error) {
	err := r.Register(g)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.GaugeVec); ok {
			return existing, nil
		}
	}
	return g, err
}

// Start restores every model from its checkpoint and starts its runner. It
// returns once every runner has restored and the log was found.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	if e.ctx != nil {
		e.mu.Unlock()
		return &events.Error{Op: "projections.Start", Kind: events.KindInvalid, Rule: "engine already started"}
	}
	e.ctx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
	e.mu.Unlock()
	for _, m := range e.cfg.Models {
		r, err := e.startRunner(ctx, m)
		if err != nil {
			e.Stop()
			return err
		}
		e.mu.Lock()
		e.active[r.name] = r
		e.mu.Unlock()
		if err := e.st.setActive(ctx, r.name, r.version); err != nil {
			e.Stop()
			return err
		}
	}
	return nil
}

func (e *Engine) startRunner(ctx context.Context, m models.Model) (*runner, error) {
	r := newRunner(e, m)
	if err := r.restore(ctx); err != nil {
		return nil, err
	}
	st, err := e.js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, &events.Error{Op: "projections.Start", Kind: events.KindUnavailable, Rule: "stream " + events.StreamName + " not reachable", Err: err}
	}
	r.head.Store(max(st.CachedInfo().State.LastSeq, r.applied))
	// Best effort: a consumer an earlier version of the engine left, which
	// nothing reads any more.
	_ = e.js.DeleteConsumer(ctx, events.StreamName, r.legacyConsumerName())
	rctx, cancel := context.WithCancel(e.ctx)
	r.cancel = cancel
	e.mu.Lock()
	e.runners = append(e.runners, r)
	e.mu.Unlock()
	go r.run(rctx)
	return r, nil
}

// Stop stops every runner, commits a final checkpoint for each, and returns
// the first error a runner stopped with.
func (e *Engine) Stop() error {
	e.mu.Lock()
	if e.cancel != nil {
		e.cancel()
	}
	rs := append([]*runner(nil), e.runners...)
	e.mu.Unlock()
	var first error
	for _, r := range rs {
		<-r.done
		if err := r.error(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Err returns the first error an active runner stopped with, or nil.
func (e *Engine) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.active {
		if err := r.error(); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) runner(name string) (*runner, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.active[name]
	if !ok {
		return nil, &events.Error{Op: "projections.Engine", Kind: events.KindNotFound, Field: "model",
			Rule: fmt.Sprintf("the engine runs no read model %q", name)}
	}
	return r, nil
}

// View calls fn with the active version of the named model, holding it
// still: no event is applied while fn runs. fn must not keep the model.
func (e *Engine) View(name string, fn func(models.Model) error) error {
	r, err := e.runner(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return fn(r.m)
}

// Status is a model version's progress.
type Status struct {
	Model     string
	Version   int
	Applied   uint64 // every position up to Applied is applied
	Committed uint64 // the last committed checkpoint
	Lag       uint64 // head minus applied, as last seen
	Err       error
}

// Status returns the progress of the active version of a model.
func (e *Engine) Status(name string) (Status, error) {
	r, err := e.runner(name)
	if err != nil {
		return Status{}, err
	}
	return r.status(), nil
}

// WaitApplied waits until the active version of every model has applied
// position pos (or failed, which it returns).
func (e *Engine) WaitApplied(ctx context.Context, pos uint64) error {
	e.mu.Lock()
	rs := make([]*runner, 0, len(e.active))
	for _, r := range e.active {
		rs = append(rs, r)
	}
	e.mu.Unlock()
	for _, r := range rs {
		if err := r.wait(ctx, pos); err != nil {
			return err
		}
	}
	return nil
}

// Deploy builds m (a new version of a running model, or a new model) beside
// the running one from its own checkpoint, or from zero, and swaps it in
// once it has applied everything the running version has: blue/green. The
// old version's runner stops; its checkpoint and snapshots stay, so
// rolling back is another Deploy. Deploy returns
// when the swap is done.
func (e *Engine) Deploy(ctx context.Context, m models.Model) error {
	const op = "projections.Deploy"
	name, ver := m.Name(), models.ModelVersion(m)
	e.mu.Lock()
	old := e.active[name]
	started := e.ctx != nil
	e.mu.Unlock()
	if !started {
		return &events.Error{Op: op, Kind: events.KindInvalid, Rule: "start the engine first"}
	}
	if old != nil && old.version == ver {
		return &events.Error{Op: op, Kind: events.KindInvalid, Field: "version",
			Rule: fmt.Sprintf("%s v%d is already running; a new build needs a new version", name, ver)}
	}
	r, err := e.startRunner(ctx, m)
	if err != nil {
		return err
	}
	for {
		target := uint64(0)
		if old != nil {
			target = old.status().Applied
		}
		if err := r.wait(ctx, target); err != nil {
			r.cancel()
			return err
		}
		e.mu.Lock()
		if old == nil || r.status().Applied >= old.status().Applied {
			e.active[name] = r
			e.mu.Unlock()
			break
		}
		e.mu.Unlock()
	}
	if err := e.st.setActive(ctx, name, ver); err != nil {
		return err
	}
	if old != nil {
		old.cancel()
		<-old.done
	}
	return nil
}

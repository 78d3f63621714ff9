// Package enforcement puts refusals by policy rules on record: a service
// whose decider refused a command because a rule blocked it appends one
// enforcement.command_refused event (rule, kind, legal basis, command,
// aggregate, actor, principal, policy position, and the command's
// correlation and causation ids in the envelope), so that the log shows
// enforcement and not only absence (ADR 0020).
//
// The package must never change a command's answer: a refusal is answered
// without waiting on its record, and a record that cannot be made is
// logged and counted, never reported to the caller. It must never append
// anything of the refused command itself, and never let a flood of
// refusals flood the log: one record per command (its idempotency key, or
// its digest when it has none), a rate limit per actor and one for the
// whole process, and a bound on the records in flight. What the limits
// keep off the log is counted (Stats), not recorded.
package enforcement

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/policyview"
	"github.com/marketledger/ledger/runtime/tracing"
)

// Defaults of Config.
const (
	// DefaultActorBurst records may be made for one actor at once; then
	// DefaultActorPerSecond more per second.
	DefaultActorBurst     = 20
	DefaultActorPerSecond = 1.0
	// DefaultTotalBurst and DefaultTotalPerSecond bound the records of the
	// whole process, whatever the actors.
	DefaultTotalBurst     = 1000
	DefaultTotalPerSecond = 200.0
	// DefaultInFlightMax bounds the records being appended at once.
	DefaultInFlightMax = 256
	// DefaultTimeout bounds one record's append.
	DefaultTimeout = 5 * time.Second
)

// actorsMax bounds the actors whose rate the recorder keeps.
const actorsMax = 10_000

// Text bounds of the record's body (its contract's schema).
const (
	detailMax    = 1000
	principalMax = 200
)

// Config configures a Recorder.
type Config struct {
	// Store is the log the records are appended to. Required.
	Store events.Store
	// Now is the rate limits' clock; time.Now when nil. It is wall time,
	// not the decision clock: the limits protect the log from a flood in
	// real time, whatever instant the services decide at.
	Now func() time.Time
	// ActorBurst and ActorPerSecond are the rate limit per actor (the
	// buyer or seller a refusal names, else the authenticated principal);
	// zero takes the defaults.
	ActorBurst     int
	ActorPerSecond float64
	// TotalBurst and TotalPerSecond are the rate limit of the recorder;
	// zero takes the defaults.
	TotalBurst     int
	TotalPerSecond float64
	// InFlightMax bounds the records being appended at once; a refusal
	// beyond it is counted as dropped. Zero takes the default.
	InFlightMax int
	// Timeout bounds one record's append; zero takes the default.
	Timeout time.Duration
	// Logger receives a warning for each record that could not be made;
	// nil logs nothing.
	Logger *zap.Logger
}

// Stats counts what became of the refusals a Recorder was told of. Every
// refusal by a rule lands in exactly one counter once its append ended.
type Stats struct {
	// Recorded refusals were appended.
	Recorded uint64
	// Repeated refusals were already on record (the same command refused
	// before): nothing was appended.
	Repeated uint64
	// Limited refusals exceeded their actor's or the process's rate.
	Limited uint64
	// Dropped refusals found InFlightMax records in flight.
	Dropped uint64
	// Failed refusals could not be appended (logged).
	Failed uint64
}

// Recorder records refusals by policy rules; it is a
// command.RefusalRecorder. It is safe for concurrent use.
type Recorder struct {
	cfg      Config
	logger   atomic.Pointer[zap.Logger]
	inflight chan struct{}
	wg       sync.WaitGroup

	mu     sync.Mutex
	stats  Stats
	total  bucket
	actors map[string]*bucket
}

// New returns a Recorder appending to cfg.Store.
func New(cfg Config) (*Recorder, error) {
	if cfg.Store == nil {
		return nil, errors.New("enforcement: Config.Store is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ActorBurst <= 0 {
		cfg.ActorBurst = DefaultActorBurst
	}
	if cfg.ActorPerSecond <= 0 {
		cfg.ActorPerSecond = DefaultActorPerSecond
	}
	if cfg.TotalBurst <= 0 {
		cfg.TotalBurst = DefaultTotalBurst
	}
	if cfg.TotalPerSecond <= 0 {
		cfg.TotalPerSecond = DefaultTotalPerSecond
	}
	if cfg.InFlightMax <= 0 {
		cfg.InFlightMax = DefaultInFlightMax
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	r := &Recorder{cfg: cfg, inflight: make(chan struct{}, cfg.InFlightMax), actors: map[string]*bucket{}}
	r.SetLogger(cfg.Logger)
	return r, nil
}

// SetLogger replaces the logger of the records that could not be made; nil
// logs nothing.
func (r *Recorder) SetLogger(l *zap.Logger) {
	if l == nil {
		l = zap.NewNop()
	}
	r.logger.Store(l)
}

// Refused records f when a policy rule refused it (its error carries a
// policyview.Refusal), and ignores any other refusal. It returns at once:
// the record is appended on a goroutine of its own, detached from ctx's
// end but not from its values (trace context, principal).
func (r *Recorder) Refused(ctx context.Context, f command.Refused) {
	ref, ok := policyview.RefusalOf(f.Err)
	if !ok {
		return
	}
	name, ok := contracts.CommandName(f.Meta.Command)
	if !ok {
		return
	}
	principal := command.Principal(ctx)
	actor := ref.Actor
	if actor == "" {
		actor = principal
	}
	if !r.admit(actor) {
		return
	}
	select {
	case r.inflight <- struct{}{}:
	default:
		r.count(func(s *Stats) { s.Dropped++ })
		return
	}
	identity := f.Meta.IdempotencyKey
	if identity == "" {
		identity = f.Digest
	}
	body := contracts.CommandRefused{RefusalID: contracts.RefusalID(name, f.Aggregate.ID, identity),
		Command: contracts.Operation(name), AggregateID: f.Aggregate.ID, RuleID: ref.RuleID, RuleKind: ref.Kind,
		LegalBasis: ref.LegalBasis, Detail: clip(detail(f.Err), detailMax), Actor: ref.Actor,
		Principal: clip(principal, principalMax), IdempotencyKey: f.Meta.IdempotencyKey, CommandDigest: f.Digest,
		PolicyPosition: f.PolicyPosition}
	tp := tracing.Traceparent(ctx)
	r.wg.Add(1)
	go func() {
		defer func() { <-r.inflight; r.wg.Done() }()
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
		defer cancel()
		err := r.append(actx, body, f, tp)
		switch {
		case err == nil:
			r.count(func(s *Stats) { s.Recorded++ })
		case events.KindOf(err) == events.KindConflict:
			// The refusal's aggregate exists: this command was refused
			// and recorded before.
			r.count(func(s *Stats) { s.Repeated++ })
		default:
			r.count(func(s *Stats) { s.Failed++ })
			r.logger.Load().Warn("refusal by a policy rule not recorded", zap.String("command", name),
				zap.String("aggregate", f.Aggregate.String()), zap.String("rule", ref.RuleID), zap.Error(err))
		}
	}()
}

// append stores the record as the first event of its own aggregate: a
// second record of the same command finds it there and is refused.
func (r *Recorder) append(ctx context.Context, body contracts.CommandRefused, f command.Refused, traceparent string) error {
	e, err := contracts.NewEvent(body, body.RefusalID, f.DecidedAt)
	if err != nil {
		return err
	}
	e.CorrelationID, e.CausationID = f.Meta.CorrelationID, f.Meta.CommandID
	e.PolicyPosition, e.Traceparent = f.PolicyPosition, traceparent
	_, err = r.cfg.Store.Append(ctx, events.Decision{
		Aggregate:       events.AggregateRef{Context: contracts.ServiceEnforcement, ID: body.RefusalID},
		ExpectedVersion: 0, Events: []events.Event{e}})
	return err
}

// Wait blocks until every record started before it has been appended or
// given up, or ctx ends: for a caller that reads the log right after
// commands were refused (a test, the demo's report).
func (r *Recorder) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns the counters so far.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

func (r *Recorder) count(f func(*Stats)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.stats)
}

// admit takes a token from actor's bucket and from the recorder's, or
// counts the refusal as limited. An unnamed actor shares one bucket.
func (r *Recorder) admit(actor string) bool {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.actors[actor]
	if b == nil {
		if len(r.actors) >= actorsMax {
			r.forgetIdle(now)
		}
		b = &bucket{tokens: float64(r.cfg.ActorBurst), at: now}
		r.actors[actor] = b
	}
	if r.total.at.IsZero() {
		r.total = bucket{tokens: float64(r.cfg.TotalBurst), at: now}
	}
	b.refill(now, r.cfg.ActorBurst, r.cfg.ActorPerSecond)
	r.total.refill(now, r.cfg.TotalBurst, r.cfg.TotalPerSecond)
	if b.tokens < 1 || r.total.tokens < 1 {
		r.stats.Limited++
		return false
	}
	b.tokens--
	r.total.tokens--
	return true
}

// forgetIdle drops the actors whose bucket has refilled (they are as new),
// and every actor when that frees nothing: the map stays bounded, at the
// cost of a fresh burst for the actors forgotten.
func (r *Recorder) forgetIdle(now time.Time) {
	for a, b := range r.actors {
		if b.refill(now, r.cfg.ActorBurst, r.cfg.ActorPerSecond); b.tokens >= float64(r.cfg.ActorBurst) {
			delete(r.actors, a)
		}
	}
	if len(r.actors) >= actorsMax {
		clear(r.actors)
	}
}

// bucket is a token bucket: burst tokens at most, perSecond more each
// second.
type bucket struct {
	tokens float64
	at     time.Time
}

func (b *bucket) refill(now time.Time, burst int, perSecond float64) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(float64(burst), b.tokens+d.Seconds()*perSecond)
		b.at = now
	}
}

// detail is the rule a refusal's problem states to the caller (the
// events.Error's Rule), or the whole error when it states none.
func detail(err error) string {
	var e *events.Error
	if errors.As(err, &e) && e.Rule != "" {
		return e.Rule
	}
	return err.Error()
}

// clip cuts s to at most n runes.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// Package command runs a pure decider against the log: load the aggregate,
// fold its events into state, decide, append with the expected version, and
// retry a bounded number of times when another decision won the race. It is
// the one place where the services' command handling lives, so that every
// service loads, decides and appends the same way.
//
// The package must never hold business rules and never call time.Now for a
// decision: the clock is injected.
package command

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/tracing"
)

type correlationKey struct{}

// WithCorrelationID returns a context whose commands join the business flow
// id (a checkout, a client's Ledger-Correlation-Id): their events record it
// as their correlation id, whichever service runs them.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// CorrelationID returns the flow ctx carries, "" when none.
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}

// MaxAttempts bounds the load-decide-append loop of one command.
const MaxAttempts = 8

// Codec turns typed event payloads into event bodies and back. The contracts
// module provides it (contracts.Encode and contracts.Decode).
type Codec interface {
	Encode(v any) (typ string, version int, data []byte, err error)
	Decode(typ string, version int, data []byte) (any, error)
}

// Aggregate describes one decider's state machine to the runner.
type Aggregate[S any] struct {
	// Context is the bounded context ("order").
	Context string
	// Initial returns the state of an aggregate with no events.
	Initial func(id string) S
	// Evolve applies one decoded event payload to the state. It must be pure.
	Evolve func(state S, payload any) S
	// Clone, when set, returns a deep copy of a state. It lets the runner
	// keep the newest state of recently used aggregates and catch up from
	// it (one round trip) instead of loading every event again; without it
	// every command loads the aggregate in full.
	Clone func(S) S
}

// Runner carries what every command needs besides the decider.
type Runner struct {
	Store  events.Store
	Codec  Codec
	Source string           // CloudEvents source, "/ledger/order"
	Clock  func() time.Time // the decision clock; business time of the events
	// Skew, when set, measures the decision clock against the log server's
	// from what this runner appends, and refuses fenced commands while it
	// is beyond its bound. Nil measures nothing (a simulated clock).
	Skew *Skew

	// Refusals, when set, is told of every fenced command its decider
	// refused (see Refused): the service's way to put refusals by a policy
	// rule on record. Nil records nothing.
	Refusals RefusalRecorder

	cache stateCache
	turns turns
}

// Refused is a fenced command its decider refused, as the runner answered
// it: what a RefusalRecorder needs to put a refusal by a rule on record.
type Refused struct {
	Aggregate events.AggregateRef
	// Meta is the command's envelope; its CorrelationID is the flow's (or
	// the command id when the flow named none), its CommandID the
	// causation id of anything recorded about it.
	Meta Meta
	// Digest is the command's digest (see Digest).
	Digest string
	// PolicyPosition is the position of the policy snapshot the refusal
	// was decided under; DecidedAt the decision instant.
	PolicyPosition uint64
	DecidedAt      time.Time
	// Err is the refusal as the caller is answered it.
	Err error
}

// RefusalRecorder puts refused commands on record.
//
// Concurrency contract: Refused is called from the goroutines that answer
// commands, concurrently, once per fenced command refused by its decider
// (not for a command answered with the first result of its idempotency
// key), before the caller gets the refusal. It must return at once: it may
// not wait on the log, and nothing it does may change the answer. ctx is
// the caller's; it ends when the caller leaves, so work that outlives the
// call must detach from it.
type RefusalRecorder interface {
	Refused(ctx context.Context, r Refused)
}

type principalKey struct{}

// WithPrincipal returns a context whose commands were sent by the
// authenticated caller subject (a token's subject at the HTTP edge), so
// that a record of their refusal names who sent them.
func WithPrincipal(ctx context.Context, subject string) context.Context {
	return context.WithValue(ctx, principalKey{}, subject)
}

// Principal returns the authenticated caller ctx carries, "" when none.
func Principal(ctx context.Context) string {
	p, _ := ctx.Value(principalKey{}).(string)
	return p
}

// Meta is the command's envelope: who asked, in which flow, and how to make
// it idempotent.
type Meta struct {
	// CommandID identifies the command; it becomes the causation id.
	CommandID string
	// CorrelationID ties the flow together; defaults to the flow ctx
	// carries (WithCorrelationID), then to CommandID.
	CorrelationID string
	// IdempotencyKey, when set, makes the command idempotent for good.
	IdempotencyKey string
	// Command is the command value; its canonical JSON is the digest that
	// an idempotency key is bound to.
	Command any
}

// Policy is a consistent view of the policy timeline: the position of the
// newest policy event it includes, and its rules.
type Policy[P any] struct {
	Position uint64
	Rules    P
}

// Result is what a command did.
type Result[S any] struct {
	State    S
	Version  uint64
	Events   []events.Event
	Appended events.Appended
	// Replayed is true when the idempotency key had been used by the same
	// command before; the result is then the first one, read back from the
	// log: State as of Version, and the Events that command appended.
	Replayed bool
}

// Run executes one command on aggregate id. decide sees the current state,
// a policy snapshot taken just before it (policy may be nil: no fence) and
// the decision instant, which the events record as their occurred-at,
// and returns the event payloads to append, or an error that is returned as
// is (nothing appended). A decision made under a policy snapshot is fenced:
// it is stored only if no policy event came after the snapshot's position.
//
// Commands of one aggregate take turns (see turns): the one whose turn it
// is decides those queued behind it as well, in order, each on the state
// its predecessor left, and appends them together. A command is answered
// only once the append that holds its decision succeeded; a refusal made
// on a state that included others' undecided events is decided again when
// that append fails.
func Run[S, P any](ctx context.Context, r *Runner, agg Aggregate[S], id string, meta Meta,
	policy func(ctx context.Context, refresh bool) (Policy[P], error),
	decide func(state S, pol P, now time.Time) ([]any, error)) (Result[S], error) {
	ctx, span := tracing.Start(ctx, "command.run")
	if span.Recording() {
		span.Set(tracing.String("ledger.aggregate", agg.Context+"/"+id))
		if name, ok := contracts.CommandName(meta.Command); ok {
			span.Set(tracing.String("ledger.command", name))
		}
	}
	res, err := run(ctx, r, agg, id, meta, policy, decide)
	span.End(err)
	return res, err
}

func run[S, P any](ctx context.Context, r *Runner, agg Aggregate[S], id string, meta Meta,
	policy func(ctx context.Context, refresh bool) (Policy[P], error),
	decide func(state S, pol P, now time.Time) ([]any, error)) (Result[S], error) {
	ref := events.AggregateRef{Context: agg.Context, ID: id}
	if meta.CorrelationID == "" {
		meta.CorrelationID = CorrelationID(ctx)
	}
	digest, err := Digest(meta.Command)
	if err != nil {
		return Result[S]{}, err
	}
	j := &job[S, P]{jobBase: jobBase{ctx: ctx, fence: policy != nil, lead: make(chan struct{}), done: make(chan struct{})},
		meta: meta, digest: digest, policy: policy, decide: decide}
	lead := r.turns.join(ref, j)
	if !lead {
		if lead, err = r.turns.wait(ctx, ref, &j.jobBase); err != nil {
			return Result[S]{}, err
		}
	}
	if lead {
		max := 1
		if _, ok := r.Store.(events.PartsAppender); ok && agg.Clone != nil {
			max = maxGroup
		}
		g := r.turns.group(ref, max)
		jobs := make([]*job[S, P], len(g))
		for i, q := range g {
			jobs[i] = q.(*job[S, P])
		}
		left := decideGroup(r, agg, ref, jobs)
		r.turns.giveBack(ref, left)
		r.turns.pass(ref)
	}
	<-j.done
	return j.res, j.err
}

// maxGroup bounds how many queued commands of one aggregate are decided
// together: a listing's reservations in a flash sale, one event each.
const maxGroup = events.MaxEventsPerDecision

// job is one command waiting for its turn.
type job[S, P any] struct {
	jobBase
	meta   Meta
	digest string
	policy func(ctx context.Context, refresh bool) (Policy[P], error)
	decide func(state S, pol P, now time.Time) ([]any, error)

	res Result[S]
	err error
}

func (j *job[S, P]) finish(res Result[S], err error) {
	j.res, j.err = res, err
	close(j.done)
}

// outcome is what one job's decision came to in an attempt.
type outcome[S any] struct {
	res     Result[S]
	err     error
	payload []any // the events to append, when the job decided some
	// pos and at are the policy position and instant a refusal was
	// decided under.
	pos uint64
	at  time.Time
}

// groupContext lives while any job of jobs still waits for its result: a
// caller that leaves does not cancel the others' append.
func groupContext[S, P any](jobs []*job[S, P]) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(jobs[0].ctx))
	var mu sync.Mutex
	left := len(jobs)
	stops := make([]func() bool, 0, len(jobs))
	for _, j := range jobs {
		stops = append(stops, context.AfterFunc(j.ctx, func() {
			mu.Lock()
			defer mu.Unlock()
			if left--; left == 0 {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// decideGroup decides jobs in turn on the aggregate and appends their
// events together, retrying the group a bounded number of times when
// another decision won the race, and sets every job's result except those
// it returns: the jobs whose events did not fit one decision, to be decided
// in the next group.
func decideGroup[S, P any](r *Runner, agg Aggregate[S], ref events.AggregateRef, jobs []*job[S, P]) []queued {
	ctx, cancel := groupContext(jobs)
	defer cancel()
	// A used idempotency key is not looked up before deciding: a command
	// sent again is decided again, and its first result is answered when
	// the decision is refused, decides nothing, or its append finds the
	// key's record. A key never used costs no read.
	active := jobs
	var left []queued
	refreshPolicy, verify := false, false
	var lastErr error
	for attempt := 0; attempt < MaxAttempts && len(active) > 0; attempt++ {
		if attempt > 0 {
			// The decision that won the race may have been one of these
			// commands' own, sent twice at once (a retry, a second process
			// manager): it gets the first result, not a decision on the
			// new state.
			still := active[:0:0]
			for _, j := range active {
				if j.meta.IdempotencyKey != "" {
					if res, done, err := replay(ctx, r, agg, ref, j.meta, j.digest); done || err != nil {
						j.finish(res, err)
						continue
					}
				}
				still = append(still, j)
			}
			if active = still; len(active) == 0 {
				break
			}
		}
		// The first attempt decides on the cached state as it is, without
		// asking the store whether it is still current: the append's
		// expected version catches a stale one. A refusal or a no-op on an
		// unverified state is decided again on a verified one.
		state, version, unverified := cachedState(r, agg, ref)
		if !unverified || attempt > 0 || verify {
			unverified = false
			var err error
			lctx, span := tracing.Start(ctx, "command.load")
			state, version, err = load(lctx, r, agg, ref)
			span.End(err)
			if err != nil {
				finishAll(active, err)
				return left
			}
		}
		var pol Policy[P]
		if active[0].policy != nil {
			if r.Skew != nil {
				if err := r.Skew.Check(); err != nil {
					finishAll(active, err)
					return left
				}
			}
			var err error
			if pol, err = active[0].policy(ctx, refreshPolicy); err != nil {
				finishAll(active, err)
				return left
			}
		}
		// One instant per attempt: the rules are judged at the same time the
		// events record as their occurred-at.
		now := r.Clock()
		decidedAt := time.Now() // real time, for the skew measurement's round trip
		outs := make([]outcome[S], len(active))
		var parts []events.Part
		var evs []events.Event
		var owners []int // index in active of each part
		var states []S   // the state after each part
		redo := false
		decided := len(active)
		for i, j := range active {
			_, dspan := tracing.Start(j.ctx, "command.decide")
			payloads, err := j.decide(state, pol.Rules, now)
			dspan.End(err)
			if unverified && (err != nil || len(payloads) == 0) {
				redo = true
				break
			}
			if err != nil || len(payloads) == 0 {
				outs[i] = outcome[S]{err: err, res: Result[S]{State: state, Version: version + uint64(len(evs))}, pos: pol.Position, at: now}
				if err == nil && agg.Clone != nil && len(active) > 1 {
					outs[i].res.State = agg.Clone(state)
				}
				continue
			}
			if len(evs) > 0 && len(evs)+len(payloads) > events.MaxEventsPerDecision {
				decided = i
				break
			}
			built, err := build(r, ref, j.meta, payloads, pol.Position, now, tracing.Traceparent(j.ctx))
			if err != nil {
				outs[i] = outcome[S]{err: err}
				continue
			}
			for _, p := range payloads {
				state = agg.Evolve(state, p)
			}
			if agg.Clone != nil && len(active) > 1 {
				states = append(states, agg.Clone(state))
			} else {
				states = append(states, state)
			}
			outs[i].payload = payloads
			evs = append(evs, built...)
			parts = append(parts, events.Part{Events: len(built), IdempotencyKey: j.meta.IdempotencyKey, CommandDigest: j.digest})
			owners = append(owners, i)
		}
		if redo {
			verify = true
			continue
		}
		back := make([]queued, 0, len(active)-decided+len(left))
		for _, j := range active[decided:] {
			back = append(back, j)
		}
		left = append(back, left...)
		active = active[:decided]
		outs = outs[:decided]
		if len(parts) == 0 {
			answerRefusals(ctx, r, agg, ref, active, outs)
			return left
		}
		d := events.Decision{Aggregate: ref, ExpectedVersion: version, Events: evs, Fence: active[0].policy != nil}
		if len(parts) == 1 {
			d.IdempotencyKey, d.CommandDigest = parts[0].IdempotencyKey, parts[0].CommandDigest
		} else {
			d.Parts = parts
		}
		actx, aspan := tracing.Start(ctx, "command.append", tracing.Int("ledger.events", len(evs)), tracing.Int("ledger.commands", len(parts)))
		a, err := r.Store.Append(actx, d)
		aspan.End(err)
		switch {
		case err == nil && a.Replayed:
			// Only a decision of one part with a key is answered so.
			j := active[owners[0]]
			res, _, err := replay(ctx, r, agg, ref, j.meta, j.digest)
			j.finish(res, err)
			answerRefusals(ctx, r, agg, ref, active, outs, owners[0])
			return left
		case err == nil:
			if agg.Clone != nil {
				r.cache.put(ref, cached{state: agg.Clone(state), version: a.Version})
			}
			measureSkew(ctx, r, a.LastPosition, now, time.Since(decidedAt))
			pos, ver := a.FirstPosition, version
			for k, i := range owners {
				n := uint64(parts[k].Events)
				ver += n
				part := events.Appended{Version: ver, FirstPosition: pos, LastPosition: pos + n - 1}
				pos += n
				first := part.FirstPosition - a.FirstPosition
				outs[i] = outcome[S]{res: Result[S]{State: states[k], Version: ver, Events: evs[first : first+n], Appended: part}}
				active[i].finish(outs[i].res, nil)
			}
			answerRefusals(ctx, r, agg, ref, active, outs, owners...)
			return left
		case events.IsPolicyConflict(err):
			refreshPolicy, lastErr = true, err
		case events.KindOf(err) == events.KindConflict:
			lastErr = err
			// Another process's decision won the aggregate. A large
			// group takes longer to decide again than a small one, and
			// could lose every round to a writer that decides quickly:
			// the next attempt keeps the older half, and the younger half
			// goes back to the front of the lane for the next group.
			if n := len(active); n > 1 {
				back := make([]queued, 0, n-n/2+len(left))
				for _, j := range active[(n+1)/2:] {
					back = append(back, j)
				}
				left = append(back, left...)
				active = active[:(n+1)/2]
			}
		default:
			finishAll(active, err)
			return left
		}
	}
	finishAll(active, &events.Error{Op: "command.Run", Kind: events.KindConflict, Reason: events.ReasonContention, Field: ref.String(),
		Rule: fmt.Sprintf("gave up after %d attempts under contention", MaxAttempts), Err: lastErr})
	return left
}

// answerRefusals sets the result of every job of active that decided no
// events, skipping those at the indexes in answered: refused, or a no-op.
// A refusal or a no-op of a command with a key may be on a state this very
// command made (sent twice at once, the other copy landed first): its first
// result is then its result.
func answerRefusals[S, P any](ctx context.Context, r *Runner, agg Aggregate[S], ref events.AggregateRef,
	active []*job[S, P], outs []outcome[S], answered ...int) {
	for i, j := range active {
		if slices.Contains(answered, i) || outs[i].payload != nil {
			continue
		}
		if j.meta.IdempotencyKey != "" {
			if res, done, err := replay(ctx, r, agg, ref, j.meta, j.digest); done || err != nil {
				j.finish(res, err)
				continue
			}
		}
		if outs[i].err != nil {
			if r.Refusals != nil && j.policy != nil {
				meta := j.meta
				if meta.CorrelationID == "" {
					meta.CorrelationID = meta.CommandID
				}
				r.Refusals.Refused(j.ctx, Refused{Aggregate: ref, Meta: meta, Digest: j.digest,
					PolicyPosition: outs[i].pos, DecidedAt: outs[i].at, Err: outs[i].err})
			}
			j.finish(Result[S]{}, outs[i].err)
			continue
		}
		j.finish(outs[i].res, nil)
	}
}

func finishAll[S, P any](jobs []*job[S, P], err error) {
	for _, j := range jobs {
		j.finish(Result[S]{}, err)
	}
}

// measureSkew reads back the server's recorded time of the event appended
// at pos, decided at now, when the runner's Skew wants a measurement and
// the append was answered within roundTrip of the decision. A failed read
// measures nothing: the append itself succeeded.
func measureSkew(ctx context.Context, r *Runner, pos uint64, now time.Time, roundTrip time.Duration) {
	if r.Skew == nil || pos == 0 || !r.Skew.informative(roundTrip) || !r.Skew.due() {
		return
	}
	for e, err := range r.Store.Read(ctx, events.Query{From: pos, To: pos}) {
		if err == nil && e.Position == pos {
			r.Skew.Observe(now, e.RecordedAt)
		}
		break
	}
}

// replay answers a command whose idempotency key was used before.
func replay[S any](ctx context.Context, r *Runner, agg Aggregate[S], ref events.AggregateRef, meta Meta, digest string) (Result[S], bool, error) {
	lk, ok := r.Store.(events.IdempotencyLookup)
	if !ok {
		return Result[S]{}, false, nil
	}
	a, found, err := lk.LookupIdempotency(ctx, ref, meta.IdempotencyKey, digest)
	if err != nil || !found {
		return Result[S]{}, false, err
	}
	state, evs, err := firstResult(ctx, r, agg, ref, a)
	if err != nil {
		return Result[S]{}, true, err
	}
	return Result[S]{State: state, Version: a.Version, Events: evs, Appended: a, Replayed: true}, true, nil
}

// firstResult reads back what a stored decision answered: the aggregate's
// state as of the decision's version, and the decision's events (those at
// its positions). The aggregate may have moved on since; a retry must not
// answer with what later commands made of it.
func firstResult[S any](ctx context.Context, r *Runner, agg Aggregate[S], ref events.AggregateRef, a events.Appended) (S, []events.Event, error) {
	state := agg.Initial(ref.ID)
	hist, err := r.Store.Load(ctx, ref, 0)
	if err != nil {
		return state, nil, err
	}
	var decided []events.Event
	for _, e := range hist {
		if e.AggregateVersion > a.Version {
			break
		}
		p, err := r.Codec.Decode(e.Type, e.SchemaVersion, e.Data)
		if err != nil {
			return state, nil, fmt.Errorf("command: event %s at position %d: %w", e.ID, e.Position, err)
		}
		state = agg.Evolve(state, p)
		if e.Position >= a.FirstPosition && e.Position <= a.LastPosition {
			decided = append(decided, e)
		}
	}
	// Positions need not be contiguous in every store (EventStoreDB's are
	// commit positions); versions are: the decision ends at its version.
	if a.FirstPosition > a.LastPosition { // a command whose part decided nothing
		return state, nil, nil
	}
	if len(decided) == 0 || decided[len(decided)-1].AggregateVersion != a.Version {
		return state, nil, &events.Error{Op: "command.Run", Kind: events.KindIntegrity, Field: ref.String(),
			Rule: fmt.Sprintf("the idempotency record names positions %d..%d ending at version %d, the aggregate's history does not hold them",
				a.FirstPosition, a.LastPosition, a.Version)}
	}
	return state, decided, nil
}

// cachedState returns a copy of the cached state of ref, if any, not
// checked against the store.
func cachedState[S any](r *Runner, agg Aggregate[S], ref events.AggregateRef) (S, uint64, bool) {
	if agg.Clone != nil {
		if c, ok := r.cache.get(ref); ok {
			if cs, ok := c.state.(S); ok {
				return agg.Clone(cs), c.version, true
			}
		}
	}
	var zero S
	return zero, 0, false
}

// Load folds an aggregate's events into its state.
func Load[S any](ctx context.Context, r *Runner, agg Aggregate[S], id string) (S, uint64, error) {
	return load(ctx, r, agg, events.AggregateRef{Context: agg.Context, ID: id})
}

func load[S any](ctx context.Context, r *Runner, agg Aggregate[S], ref events.AggregateRef) (S, uint64, error) {
	state, version := agg.Initial(ref.ID), uint64(0)
	if agg.Clone != nil {
		// Two aggregates with different state types over one context (a
		// service's own and another's view of it) never share an entry.
		if c, ok := r.cache.get(ref); ok {
			if cs, ok := c.state.(S); ok {
				state, version = agg.Clone(cs), c.version
			}
		}
	}
	evs, err := r.Store.Load(ctx, ref, version)
	if err != nil {
		return state, 0, err
	}
	if version > 0 && len(evs) > 0 && evs[0].AggregateVersion != version+1 {
		// The store could not continue from the cached version: it
		// returned a full history. Start over from it.
		state, version = agg.Initial(ref.ID), 0
	}
	for _, e := range evs {
		p, err := r.Codec.Decode(e.Type, e.SchemaVersion, e.Data)
		if err != nil {
			return state, 0, fmt.Errorf("command: event %s at position %d: %w", e.ID, e.Position, err)
		}
		state = agg.Evolve(state, p)
		version = e.AggregateVersion
	}
	if agg.Clone != nil {
		r.cache.put(ref, cached{state: agg.Clone(state), version: version})
	}
	return state, version, nil
}

// build makes the events of a decision; each records the trace context of
// the command that decided it (traceparent, "" when untraced), so that a
// follower's work on them joins the command's trace.
func build(r *Runner, ref events.AggregateRef, meta Meta, payloads []any, policyPos uint64, now time.Time, traceparent string) ([]events.Event, error) {
	corr := meta.CorrelationID
	if corr == "" {
		corr = meta.CommandID
	}
	evs := make([]events.Event, 0, len(payloads))
	for _, p := range payloads {
		typ, v, data, err := r.Codec.Encode(p)
		if err != nil {
			return nil, err
		}
		evs = append(evs, events.Event{ID: events.NewID(), Type: typ, SchemaVersion: v, Source: r.Source,
			AggregateID: ref.ID, OccurredAt: now, CorrelationID: corr, CausationID: meta.CommandID,
			PolicyPosition: policyPos, Data: data, Traceparent: traceparent})
	}
	return evs, nil
}

// Digest is the SHA-256 of a command's JSON encoding: the identity an
// idempotency key is bound to.
func Digest(cmd any) (string, error) {
	if cmd == nil {
		return "", errors.New("command: Meta.Command is required")
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return "", fmt.Errorf("command: digest: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Package subscriber is the SDK a service uses to follow the ledger: a named,
// durable subscription (a JetStream durable pull consumer on LEDGER) with
// at-least-once delivery to a handler, checkpoints that never skip an
// unprocessed event, bounded in-flight work, and a parking lot for poison
// events so that one bad event never stops the others and is never lost.
//
// Delivery is at least once: an event whose handler was running when the
// process stopped, or whose acknowledgement was lost, is delivered again.
// Dedupe skips most repeats but cannot remove them (the effect and its mark
// are two writes), so a handler wrapped with it must still be idempotent.
// AtomicKV makes a handler's effect happen exactly once when that effect is
// writes to a key-value bucket: the writes and the mark are one atomic batch.
//
// It is the one follower of the log that does not read through
// events.Follow, by design: its progress is the durable consumer's
// acknowledgements, which the server keeps and replicates with the stream,
// and redelivery after the ack wait is what makes it at least once. Every
// other follower (the checkout runner, the read models, the policy view,
// the notary) reads through events.Follow on a consumer of its own and
// keeps its own checkpoint. This package and the checkout runner, which
// handle events out of order, compute their checkpoint with
// checkpoint.Tracker.
//
// The package must never acknowledge an event before its handler returned
// nil or before its parked copy is stored, and never write to the LEDGER
// stream: park records live in the separate stream LEDGER_PARKED, because
// every subject under "ledger." is the ledger's own and its readers must
// never see a park record as an event.
package subscriber

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Handler handles one event. Returning nil acknowledges it; an error makes it
// be delivered again after a backoff, and parked after MaxAttempts failures.
// Handlers may run concurrently (up to MaxInFlight at once) unless
// MaxInFlight is 1.
type Handler func(ctx context.Context, e events.Event) error

// Limits and defaults of a subscription.
const (
	// DefaultMaxInFlight is how many events are handled at once by default.
	DefaultMaxInFlight = 16
	// MaxInFlightLimit bounds MaxInFlight.
	MaxInFlightLimit = 4096
	// DefaultMaxAttempts is how many deliveries a failing event gets before
	// it is parked.
	DefaultMaxAttempts = 5
	// MaxAttemptsLimit bounds MaxAttempts.
	MaxAttemptsLimit = 100
	// DefaultAckWait is how long the server waits for an acknowledgement
	// before delivering again; a running handler extends it.
	DefaultAckWait = 30 * time.Second
	// MaxNameLen bounds a subscription name.
	MaxNameLen = 64
	// ConsumerPrefix starts the durable consumer name of every subscription.
	ConsumerPrefix = "sub-"
)

// DefaultBackoff is the delay before each redelivery of a failed event; the
// last delay repeats.
var DefaultBackoff = []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second}

// Start says where a new subscription begins. It is used only when the
// subscription is created; a subscription that exists resumes from its
// checkpoint whatever Start says.
type Start struct {
	policy jetstream.DeliverPolicy
	pos    uint64
	t      time.Time
}

// FromBeginning starts at the first event of the log.
func FromBeginning() Start { return Start{policy: jetstream.DeliverAllPolicy} }

// FromPosition starts at position pos (1 is the first event).
func FromPosition(pos uint64) Start {
	if pos <= 1 {
		return FromBeginning()
	}
	return Start{policy: jetstream.DeliverByStartSequencePolicy, pos: pos}
}

// FromTime starts at the first event the server recorded at or after t.
func FromTime(t time.Time) Start { return Start{policy: jetstream.DeliverByStartTimePolicy, t: t} }

// FromNow starts with the first event appended after the subscription is
// created.
func FromNow() Start { return Start{policy: jetstream.DeliverNewPolicy} }

// Config configures a subscription.
type Config struct {
	// Name names the subscription; its durable consumer is "sub-<Name>" and
	// its parked events are on "parked.<Name>.>". Letters, digits, '-' and
	// '_', at most MaxNameLen bytes.
	Name string
	// Subjects filter the log (for example "ledger.order.>"); empty means
	// every event.
	Subjects []string
	// Start is where a new subscription begins (FromBeginning by default).
	Start Start
	// MaxInFlight bounds the events fetched and not yet finished; fetching
	// stops while it is reached (DefaultMaxInFlight when 0).
	MaxInFlight int
	// MaxAttempts is how many deliveries a failing event gets before it is
	// parked (DefaultMaxAttempts when 0).
	MaxAttempts int
	// Backoff are the delays before redeliveries (DefaultBackoff when nil).
	Backoff []time.Duration
	// AckWait is the server's redelivery timer (DefaultAckWait when 0).
	AckWait time.Duration
	// OnPark, when set, is told of every event parked (for logs and metrics).
	OnPark func(p Parked)
}

// Subscription is one named durable subscription. Create it with New and
// run it with Run; Checkpoint may be called from any goroutine.
type Subscription struct {
	js   jetstream.JetStream
	cfg  Config
	cons jetstream.Consumer
	trk  *tracker

	lastRefresh time.Time // of the server's ack floor; Run's goroutine only
}

// New creates the subscription's durable consumer (and the parking stream)
// if they do not exist, or binds to them; an existing consumer keeps its
// position and takes the new filter, in-flight bound and ack wait.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Subscription, error) {
	const op = "subscriber.New"
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, withOp(op, err)
	}
	var cons jetstream.Consumer
	err = guard(ctx, js, op, []string{jsAPI}, func(ctx context.Context) error {
		if _, err := EnsureParkedStream(ctx, js, 0); err != nil {
			return err
		}
		c, err := ensureConsumer(ctx, js, cfg)
		if err != nil {
			return &events.Error{Op: op, Kind: events.KindUnavailable, Rule: "consumer " + ConsumerPrefix + cfg.Name, Err: err}
		}
		cons = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	info := cons.CachedInfo()
	var barrier uint64
	if info.NumAckPending > 0 {
		barrier = info.Delivered.Stream
	}
	return &Subscription{js: js, cfg: cfg, cons: cons, trk: newTracker(info.AckFloor.Stream, barrier)}, nil
}

func withDefaults(cfg Config) (Config, error) {
	if err := ValidateName(cfg.Name); err != nil {
		return cfg, err
	}
	if len(cfg.Subjects) == 0 {
		cfg.Subjects = []string{events.SubjectPrefix + ">"}
	}
	for _, s := range cfg.Subjects {
		if !strings.HasPrefix(s, events.SubjectPrefix) && s != ">" {
			return cfg, &events.Error{Kind: events.KindInvalid, Field: "subjects", Rule: fmt.Sprintf("subject %q is not in the ledger's subject space %s>", s, events.SubjectPrefix)}
		}
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxInFlight < 1 || cfg.MaxInFlight > MaxInFlightLimit {
		return cfg, &events.Error{Kind: events.KindInvalid, Field: "max_in_flight", Rule: fmt.Sprintf("must be 1..%d", MaxInFlightLimit)}
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxAttempts < 1 || cfg.MaxAttempts > MaxAttemptsLimit {
		return cfg, &events.Error{Kind: events.KindInvalid, Field: "max_attempts", Rule: fmt.Sprintf("must be 1..%d", MaxAttemptsLimit)}
	}
	if len(cfg.Backoff) == 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.AckWait < 100*time.Millisecond {
		return cfg, &events.Error{Kind: events.KindInvalid, Field: "ack_wait", Rule: "must be at least 100ms"}
	}
	if cfg.Start.policy == 0 && cfg.Start.pos == 0 && cfg.Start.t.IsZero() {
		cfg.Start = FromBeginning() // DeliverAllPolicy is the zero DeliverPolicy
	}
	return cfg, nil
}

// ValidateName checks a subscription name: it becomes part of a consumer
// name and one subject token.
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return &events.Error{Kind: events.KindInvalid, Field: "name", Rule: fmt.Sprintf("must be 1..%d bytes", MaxNameLen)}
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			return &events.Error{Kind: events.KindInvalid, Field: "name", Rule: fmt.Sprintf("only letters, digits, '-' and '_', got %q", name)}
		}
	}
	return nil
}

func ensureConsumer(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.Consumer, error) {
	name := ConsumerPrefix + cfg.Name
	cons, err := js.Consumer(ctx, events.StreamName, name)
	if err == nil {
		cc := cons.CachedInfo().Config
		cc.FilterSubject, cc.FilterSubjects = "", cfg.Subjects
		cc.MaxAckPending, cc.AckWait = cfg.MaxInFlight, cfg.AckWait
		return js.UpdateConsumer(ctx, events.StreamName, cc)
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	cc := jetstream.ConsumerConfig{
		Durable:        name,
		Description:    "ledger subscriber " + cfg.Name,
		DeliverPolicy:  cfg.Start.policy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     -1, // the SDK parks after MaxAttempts; the server must never drop an event
		FilterSubjects: cfg.Subjects,
		ReplayPolicy:   jetstream.ReplayInstantPolicy,
		MaxAckPending:  cfg.MaxInFlight,
	}
	switch cfg.Start.policy {
	case jetstream.DeliverByStartSequencePolicy:
		cc.OptStartSeq = cfg.Start.pos
	case jetstream.DeliverByStartTimePolicy:
		t := cfg.Start.t
		cc.OptStartTime = &t
	}
	return js.CreateConsumer(ctx, events.StreamName, cc)
}

// Name returns the subscription's name.
func (s *Subscription) Name() string { return s.cfg.Name }

// Checkpoint returns the last fully processed position: every event of the
// subscription at or before it was handled (or parked) and acknowledged.
// It never moves past an event still in flight, so a restart resumes with
// no gap. Events a previous process left unacknowledged come back after the
// ack wait; until then the checkpoint stays below them.
func (s *Subscription) Checkpoint() uint64 { return s.trk.checkpoint() }

// AckFloor returns the server's view of the checkpoint: the consumer's
// acknowledgement floor, which a restarted subscription resumes after.
func (s *Subscription) AckFloor(ctx context.Context) (uint64, error) {
	info, err := s.cons.Info(ctx)
	if err != nil {
		return 0, &events.Error{Op: "subscriber.AckFloor", Kind: events.KindUnavailable, Err: err}
	}
	s.trk.serverFloor(info.AckFloor.Stream)
	return info.AckFloor.Stream, nil
}

// Run delivers events to h until ctx ends (then it returns ctx.Err() after
// the handlers in flight have returned) or the subscription cannot go on.
// Run must not be called twice at once on one Subscription.
func (s *Subscription) Run(ctx context.Context, h Handler) error {
	slots := make(chan struct{}, s.cfg.MaxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		// Wait for one free slot, then take every other free one: the
		// fetch asks for no more than can be handled right away, which is
		// the backpressure.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		n := 1
		for n < s.cfg.MaxInFlight && tryAcquire(slots) {
			n++
		}
		s.refresh(ctx)
		// The fetch is not cut short by ctx: messages the server already
		// sent would stay delivered and unacknowledged until the ack wait.
		// What arrives after ctx ended is handed back at once instead.
		batch, err := s.cons.Fetch(n, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			release(slots, n)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &events.Error{Op: "subscriber.Run", Kind: events.KindUnavailable, Err: err}
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil || ctx.Err() != nil {
				if err != nil {
					m.Term() // not a consumer message: nothing to redeliver
				} else {
					m.Nak()
				}
				<-slots
				continue
			}
			// Recorded here, in delivery order, not in the handler's
			// goroutine: a later event finishing first must find the
			// earlier one open, or the checkpoint would skip it.
			s.trk.start(meta.Sequence.Stream)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				s.handle(ctx, m, meta, h)
			}()
		}
		release(slots, n-got)
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &events.Error{Op: "subscriber.Run", Kind: events.KindUnavailable, Err: err}
		}
	}
}

// fetchWait bounds one fetch, and so how long Run takes to notice ctx.
const fetchWait = 500 * time.Millisecond

// refresh reads the server's ack floor while the checkpoint depends on it.
func (s *Subscription) refresh(ctx context.Context) {
	if !s.trk.uncertain() || time.Since(s.lastRefresh) < 250*time.Millisecond {
		return
	}
	s.lastRefresh = time.Now()
	s.AckFloor(ctx)
}

func tryAcquire(slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func release(slots chan struct{}, n int) {
	for range n {
		<-slots
	}
}

// handle runs the handler on one message and settles it: ack on success,
// a delayed redelivery on failure, park and ack after the last attempt.
func (s *Subscription) handle(ctx context.Context, m jetstream.Msg, meta *jetstream.MsgMetadata, h Handler) {
	pos := meta.Sequence.Stream
	if events.IsControlSubject(m.Subject()) {
		s.ack(ctx, m, pos)
		return
	}
	err := s.call(ctx, m, meta, h)
	if err == nil {
		s.ack(ctx, m, pos)
		return
	}
	if ctx.Err() != nil {
		// Stopping, not failing: hand it back now for the next run.
		m.Nak()
		return
	}
	attempts := int(meta.NumDelivered)
	if attempts < s.cfg.MaxAttempts {
		m.NakWithDelay(s.backoff(attempts))
		return
	}
	p, perr := park(ctx, s.js, s.cfg.Name, m, meta, attempts, err)
	if perr != nil {
		// Not durably parked: it must not be acknowledged. Try again later.
		m.NakWithDelay(s.backoff(attempts))
		return
	}
	if s.cfg.OnPark != nil {
		s.cfg.OnPark(p)
	}
	s.ack(ctx, m, pos)
}

// call decodes the event and runs the handler, telling the server the work
// is in progress while it runs so a slow handler is not delivered twice.
func (s *Subscription) call(ctx context.Context, m jetstream.Msg, meta *jetstream.MsgMetadata, h Handler) (err error) {
	e, err := events.Decode(m.Subject(), m.Headers(), m.Data())
	if err != nil {
		return fmt.Errorf("undecodable event: %w", err)
	}
	e.Position, e.RecordedAt = meta.Sequence.Stream, meta.Timestamp
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(s.cfg.AckWait / 2)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				m.InProgress()
			case <-done:
				return
			}
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h(ctx, e)
}

func (s *Subscription) ack(ctx context.Context, m jetstream.Msg, pos uint64) {
	// A confirmed ack: the checkpoint only moves over what the server
	// recorded, so a restart resumes exactly after it.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := m.DoubleAck(actx); err != nil {
		return // the server will deliver it again
	}
	s.trk.done(pos)
}

func (s *Subscription) backoff(attempt int) time.Duration {
	i := min(max(attempt-1, 0), len(s.cfg.Backoff)-1)
	return s.cfg.Backoff[i]
}

func withOp(op string, err error) error {
	var e *events.Error
	if errors.As(err, &e) && e.Op == "" {
		c := *e
		c.Op = op
		return &c
	}
	return err
}

package checkout

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/checkpoint"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/service"
	"github.com/marketledger/ledger/runtime/tracing"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// Config configures the checkout runner.
type Config struct {
	// Store is the log the manager follows from its checkpoint.
	Store events.Store
	// Conn carries the requests to the listing and payment services and
	// the checkpoint bucket.
	Conn *nats.Conn
	// Clock is the decision clock. No step of a checkout is sent for the
	// first time Timeout after its order.placed's business time: the order
	// is rejected or cancelled instead, and compensated. A step already
	// done in time (its idempotency record is in the log) is not undone
	// because the manager came back to it late.
	Clock func() time.Time
	// Timeout is the checkout deadline after placement; 30 s when zero.
	Timeout time.Duration
	// RequestTimeout bounds one request to another service; 5 s when zero.
	RequestTimeout time.Duration
	// ListingSubject, PaymentSubject and OrderSubject are the services'
	// subject prefixes; "svc.ledger.listing", "svc.ledger.payment" and
	// "svc.ledger.order" when empty.
	ListingSubject string
	PaymentSubject string
	OrderSubject   string
	// Bucket and Key name the checkpoint in JetStream KV; "ledger_checkout"
	// and "position" when empty. Two managers with one key share progress.
	Bucket string
	Key    string
	// Replicas of the checkpoint bucket; the LEDGER stream's when zero, so
	// that on a cluster the checkpoint survives the loss of a node as the
	// log does.
	Replicas int
	// Concurrency bounds the checkouts in progress at once; 64 when zero.
	// Steps of one order always run one after another, in log order;
	// orders competing for a listing's last units may reserve them in
	// another order than they were placed.
	Concurrency int
	// OnError, when set, hears why following the log stopped before the
	// manager resumed from its checkpoint (a step that failed, the log or
	// the bucket unreachable), and of every order left as it is because a
	// step of it can never succeed.
	OnError func(error)
}

// Runner runs the checkout: it follows the log, asks Next what to do
// about each event of an order, and sends the steps to the services. It
// drives an order from placement to confirmation: order placed, then stock
// reserved at the listing service, then payment authorized at the payment
// service, then order confirmed at the order service, then payment
// captured. A failed reservation rejects the order; a failed, refused or
// timed-out authorization, or a refused capture, cancels it.
//
// It owns the compensation of every order that ends rejected or cancelled,
// whoever ended it (ADR 0015): the stock held for it is released, its
// payment is voided (before any authorization, the void spends the payment
// id so that a late authorization is refused), and what was captured is
// refunded. Compensation is driven by the log, not by memory: it runs when
// the order's end comes round, and again whenever a reservation, an
// authorization or a capture for an ended order is stored, however late it
// arrives; each of those events is a step of its order.
//
// It is driven by the log: it subscribes to the events it acts on
// (Subjects), and to no other, from a checkpoint in JetStream KV. Orders
// are checked out concurrently (Concurrency at once), the events of one
// order strictly in log order; the checkpoint advances only to a position
// below which every event was fully handled, so a restart handles every
// unfinished order again. Every command it sends
// carries an idempotency key derived from the order id and the step, so
// that handling an order twice never reserves, charges or confirms twice.
type Runner struct {
	cfg  Config
	read *command.Runner // loads the order and payment views; never appends

	flightMu sync.Mutex
	flight   map[uint64]flight // events being handled, by position
	lagNanos atomic.Int64      // delivery delay of the last event delivered
	behind   atomic.Uint64     // the events it still had to deliver after it

	liveMu sync.Mutex
	live   map[string]uint64 // order -> position of its confirmation, seen by a round of this runner

	mu      sync.Mutex
	handled uint64        // the current follow's checkpoint.Tracker position, written or not
	idle    chan struct{} // signalled whenever handled moves
	steps   atomic.Int64
	reads   atomic.Int64
}

// New returns a checkout runner; Run starts it.
func New(cfg Config) *Runner {
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.ListingSubject == "" {
		cfg.ListingSubject = "svc.ledger.listing"
	}
	if cfg.PaymentSubject == "" {
		cfg.PaymentSubject = "svc.ledger.payment"
	}
	if cfg.OrderSubject == "" {
		cfg.OrderSubject = "svc.ledger.order"
	}
	if cfg.Bucket == "" {
		cfg.Bucket = "ledger_checkout"
	}
	if cfg.Key == "" {
		cfg.Key = "position"
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	return &Runner{cfg: cfg, read: &command.Runner{Store: cfg.Store, Codec: contracts.Codec{}}, idle: make(chan struct{}, 1),
		flight: map[uint64]flight{}}
}

// Run follows the log until ctx ends, resuming from the checkpoint after a
// failure of the subscription. It returns ctx's error, or a KindIntegrity
// error at once when the checkpoint is damaged.
func (c *Runner) Run(ctx context.Context) error {
	js, err := jetstream.New(c.cfg.Conn)
	if err != nil {
		return err
	}
	replicas := c.cfg.Replicas
	if replicas == 0 {
		st, err := js.Stream(ctx, events.StreamName)
		if err != nil {
			return &events.Error{Op: "checkout.Run", Kind: events.KindUnavailable, Rule: "stream " + events.StreamName + " not reachable", Err: err}
		}
		replicas = st.CachedInfo().Config.Replicas
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: c.cfg.Bucket, Storage: jetstream.FileStorage,
		Replicas: replicas, History: 1, Description: "the checkout's checkpoint"})
	if err != nil {
		return &events.Error{Op: "checkout.Run", Kind: events.KindUnavailable, Field: c.cfg.Bucket, Err: err}
	}
	for ctx.Err() == nil {
		from, err := c.checkpoint(ctx, kv)
		if err == nil {
			err = c.follow(ctx, kv, from)
		}
		if ctx.Err() != nil {
			break
		}
		if err != nil && c.cfg.OnError != nil {
			c.cfg.OnError(err)
		}
		if events.KindOf(err) == events.KindIntegrity {
			// A damaged checkpoint reads the same however often it is
			// read: stop and say so, rather than guess where to resume.
			return err
		}
		select { // the log or the bucket is unreachable: retry from the checkpoint
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return ctx.Err()
}

func (c *Runner) checkpoint(ctx context.Context, kv jetstream.KeyValue) (uint64, error) {
	e, err := kv.Get(ctx, c.cfg.Key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	where := c.cfg.Bucket + "/" + c.cfg.Key
	if err != nil {
		return 0, &events.Error{Op: "checkout.checkpoint", Kind: events.KindUnavailable, Field: where, Rule: "the checkpoint could not be read", Err: err}
	}
	if len(e.Value()) != 8 {
		return 0, &events.Error{Op: "checkout.checkpoint", Kind: events.KindIntegrity, Field: where,
			Rule: fmt.Sprintf("a checkpoint is a position, 8 bytes big-endian; found %d bytes: repair or delete the key", len(e.Value()))}
	}
	return binary.BigEndian.Uint64(e.Value()), nil
}

// follow handles the log after position from until ctx ends or a step
// fails (returned, for Run to resume from the checkpoint).
func (c *Runner) follow(ctx context.Context, kv jetstream.KeyValue, from uint64) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := checkpoint.New(from)
	committed := make(chan struct{})
	go func() { defer close(committed); c.commit(ctx, kv, w) }()
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, c.cfg.Concurrency)
		mu   sync.Mutex
		last = map[string]chan struct{}{} // per order: its latest step's end
	)
	err := c.cfg.Store.Subscribe(ctx, events.Query{From: from + 1, Subjects: Subjects()}, func(e events.Event) error {
		id, ok := checkoutOrder(e)
		if !ok {
			w.Pass(e.Position)
			c.moved(w)
			return nil
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		done := make(chan struct{})
		mu.Lock()
		prev := last[id]
		last[id] = done
		mu.Unlock()
		w.Start(e.Position)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer func() {
				close(done)
				mu.Lock()
				if last[id] == done {
					delete(last, id)
				}
				mu.Unlock()
			}()
			if prev != nil {
				select {
				case <-prev:
				case <-ctx.Done():
				}
				if ctx.Err() != nil {
					return // the earlier step may not have finished: leave both to the restart
				}
			}
			c.track(e, id)
			defer c.untrack(e.Position)
			sctx, span := tracing.StartConsumer(ctx, "checkout.deliver", &e)
			err := c.step(sctx, e, id)
			span.End(err)
			if err != nil {
				err = fmt.Errorf("checkout: %s of order %s at position %d: %w", e.Type, id, e.Position, err)
				if !permanent(err) {
					cancel(err) // resume from the checkpoint, and try again
					return
				}
				// A step that can never succeed (its command is refused as
				// invalid, or its key was taken by another command) must not
				// hold back every other order: the order is left as it
				// is, for an operator, and said so.
				if c.cfg.OnError != nil {
					c.cfg.OnError(fmt.Errorf("%w; order left as it is, for an operator", err))
				}
			}
			w.Done(e.Position)
			c.moved(w)
		}()
		return nil
	})
	cause := context.Cause(ctx)
	cancel(err)
	wg.Wait()
	<-committed
	// Keep what was finished for the next start; a failure here only means
	// more is handled again, idempotently.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.RequestTimeout)
	defer fcancel()
	if p, ok := w.Advance(); ok {
		_ = c.put(fctx, kv, p)
	}
	if cause != nil {
		return cause
	}
	return err
}

// permanent reports whether a step's error will be the same however often
// the step is tried.
func permanent(err error) bool {
	switch events.KindOf(err) {
	case events.KindDuplicate, events.KindInvalid:
		return true
	}
	return false
}

// stepEvents are the event types the manager acts on: the order's own
// placement and end, and every reservation, authorization and capture made
// for an order, because one that is stored after its order ended must be
// compensated (ADR 0015). The value says whether the order is the event's
// own aggregate; otherwise the event's body names it in order_id.
var stepEvents = map[string]bool{
	"order.placed": true, "order.cancelled": true, "order.rejected": true,
	"listing.stock_reserved": false, "payment.authorized": false, "payment.captured": false,
}

// Subjects returns the subject patterns of the events the manager acts on:
// its subscription's filter, so that the server sends it nothing else.
func Subjects() []string {
	out := make([]string, 0, len(stepEvents))
	for typ := range stepEvents {
		ctx, name, _ := strings.Cut(typ, ".")
		out = append(out, events.SubjectPrefix+ctx+".*."+name)
	}
	slices.Sort(out)
	return out
}

// checkoutOrder returns the order an event is a step of, and whether the
// manager acts on it (see stepEvents).
func checkoutOrder(e events.Event) (string, bool) {
	own, ok := stepEvents[e.Type]
	if !ok {
		return "", false
	}
	if own {
		return e.AggregateID, true
	}
	var v struct {
		OrderID string `json:"order_id"`
	}
	if err := json.Unmarshal(e.Data, &v); err != nil || v.OrderID == "" {
		return "", false // the store checked the body against its contract: never here
	}
	return v.OrderID, true
}

// step runs one event's part of its order's checkout: it asks Next for a
// step, sends it, reloads the order and its payments from the log, and
// asks again, until Next has nothing more to do.
func (c *Runner) step(ctx context.Context, e events.Event, id string) error {
	if e.CorrelationID != "" {
		ctx = withCorrelation(ctx, e.CorrelationID)
	}
	var also string
	if e.Context() == contracts.ServicePayment {
		also = e.AggregateID // an authorization or capture under any payment id is closed
	}
	var deadline time.Time
	if e.Type == "order.placed" {
		deadline = e.OccurredAt.Add(c.cfg.Timeout)
	}
	if c.settled(e, id) {
		return nil
	}
	s := State{Trigger: e.Type}
	loaded := false // s holds the log's state plus what this round's steps did
	for range stepsMax {
		var err error
		if !loaded {
			if s, err = c.load(ctx, s, id, also); err != nil {
				return err
			}
		}
		st, ok := Next(s)
		if !ok {
			return nil
		}
		steps := []Step{st}
		if with, ok := Alongside(s, st); ok {
			steps = append(steps, with)
		}
		ran := make([]ranStep, len(steps))
		errs := make([]error, len(steps))
		var wg sync.WaitGroup
		for i, st := range steps {
			wg.Go(func() {
				rctx, span := tracing.Start(ctx, stepSpans[st.Kind])
				if span.Recording() {
					span.Set(tracing.String("ledger.order", id))
				}
				ran[i].Outcome, ran[i].reply, errs[i] = c.run(rctx, s.Order, st, deadline)
				span.End(errs[i])
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		loaded = true
		for i, st := range steps {
			c.steps.Add(1)
			s = s.After(st, ran[i].Outcome)
			var fwd bool
			s, fwd = forwarded(s, st, ran[i].Outcome, ran[i].reply)
			loaded = loaded && fwd
			if fwd && st.Kind == Confirm && ran[i].reply.FirstPosition > 0 {
				c.noteLive(id, ran[i].reply.FirstPosition)
			}
		}
	}
	return &events.Error{Op: "checkout", Kind: events.KindInvalid, Field: "/order_id",
		Rule: fmt.Sprintf("order %s needed more than %d steps in one round", id, stepsMax)}
}

// forwarded returns s after a step that the service carried out (out is no
// refusal and not late), as its reply says, and true when that is all the
// round needs to go on without reading the log again: a reservation (the
// checkout holds no stock figures), an authorization or capture (the
// payment as the payment service answered), a confirmation (the order
// confirmed with the payment). After any other step (an order ended,
// money or stock given back) the round reads the log again: compensation
// decides from the log, never from memory.
//
// A forward step changes only what the reply shows. Another hand that
// moves the order meanwhile (a buyer's cancellation) is not seen until
// the next read, as it would not be if it landed right after one: the
// services refuse a step the order no longer allows, and the order's end
// is an event of its own whose round compensates whatever was done.
func forwarded(s State, st Step, out Outcome, rep stepReply) (State, bool) {
	if out != (Outcome{}) {
		return s, false
	}
	switch st.Kind {
	case Reserve:
		return s, true
	case Authorize, Capture:
		if rep.Payment.Status != "authorized" && rep.Payment.Status != "captured" {
			return s, false
		}
		p := Payment{ID: st.PaymentID, Status: rep.Payment.Status, Currency: rep.Payment.Currency,
			CapturedMinor: rep.Payment.CapturedMinor, RefundedMinor: rep.Payment.RefundedMinor}
		ps := make([]Payment, 0, len(s.Payments)+1)
		ps = append(ps, p)
		for _, q := range s.Payments {
			if q.ID != p.ID {
				ps = append(ps, q)
			}
		}
		s.Payments = ps
		return s, true
	case Confirm:
		if rep.State.Status != string(StatusConfirmed) || rep.State.PaymentID != st.PaymentID {
			return s, false
		}
		s.Order = EvolveOrder(s.Order, contracts.OrderConfirmed{OrderID: s.Order.ID, PaymentID: st.PaymentID})
		return s, true
	}
	return s, false
}

// liveMax bounds how many orders' confirmations a runner remembers; past
// it, it forgets them all, which only costs reads.
const liveMax = 1 << 16

// noteLive remembers that a round of this runner saw order id confirmed at
// position pos.
func (c *Runner) noteLive(id string, pos uint64) {
	c.liveMu.Lock()
	defer c.liveMu.Unlock()
	if c.live == nil || len(c.live) >= liveMax {
		c.live = make(map[string]uint64)
	}
	c.live[id] = pos
}

// settled reports whether event e of order id needs no round: a
// reservation or an authorization for the order stored before its
// confirmation, which a round of this runner saw. The order was live when
// e was stored, so a round would find nothing to do unless the order ended
// since; and its end, if it comes, is a later event of the log whose own
// round compensates everything stored before it, e included. Any other
// event (the order's own, a capture) is handled as it comes.
func (c *Runner) settled(e events.Event, id string) bool {
	c.liveMu.Lock()
	defer c.liveMu.Unlock()
	at, ok := c.live[id]
	switch {
	case !ok:
		return false
	case stepEvents[e.Type] || e.Position > at:
		// The order's end, or a capture after its confirmation: the
		// checkout is over as far as this runner's memory goes.
		delete(c.live, id)
		return false
	}
	return e.Position < at
}

// stepSpans names the span of each kind of step, made once.
var stepSpans = func() map[Kind]string {
	m := map[Kind]string{}
	for _, k := range []Kind{Reserve, Authorize, Confirm, Capture, Reject, Cancel, Void, Refund, Release} {
		m[k] = "checkout.step " + string(k)
	}
	return m
}()

// stepsMax bounds the steps of one round: a checkout has nine kinds of
// step, each sent at most once per payment.
const stepsMax = 16

// load reads the order and its payments from the log into s.
func (c *Runner) load(ctx context.Context, s State, id, also string) (State, error) {
	c.reads.Add(1)
	o, _, err := command.Load(ctx, c.read, OrderAggregate, id)
	if err != nil {
		return s, err
	}
	s.Order, s.Payments = o, nil
	if o.Status == StatusNone {
		return s, nil
	}
	for _, pid := range []string{o.OwnPayment(), also} {
		if pid == "" || (len(s.Payments) > 0 && s.Payments[0].ID == pid) {
			continue
		}
		c.reads.Add(1)
		p, _, err := command.Load(ctx, c.read, PaymentAggregate, pid)
		if err != nil {
			return s, err
		}
		s.Payments = append(s.Payments, p)
	}
	return s, nil
}

// Steps returns how many steps this runner has sent: what a caller that
// drives the runner (the demo) can check it ran.
func (c *Runner) Steps() int64 { return c.steps.Load() }

// Reads returns how many aggregates this runner has read from the log to
// decide its steps: each a round trip to the log's leader.
func (c *Runner) Reads() int64 { return c.reads.Load() }

// Drain returns once every event in the log when it was called, and every
// event the steps taken for them appended, is handled: what a caller that
// plays a simulated clock calls after each simulated step, so that the
// checkout runs on that clock and the outcome is the same for a seed. Run
// must be running.
//
// The manager subscribes to its own events only (Subjects), so its
// watermark stops at the last of those it was delivered: Drain waits for
// the last event up to the log's end that the manager acts on, not for the
// log's last event, which may be one it is never sent.
func (c *Runner) Drain(ctx context.Context) error {
	head, err := c.lastEvent(ctx)
	for err == nil {
		var step uint64
		if step, err = c.lastStep(ctx, head); err != nil {
			break
		}
		if err = c.waitHandled(ctx, step); err != nil {
			break
		}
		var again uint64
		if again, err = c.lastEvent(ctx); err == nil && again == head {
			return nil
		}
		head = again
	}
	return err
}

// lastStep returns the position of the last event at or before head that
// the manager acts on, reading only the part of the log it has not handled
// yet; 0 when that part holds none.
func (c *Runner) lastStep(ctx context.Context, head uint64) (uint64, error) {
	c.mu.Lock()
	handled := c.handled
	c.mu.Unlock()
	return LastStep(ctx, c.cfg.Store, handled, head)
}

// LastStep returns the position of the last event after position after and
// at or before head that the checkout acts on (see Subjects), or 0 when
// there is none: what a checkpoint or a watermark must reach for the
// checkout to be as far as the log up to head takes it. A checkpoint never
// reaches head itself when the log ends with events the checkout is not
// sent.
func LastStep(ctx context.Context, st events.Store, after, head uint64) (uint64, error) {
	var last uint64
	if after >= head {
		return last, nil
	}
	for e, err := range st.Read(ctx, events.Query{From: after + 1, To: head, Subjects: Subjects()}) {
		if err != nil {
			return 0, err
		}
		last = e.Position
	}
	return last, nil
}

// endOfTime is after every instant a server records an event at, and
// within what a nanosecond clock represents (up to the year 2262): a later
// instant is not understood by the server, and finds nothing.
var endOfTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// lastEvent returns the position of the log's last event. It is not the
// stream's last message when a store's own record (an idempotency record,
// a policy fence) follows the event: those are never delivered to a
// follower, so the watermark never reaches them.
func (c *Runner) lastEvent(ctx context.Context) (uint64, error) {
	return c.cfg.Store.PositionAt(ctx, endOfTime)
}

func (c *Runner) waitHandled(ctx context.Context, p uint64) error {
	for {
		c.mu.Lock()
		h := c.handled
		c.mu.Unlock()
		if h >= p {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.idle:
		}
	}
}

// moved records the position of the follow in progress for Drain.
func (c *Runner) moved(w *checkpoint.Tracker) {
	p := w.Checkpoint()
	c.mu.Lock()
	if p > c.handled {
		c.handled = p
	}
	c.mu.Unlock()
	select {
	case c.idle <- struct{}{}:
	default:
	}
}

// checkpointEvery is the least time between two checkpoint writes: each is
// a synced write to the server, and a checkpoint that lags by a moment only
// means a moment more of idempotent steps handled again after a restart.
const checkpointEvery = 100 * time.Millisecond

// commit writes the tracker's position to the checkpoint whenever it
// advances, at most every checkpointEvery, coalescing the advances made in
// between.
func (c *Runner) commit(ctx context.Context, kv jetstream.KeyValue, w *checkpoint.Tracker) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.Moved():
		}
		p, ok := w.Advance()
		if !ok {
			continue
		}
		err := c.put(ctx, kv, p)
		// After a write, wait a moment before the next; after a failure
		// (the bucket unreachable) as well, then hand p out again.
		select {
		case <-ctx.Done():
			return
		case <-time.After(checkpointEvery):
		}
		if err != nil {
			w.Retreat(p)
		}
	}
}

func (c *Runner) put(ctx context.Context, kv jetstream.KeyValue, p uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], p)
	_, err := kv.Put(ctx, c.cfg.Key, b[:])
	return err
}

// StepKey is the idempotency key of one checkout step of an order. A long
// order id is hashed so that the key stays within the contract's 128
// characters.
func StepKey(orderID, step string) string {
	k := "checkout:" + orderID + ":" + step
	if len(k) <= 128 {
		return k
	}
	sum := sha256.Sum256([]byte(orderID))
	return "checkout:" + hex.EncodeToString(sum[:16]) + ":" + step
}

// stepReply is the part of a service's reply the manager reads: where the
// step's events went, and the order's or the payment's state after it.
type stepReply struct {
	FirstPosition uint64 `json:"first_position"`
	// State is the order service's (and the listing's) answer.
	State struct {
		Status    string `json:"status"`
		PaymentID string `json:"payment_id"`
	} `json:"state"`
	// Payment is the payment service's answer.
	Payment struct {
		Status        string `json:"status"`
		Currency      string `json:"currency"`
		CapturedMinor int64  `json:"captured_minor"`
		RefundedMinor int64  `json:"refunded_minor"`
	} `json:"payment"`
}

// ErrDeadline is returned by a step whose checkout deadline passed before
// it got an answer.
var ErrDeadline = errors.New("checkout: deadline passed")

// Refused is a definitive refusal (a 4xx micro error) from another service.
type Refused struct {
	Code    string
	Problem service.Problem
}

func (r *Refused) Error() string { return "refused " + r.Code + ": " + r.Problem.Detail }

// Unwrap returns the refusal as the ledger's error, of the kind its problem
// type names, so that events.KindOf tells a taken key from a conflict.
func (r *Refused) Unwrap() error { return r.Problem.Err("checkout") }

// send is call for a step of the checkout that is bounded by its business
// deadline. Once the deadline has passed, the step is looked up in the log
// (the idempotency record of its key on the aggregate it goes to): a step
// that was done in time is sent again, to get its first result back; one
// that was not is not sent, and ErrDeadline is returned. A store that
// cannot look a key up gives ErrDeadline, and the order's compensation
// undoes whatever was done, from the log.
func (c *Runner) send(ctx context.Context, subject string, deadline time.Time, ref events.AggregateRef, cmd, out any) error {
	if !deadline.IsZero() && !c.cfg.Clock().Before(deadline) {
		done, err := c.done(ctx, ref, cmd)
		if err != nil {
			return err
		}
		if !done {
			return ErrDeadline
		}
		deadline = time.Time{}
	}
	return c.call(ctx, subject, deadline, cmd, out)
}

// done reports whether the log holds the result of cmd under its
// idempotency key on ref.
func (c *Runner) done(ctx context.Context, ref events.AggregateRef, cmd any) (bool, error) {
	lk, ok := c.cfg.Store.(events.IdempotencyLookup)
	if !ok {
		return false, nil
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return false, err
	}
	var k struct {
		Key string `json:"idempotency_key"`
	}
	if err := json.Unmarshal(body, &k); err != nil || k.Key == "" {
		return false, err
	}
	digest, err := command.Digest(cmd) // as the service that decided it binds the key
	if err != nil {
		return false, err
	}
	_, found, err := lk.LookupIdempotency(ctx, ref, k.Key, digest)
	if events.KindOf(err) == events.KindDuplicate {
		return false, nil // the key was taken by another command: this step was not done
	}
	return found, err
}

// call sends one command and decodes the reply into out. It retries what
// may be transient (no responder, timeout, 5xx) with the same body, hence
// the same idempotency key, until the business deadline (zero: none) or
// ctx ends; a 4xx answer is returned at once as a *Refused.
func (c *Runner) call(ctx context.Context, subject string, deadline time.Time, cmd, out any) error {
	corr := correlation(ctx)
	body, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	backoff := 20 * time.Millisecond
	for {
		if !deadline.IsZero() && !c.cfg.Clock().Before(deadline) {
			return ErrDeadline
		}
		m := nats.NewMsg(subject)
		m.Data = body
		if corr != "" {
			m.Header.Set("Ledger-Correlation-Id", corr)
		}
		tracing.Inject(ctx, m.Header)
		rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		resp, err := c.cfg.Conn.RequestMsgWithContext(rctx, m)
		cancel()
		if err == nil {
			if done, err := decodeReply(resp, out); done {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// transient reports a refusal that says nothing about the step, only about
// the moment: other writers of the aggregate won every attempt, or it moved
// under the decision. The step is sent again (same key), never taken as the
// checkout's outcome: an order fails for want of stock or by a rule, not
// because other buyers were busy.
func transient(r events.Reason) bool {
	return r == events.ReasonContention || r == events.ReasonStaleVersion || r == events.ReasonPolicyMoved
}

// decodeReply reports whether resp is an answer (done) and its error.
func decodeReply(resp *nats.Msg, out any) (done bool, err error) {
	code := resp.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		if out == nil {
			return true, nil
		}
		return true, json.Unmarshal(resp.Data, out)
	}
	var p service.Problem
	_ = json.Unmarshal(resp.Data, &p)
	if p.Status == 0 {
		p.Status, _ = strconv.Atoi(code[:min(3, len(code))])
		p.Detail = resp.Header.Get(micro.ErrorHeader)
	}
	if p.Status >= 500 || p.Status < 400 || transient(events.Reason(p.Reason)) {
		return false, nil
	}
	return true, &Refused{Code: code, Problem: p}
}

type correlationKey struct{}

func withCorrelation(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

func correlation(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}

// run sends one step of order o and returns its outcome. A refusal is an
// outcome, not an error, except where money would be left behind (a
// refund refused) or the step can never succeed (its key taken).
func (c *Runner) run(ctx context.Context, o Order, st Step, deadline time.Time) (Outcome, stepReply, error) {
	out, err := c.run1(ctx, o, st, deadline)
	return out.Outcome, out.reply, err
}

type ranStep struct {
	Outcome
	reply stepReply
}

func (c *Runner) run1(ctx context.Context, o Order, st Step, deadline time.Time) (ranStep, error) {
	if !st.Deadline {
		deadline = time.Time{}
	}
	subject, ref, cmd := c.command(o, st)
	var rep stepReply
	err := c.send(ctx, subject, deadline, ref, cmd, &rep)
	var refused *Refused
	switch {
	case errors.Is(err, ErrDeadline):
		return ranStep{Outcome: Outcome{Late: true}}, nil
	case errors.As(err, &refused) && permanent(err):
		return ranStep{}, err
	case errors.As(err, &refused) && st.Kind == Refund:
		return ranStep{}, &events.Error{Op: "checkout.refund", Kind: events.KindConflict, Field: "/payment_id",
			Rule: fmt.Sprintf("refund of what was captured for ended order %s refused: %s", o.ID, refused.Problem.Detail)}
	case errors.As(err, &refused):
		return ranStep{Outcome: Outcome{Refused: refused.Problem.Detail}}, nil
	case err != nil:
		return ranStep{}, err
	}
	if (st.Kind == Authorize || st.Kind == Capture) && rep.Payment.Status != "authorized" && rep.Payment.Status != "captured" {
		return ranStep{Outcome: Outcome{Refused: fmt.Sprintf("payment not authorized (status %q)", rep.Payment.Status)}}, nil
	}
	return ranStep{reply: rep}, nil
}

// command returns the subject, aggregate, body and reply of a step.
func (c *Runner) command(o Order, st Step) (string, events.AggregateRef, any) {
	listing := events.AggregateRef{Context: contracts.ServiceListing, ID: o.ListingID}
	pay := events.AggregateRef{Context: contracts.ServicePayment, ID: st.PaymentID}
	order := events.AggregateRef{Context: contracts.ServiceOrder, ID: o.ID}
	reason := "order " + string(o.Status)
	switch st.Kind {
	case Reserve:
		return c.cfg.ListingSubject + ".reserve_stock", listing, contracts.ReserveStock{ListingID: o.ListingID, OrderID: o.ID,
			Quantity: o.Quantity, IdempotencyKey: StepKey(o.ID, "reserve")}
	case Authorize:
		return c.cfg.PaymentSubject + ".authorize", pay, contracts.AuthorizePayment{PaymentID: st.PaymentID, OrderID: o.ID,
			BuyerID: o.BuyerID, SellerID: o.SellerID, Channel: o.Channel, Jurisdiction: o.Jurisdiction, Category: o.Category,
			Amount: o.Total, IdempotencyKey: StepKey(o.ID, "authorize")}
	case Confirm:
		return c.cfg.OrderSubject + ".confirm", order, contracts.ConfirmOrder{OrderID: o.ID, PaymentID: st.PaymentID,
			IdempotencyKey: StepKey(o.ID, "confirm")}
	case Capture:
		return c.cfg.PaymentSubject + ".capture", pay, contracts.CapturePayment{PaymentID: st.PaymentID,
			IdempotencyKey: StepKey(o.ID, "capture")}
	case Reject:
		return c.cfg.OrderSubject + ".reject", order, contracts.RejectOrder{OrderID: o.ID, Reason: st.Reason,
			IdempotencyKey: StepKey(o.ID, "reject")}
	case Cancel:
		return c.cfg.OrderSubject + ".cancel", order, contracts.CancelOrder{OrderID: o.ID, Reason: st.Reason,
			IdempotencyKey: StepKey(o.ID, "cancel")}
	case Void:
		return c.cfg.PaymentSubject + ".void", pay, contracts.VoidPayment{PaymentID: st.PaymentID, Reason: reason,
			IdempotencyKey: paymentStepKey(o, st.PaymentID, "void")}
	case Refund:
		return c.cfg.PaymentSubject + ".refund", pay, c.refund(o, st.PaymentID, reason)
	}
	return c.cfg.ListingSubject + ".release_stock", listing, contracts.ReleaseStock{ListingID: o.ListingID, OrderID: o.ID,
		Quantity: o.Quantity, Reason: reason, IdempotencyKey: StepKey(o.ID, "release")}
}

// refund is the refund of what was captured under payment pid and not
// refunded, as the log has it when the step is decided.
func (c *Runner) refund(o Order, pid, reason string) contracts.RefundPayment {
	p, _, _ := command.Load(context.Background(), c.read, PaymentAggregate, pid) // cached: just loaded by the round
	return contracts.RefundPayment{PaymentID: pid, RefundID: "checkout-" + string(o.Status),
		Amount: contracts.Money{AmountMinor: p.RefundableMinor(), Currency: p.Currency}, Reason: reason,
		IdempotencyKey: paymentStepKey(o, pid, "refund")}
}

// paymentStepKey is the idempotency key of a compensation step on payment
// pid of order o: the step's own key for the order's payment, and one
// bound to pid for another payment, so that each is closed once.
func paymentStepKey(o Order, pid, step string) string {
	if pid == o.OwnPayment() {
		return StepKey(o.ID, step)
	}
	sum := sha256.Sum256([]byte(pid))
	return StepKey(o.ID, step+"-"+hex.EncodeToString(sum[:8]))
}

// flight is an event being handled: its order and when it was delivered.
type flight struct {
	order string
	since time.Time
}

func (c *Runner) track(e events.Event, order string) {
	now := time.Now()
	if !e.RecordedAt.IsZero() {
		c.lagNanos.Store(int64(now.Sub(e.RecordedAt)))
	}
	c.behind.Store(e.Behind)
	c.flightMu.Lock()
	c.flight[e.Position] = flight{order: order, since: now}
	c.flightMu.Unlock()
}

func (c *Runner) untrack(pos uint64) {
	c.flightMu.Lock()
	delete(c.flight, pos)
	c.flightMu.Unlock()
}

// Progress is what the runner is doing, for an operator's metrics.
type Progress struct {
	// InFlight counts the orders with a step event being handled (or
	// waiting behind an earlier step of the same order).
	InFlight int
	// Stuck counts those of them handled for longer than the checkout's
	// Timeout: a service that does not answer, or a step retried without
	// end.
	Stuck int
	// Lag is how long after the log recorded it the last step event was
	// delivered (measured on this host's clock).
	Lag time.Duration
	// Behind is how many step events the log held after the last one
	// delivered, when it was delivered: the follower's lag in events.
	Behind uint64
}

// Progress returns what the runner is doing now.
func (c *Runner) Progress() Progress {
	now := time.Now()
	oldest := map[string]time.Time{}
	c.flightMu.Lock()
	for _, f := range c.flight {
		if t, ok := oldest[f.order]; !ok || f.since.Before(t) {
			oldest[f.order] = f.since
		}
	}
	c.flightMu.Unlock()
	p := Progress{InFlight: len(oldest), Lag: time.Duration(c.lagNanos.Load()), Behind: c.behind.Load()}
	for _, since := range oldest {
		if now.Sub(since) > c.cfg.Timeout {
			p.Stuck++
		}
	}
	return p
}

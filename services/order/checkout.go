package order

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/events/command"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// CheckoutConfig configures the checkout process manager.
type CheckoutConfig struct {
	// Store is the log the manager follows from its checkpoint.
	Store events.Store
	// Conn carries the requests to the listing and payment services and
	// the checkpoint bucket.
	Conn *nats.Conn
	// Orders decides the order commands the manager sends itself.
	Orders *Service
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
	// ListingSubject and PaymentSubject are the services' subject prefixes;
	// "svc.ledger.listing" and "svc.ledger.payment" when empty.
	ListingSubject string
	PaymentSubject string
	// Bucket and Key name the checkpoint in JetStream KV; "ledger_checkout"
	// and "position" when empty. Two managers with one key share progress.
	Bucket string
	Key    string
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

// Checkout is the process manager that drives an order from placement to
// confirmation: order placed, then stock reserved at the listing service,
// then payment authorized at the payment service, then order confirmed. A
// failed reservation rejects the order; a failed, refused or timed-out
// authorization cancels it.
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
// It is driven by the log: it follows every event from a checkpoint in
// JetStream KV. Orders are checked out concurrently (Concurrency at once),
// the events of one order strictly in log order; the checkpoint advances
// only to a position below which every event was fully handled, so a
// restart handles every unfinished order again. Every command it sends
// carries an idempotency key derived from the order id and the step, so
// that handling an order twice never reserves, charges or confirms twice.
type Checkout struct {
	cfg CheckoutConfig
}

// NewCheckout returns a process manager; Run starts it.
func NewCheckout(cfg CheckoutConfig) *Checkout {
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
	if cfg.Bucket == "" {
		cfg.Bucket = "ledger_checkout"
	}
	if cfg.Key == "" {
		cfg.Key = "position"
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	return &Checkout{cfg: cfg}
}

// Run follows the log until ctx ends, resuming from the checkpoint after a
// failure of the subscription. It returns ctx's error.
func (c *Checkout) Run(ctx context.Context) error {
	js, err := jetstream.New(c.cfg.Conn)
	if err != nil {
		return err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: c.cfg.Bucket, Storage: jetstream.FileStorage})
	if err != nil {
		return err
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
		select { // the log or the bucket is unreachable: retry from the checkpoint
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return ctx.Err()
}

func (c *Checkout) checkpoint(ctx context.Context, kv jetstream.KeyValue) (uint64, error) {
	e, err := kv.Get(ctx, c.cfg.Key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil || len(e.Value()) != 8 {
		return 0, fmt.Errorf("checkout: checkpoint: %v", err)
	}
	return binary.BigEndian.Uint64(e.Value()), nil
}

// follow handles the log after position from until ctx ends or a step
// fails (returned, for Run to resume from the checkpoint).
func (c *Checkout) follow(ctx context.Context, kv jetstream.KeyValue, from uint64) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := newWatermark(from)
	committed := make(chan struct{})
	go func() { defer close(committed); c.commit(ctx, kv, w) }()
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, c.cfg.Concurrency)
		mu   sync.Mutex
		last = map[string]chan struct{}{} // per order: its latest step's end
	)
	err := c.cfg.Store.Subscribe(ctx, from+1, func(e events.Event) error {
		id, ok := checkoutOrder(e)
		if !ok {
			w.pass(e.Position)
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
		w.start(e.Position)
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
			if err := c.step(ctx, e, id); err != nil {
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
			w.finish(e.Position)
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
	if p, ok := w.advance(); ok {
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

// checkoutOrder returns the order an event is a step of, and whether the
// manager acts on it: the order's own placement and end, and every
// reservation, authorization and capture made for an order, because one
// that is stored after its order ended must be compensated (ADR 0015).
func checkoutOrder(e events.Event) (string, bool) {
	switch e.Type {
	case "order.placed", "order.cancelled", "order.rejected":
		return e.AggregateID, true
	case "listing.stock_reserved", "payment.authorized", "payment.captured":
	default:
		return "", false
	}
	var v struct {
		OrderID string `json:"order_id"`
	}
	if err := json.Unmarshal(e.Data, &v); err != nil || v.OrderID == "" {
		return "", false // the store checked the body against its contract: never here
	}
	return v.OrderID, true
}

// step runs one event's part of its order's checkout.
func (c *Checkout) step(ctx context.Context, e events.Event, id string) error {
	if e.Type == "order.placed" {
		return c.placed(ctx, e)
	}
	var pay string
	if e.Context() == contracts.ServicePayment {
		pay = e.AggregateID // an authorization or capture under any payment id is closed
	}
	return c.compensate(ctx, id, pay)
}

// checkpointEvery is the least time between two checkpoint writes: each is
// a synced write to the server, and a checkpoint that lags by a moment only
// means a moment more of idempotent steps handled again after a restart.
const checkpointEvery = 100 * time.Millisecond

// commit writes the watermark to the checkpoint whenever it advances, at
// most every checkpointEvery, coalescing the advances made in between.
func (c *Checkout) commit(ctx context.Context, kv jetstream.KeyValue, w *watermark) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.moved:
		}
		p, ok := w.advance()
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
			w.retreat(p)
		}
	}
}

func (c *Checkout) put(ctx context.Context, kv jetstream.KeyValue, p uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], p)
	_, err := kv.Put(ctx, c.cfg.Key, b[:])
	return err
}

// watermark is the highest position below which every event of the log is
// handled: the events in progress hold it back.
type watermark struct {
	mu       sync.Mutex
	seen     uint64          // last position delivered
	inFlight map[uint64]bool // positions started and not finished
	written  uint64          // last position handed out by advance
	moved    chan struct{}   // signalled when the watermark may have moved
}

func newWatermark(from uint64) *watermark {
	return &watermark{seen: from, written: from, inFlight: map[uint64]bool{}, moved: make(chan struct{}, 1)}
}

func (w *watermark) signal() {
	select {
	case w.moved <- struct{}{}:
	default:
	}
}

// pass marks a position that needs no handling.
func (w *watermark) pass(p uint64) {
	w.mu.Lock()
	w.seen = p
	w.mu.Unlock()
	w.signal()
}

func (w *watermark) start(p uint64) {
	w.mu.Lock()
	w.seen = p
	w.inFlight[p] = true
	w.mu.Unlock()
}

func (w *watermark) finish(p uint64) {
	w.mu.Lock()
	delete(w.inFlight, p)
	w.mu.Unlock()
	w.signal()
}

// advance returns the watermark if it moved past what it last returned.
func (w *watermark) advance() (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	mark := w.seen
	for p := range w.inFlight {
		mark = min(mark, p-1)
	}
	if mark <= w.written {
		return 0, false
	}
	w.written = mark
	return mark, true
}

// retreat forgets that p was handed out, after writing it failed.
func (w *watermark) retreat(p uint64) {
	w.mu.Lock()
	if w.written == p {
		w.written = 0
	}
	w.mu.Unlock()
	w.signal()
}

// placed drives one order through its checkout.
func (c *Checkout) placed(ctx context.Context, e events.Event) error {
	o, _, err := c.cfg.Orders.Load(ctx, e.AggregateID)
	if err != nil {
		return err
	}
	if o.Status != StatusPlaced {
		return nil // handled before a restart
	}
	ctx = WithCorrelationID(ctx, e.CorrelationID)
	deadline := e.OccurredAt.Add(c.cfg.Timeout)
	err = c.send(ctx, c.cfg.ListingSubject+".reserve_stock", e.CorrelationID, deadline,
		events.AggregateRef{Context: contracts.ServiceListing, ID: o.ListingID}, contracts.ReserveStock{
			ListingID: o.ListingID, OrderID: o.ID, Quantity: o.Quantity, IdempotencyKey: StepKey(o.ID, "reserve")}, nil)
	var refused *Refused
	switch {
	case errors.As(err, &refused):
		return c.reject(ctx, o.ID, "stock not reserved: "+refused.Problem.Detail)
	case errors.Is(err, ErrDeadline):
		return c.reject(ctx, o.ID, "checkout timed out before the stock was reserved")
	case err != nil:
		return err
	}
	return c.pay(ctx, o, e.CorrelationID, deadline)
}

// pay authorizes the order's total and confirms the order, or cancels it.
func (c *Checkout) pay(ctx context.Context, o Order, corr string, deadline time.Time) error {
	var r paymentReply
	err := c.send(ctx, c.cfg.PaymentSubject+".authorize", corr, deadline,
		events.AggregateRef{Context: contracts.ServicePayment, ID: PaymentID(o.ID)}, contracts.AuthorizePayment{
			PaymentID: PaymentID(o.ID), OrderID: o.ID, BuyerID: o.BuyerID, SellerID: o.SellerID, Channel: o.Channel,
			Jurisdiction: o.Jurisdiction, Category: o.Category, Amount: o.Total, IdempotencyKey: StepKey(o.ID, "authorize")}, &r)
	var refused *Refused
	switch {
	case errors.As(err, &refused):
		return c.cancel(ctx, o, "payment refused: "+refused.Problem.Detail)
	case errors.Is(err, ErrDeadline):
		return c.cancel(ctx, o, "checkout timed out waiting for the payment authorization")
	case err != nil:
		return err
	case r.Payment.Status != "authorized" && r.Payment.Status != "captured":
		return c.cancel(ctx, o, fmt.Sprintf("payment not authorized (status %q)", r.Payment.Status))
	}
	_, err = c.cfg.Orders.Confirm(ctx, contracts.ConfirmOrder{OrderID: o.ID, PaymentID: PaymentID(o.ID),
		IdempotencyKey: StepKey(o.ID, "confirm")})
	if events.KindOf(err) == events.KindConflict {
		now, _, lerr := c.cfg.Orders.Load(ctx, o.ID)
		if lerr != nil {
			return lerr
		}
		if now.Ended() {
			// Cancelled by the buyer while the payment was being
			// authorized: the authorization must not outlive the order.
			return c.compensate(ctx, o.ID)
		}
		if now.Status != StatusPlaced {
			return nil // confirmed (and on) by another hand: the checkout is done
		}
	}
	return err
}

// reject ends an order whose stock could not be reserved, then compensates
// it at once: a reservation or an authorization may have been made although
// its answer never came (a timeout, a restart past the deadline).
func (c *Checkout) reject(ctx context.Context, id, reason string) error {
	_, err := c.cfg.Orders.Reject(ctx, contracts.RejectOrder{OrderID: id, Reason: reason, IdempotencyKey: StepKey(id, "reject")})
	if err = ignoreKinds(err, events.KindConflict); err != nil {
		return err
	}
	return c.compensate(ctx, id)
}

// cancel ends an order whose payment failed, then compensates it at once.
func (c *Checkout) cancel(ctx context.Context, o Order, reason string) error {
	_, err := c.cfg.Orders.Cancel(ctx, contracts.CancelOrder{OrderID: o.ID, Reason: reason, IdempotencyKey: StepKey(o.ID, "cancel")})
	if err = ignoreKinds(err, events.KindConflict); err != nil {
		return err
	}
	return c.compensate(ctx, o.ID)
}

// compensate leaves nothing held for an order that ended rejected or
// cancelled: it closes its payment (void, or refund what was captured),
// then releases its stock. It does nothing for a live order. Every
// command it sends is idempotent and looked up in the log first, so it
// may run any number of times; it has no deadline: compensation must
// finish, however late.
//
// The payments closed are the order's own (the one it was confirmed with,
// or the checkout's PaymentID) and also, when given, the payment whose
// event made this step: an authorization made for the order under another
// id is closed as well.
func (c *Checkout) compensate(ctx context.Context, id string, also ...string) error {
	o, _, err := c.cfg.Orders.Load(ctx, id)
	if err != nil || !o.Ended() || o.ListingID == "" {
		return err
	}
	reason := "order " + string(o.Status)
	pids := []string{ownPayment(o)}
	for _, p := range also {
		if p != "" && p != pids[0] {
			pids = append(pids, p)
		}
	}
	for _, pid := range pids {
		if err := c.closePayment(ctx, o, pid, reason); err != nil {
			return err
		}
	}
	return c.release(ctx, o, reason)
}

// ownPayment is the order's payment: the one it was confirmed with, or the
// checkout's.
func ownPayment(o Order) string {
	if o.PaymentID != "" {
		return o.PaymentID
	}
	return PaymentID(o.ID)
}

// paymentStepKey is the idempotency key of a compensation step on payment
// pid of order o: the step's own key for the order's payment, and one
// bound to pid for another payment, so that each is closed once.
func paymentStepKey(o Order, pid, step string) string {
	if pid == ownPayment(o) {
		return StepKey(o.ID, step)
	}
	sum := sha256.Sum256([]byte(pid))
	return StepKey(o.ID, step+"-"+hex.EncodeToString(sum[:8]))
}

// release gives back the units held for an ended order. A refusal means
// none are held now; a reservation stored later is a step of the order
// and comes back here.
func (c *Checkout) release(ctx context.Context, o Order, reason string) error {
	err := c.call(ctx, c.cfg.ListingSubject+".release_stock", "", time.Time{}, contracts.ReleaseStock{ListingID: o.ListingID,
		OrderID: o.ID, Quantity: o.Quantity, Reason: reason, IdempotencyKey: StepKey(o.ID, "release")}, nil)
	var refused *Refused
	if errors.As(err, &refused) {
		return nil
	}
	return err
}

// closePayment voids the ended order's payment while it is open, and
// refunds what was captured. What the payment is, is read from the log,
// never guessed from what this manager remembers sending.
func (c *Checkout) closePayment(ctx context.Context, o Order, pid, reason string) error {
	p, err := c.cfg.Orders.LoadPayment(ctx, pid)
	if err != nil {
		return err
	}
	if p.Open() {
		err := c.call(ctx, c.cfg.PaymentSubject+".void", o.ID, time.Time{}, contracts.VoidPayment{PaymentID: pid,
			Reason: reason, IdempotencyKey: paymentStepKey(o, pid, "void")}, nil)
		var refused *Refused
		if !errors.As(err, &refused) {
			return err
		}
		// Captured in the meantime: read what is to be refunded.
		if p, err = c.cfg.Orders.LoadPayment(ctx, pid); err != nil {
			return err
		}
	}
	if p.Status != "captured" || p.RefundableMinor() <= 0 {
		return nil
	}
	err = c.call(ctx, c.cfg.PaymentSubject+".refund", o.ID, time.Time{}, contracts.RefundPayment{PaymentID: pid,
		RefundID: "checkout-" + string(o.Status), Amount: contracts.Money{AmountMinor: p.RefundableMinor(), Currency: p.Currency},
		Reason: reason, IdempotencyKey: paymentStepKey(o, pid, "refund")}, nil)
	var refused *Refused
	if errors.As(err, &refused) {
		return &events.Error{Op: "checkout.refund", Kind: events.KindConflict, Field: "/payment_id",
			Rule: fmt.Sprintf("refund of the %d captured for ended order %s refused: %s", p.RefundableMinor(), o.ID, refused.Problem.Detail)}
	}
	return err
}

func ignoreKinds(err error, kinds ...events.Kind) error {
	for _, k := range kinds {
		if events.KindOf(err) == k {
			return nil
		}
	}
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

// PaymentID is the id of the one payment of an order's checkout. It is the
// order id: payments and orders are aggregates of different contexts, and a
// derived id makes the authorization idempotent across restarts.
func PaymentID(orderID string) string { return orderID }

// paymentReply is the part of the payment service's reply the manager reads.
type paymentReply struct {
	Payment struct {
		Status string `json:"status"`
	} `json:"payment"`
}

// ErrDeadline is returned by a step whose checkout deadline passed before
// it got an answer.
var ErrDeadline = errors.New("checkout: deadline passed")

// Refused is a definitive refusal (a 4xx micro error) from another service.
type Refused struct {
	Code    string
	Problem Problem
}

func (r *Refused) Error() string { return "refused " + r.Code + ": " + r.Problem.Detail }

// send is call for a step of the checkout that is bounded by its business
// deadline. Once the deadline has passed, the step is looked up in the log
// (the idempotency record of its key on the aggregate it goes to): a step
// that was done in time is sent again, to get its first result back; one
// that was not is not sent, and ErrDeadline is returned. A store that
// cannot look a key up gives ErrDeadline, and the order's compensation
// undoes whatever was done, from the log.
func (c *Checkout) send(ctx context.Context, subject, corr string, deadline time.Time, ref events.AggregateRef, cmd, out any) error {
	if !c.cfg.Clock().Before(deadline) {
		done, err := c.done(ctx, ref, cmd)
		if err != nil {
			return err
		}
		if !done {
			return ErrDeadline
		}
		deadline = time.Time{}
	}
	return c.call(ctx, subject, corr, deadline, cmd, out)
}

// done reports whether the log holds the result of cmd under its
// idempotency key on ref.
func (c *Checkout) done(ctx context.Context, ref events.AggregateRef, cmd any) (bool, error) {
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
func (c *Checkout) call(ctx context.Context, subject, corr string, deadline time.Time, cmd, out any) error {
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

// decodeReply reports whether resp is an answer (done) and its error.
func decodeReply(resp *nats.Msg, out any) (done bool, err error) {
	code := resp.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		if out == nil {
			return true, nil
		}
		return true, json.Unmarshal(resp.Data, out)
	}
	var p Problem
	_ = json.Unmarshal(resp.Data, &p)
	if p.Status == 0 {
		p.Status, _ = strconv.Atoi(code[:min(3, len(code))])
		p.Detail = resp.Header.Get(micro.ErrorHeader)
	}
	if p.Status >= 500 || p.Status < 400 {
		return false, nil
	}
	return true, &Refused{Code: code, Problem: p}
}

package subscriber

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// MaxKVWrites bounds the writes one event's effect may ask for: they and the
// mark go in one atomic batch, and the server refuses batches of more than
// 1,000 messages by default.
const MaxKVWrites = 500

// HandledKeyPrefix starts the keys of the marks an AtomicKV writes into its
// bucket ("_handled.<subscription>.<event id>"); a handler's own writes must
// not use it.
const HandledKeyPrefix = "_handled."

// commitTimeout bounds one atomic commit of an effect and its mark. The
// commit is not cut short when the subscription stops: the handler's work is
// done, and storing it now saves running it again.
const commitTimeout = 10 * time.Second

// KVWrite is one write of a key-value bucket that a KVHandler asks for.
type KVWrite struct {
	// Key is the key written; it must not start with HandledKeyPrefix.
	Key string
	// Value is the new value (ignored when Delete is set).
	Value []byte
	// Delete deletes the key instead of writing a value.
	Delete bool
	// IfRevision makes the write conditional, as KeyValue.Update is: it is
	// stored only if the key's latest revision is still Revision (0: the key
	// has never been written). A handler that computed the value from what
	// it read sets it, so that a concurrent writer makes the whole effect
	// fail and run again on fresh values instead of being overwritten.
	IfRevision bool
	Revision   uint64
}

// KVHandler computes the effect of one event as writes to the AtomicKV's
// bucket, and must have no other effect: it may run more than once for one
// event (after a crash, or when a write's revision check fails), but the
// writes it returns are stored at most once, together with the event's mark.
// Returning an error stores nothing and redelivers the event, as for a
// Handler.
type KVHandler func(ctx context.Context, e events.Event) ([]KVWrite, error)

// AtomicKV gives effectively-once handling to a handler whose whole effect is
// writes to one JetStream key-value bucket: the writes and the mark "event
// handled by this subscription" are published as one atomic batch on the
// bucket's stream, the mark carrying the check "no mark yet". So either the
// effect and the mark are both stored or neither is; a stop, a crash or a
// lost connection at any point can make the handler run again, but its
// writes are stored exactly once. Dedupe cannot promise that, because there
// the handler's effect and the mark are two writes.
//
// Concurrency contract: safe for concurrent use. Two deliveries of the same
// event handled at once both run the handler; one batch is stored and the
// other is refused by its mark's check, and is acknowledged as handled.
//
// Marks are kept for good (one small key per handled event), so that a
// redelivery however late finds them.
type AtomicKV struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	name   string // the subscription's name, part of every mark key
	prefix string // the subject of key k is prefix + k
}

// NewAtomicKV returns an AtomicKV writing effects and the marks of
// subscription name into kv. It turns on atomic batches on the bucket's
// stream when they are off (a stream update, which keeps every value).
func NewAtomicKV(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, name string) (*AtomicKV, error) {
	const op = "subscriber.NewAtomicKV"
	if err := ValidateName(name); err != nil {
		return nil, withOp(op, err)
	}
	st, err := js.Stream(ctx, "KV_"+kv.Bucket())
	if err != nil {
		return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Rule: "bucket " + kv.Bucket(), Err: err}
	}
	cfg := st.CachedInfo().Config
	if len(cfg.Subjects) != 1 || !strings.HasSuffix(cfg.Subjects[0], ".>") {
		return nil, &events.Error{Op: op, Kind: events.KindInvalid, Field: "bucket",
			Rule: fmt.Sprintf("must be a plain key-value bucket with one subject, got %v", cfg.Subjects)}
	}
	if !cfg.AllowAtomicPublish {
		cfg.AllowAtomicPublish = true
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Rule: "atomic batches on bucket " + kv.Bucket(), Err: err}
		}
	}
	return &AtomicKV{js: js, kv: kv, name: name, prefix: strings.TrimSuffix(cfg.Subjects[0], ">")}, nil
}

// markKey is the key of the mark of event id.
func (a *AtomicKV) markKey(id string) string { return HandledKeyPrefix + a.name + "." + id }

// Handled reports whether the effect of event id is stored.
func (a *AtomicKV) Handled(ctx context.Context, id string) (bool, error) {
	_, err := a.kv.Get(ctx, a.markKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, &events.Error{Op: "subscriber.AtomicKV", Kind: events.KindUnavailable, Err: err}
	}
	return true, nil
}

// Wrap returns a Handler that skips events whose mark is stored, runs h on
// the others, and stores h's writes and the mark in one atomic batch. It
// returns nil when the effect is stored, now or by an earlier run.
func (a *AtomicKV) Wrap(h KVHandler) Handler {
	return func(ctx context.Context, e events.Event) error {
		done, err := a.Handled(ctx, e.ID)
		if err != nil || done {
			return err
		}
		writes, err := h(ctx, e)
		if err != nil {
			return err
		}
		return a.commit(context.WithoutCancel(ctx), e, writes)
	}
}

// commit stores writes and the mark of e as one atomic batch, the mark last:
// on a replicated stream a check protects the batch only up to its own
// message, and the mark's check must cover every write.
func (a *AtomicKV) commit(ctx context.Context, e events.Event, writes []KVWrite) error {
	const op = "subscriber.AtomicKV"
	msgs, err := a.batch(e, writes)
	if err != nil {
		return withOp(op, err)
	}
	cctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	_, err = jetstreamext.PublishMsgBatch(cctx, a.js, msgs, jetstreamext.BatchFlowControl{AckFirst: false, AckTimeout: commitTimeout})
	if err == nil {
		return nil
	}
	if isWrongLastSequence(err) {
		// Nothing of this batch was stored. Either the mark exists (another
		// run stored the effect: done) or a write's revision moved.
		if done, herr := a.Handled(ctx, e.ID); herr == nil && done {
			return nil
		}
		return &events.Error{Op: op, Kind: events.KindConflict, Rule: "a key changed after the handler read it; the event runs again", Err: err}
	}
	// A refusal stored nothing; a timeout may have stored the batch, which
	// the mark tells on the redelivery.
	return &events.Error{Op: op, Kind: events.KindUnavailable, Err: err}
}

func (a *AtomicKV) batch(e events.Event, writes []KVWrite) ([]*nats.Msg, error) {
	if len(writes) > MaxKVWrites {
		return nil, &events.Error{Kind: events.KindInvalid, Field: "writes", Rule: fmt.Sprintf("at most %d per event, got %d", MaxKVWrites, len(writes))}
	}
	msgs := make([]*nats.Msg, 0, len(writes)+1)
	for i, w := range writes {
		if !validKey(w.Key) || strings.HasPrefix(w.Key, HandledKeyPrefix) {
			return nil, &events.Error{Kind: events.KindInvalid, Field: fmt.Sprintf("writes[%d].key", i),
				Rule: fmt.Sprintf("must be a key-value key (letters, digits, '-', '_', '/', '=', inner '.') not starting with %q, got %q", HandledKeyPrefix, w.Key)}
		}
		m := nats.NewMsg(a.prefix + w.Key)
		if w.Delete {
			m.Header.Set("KV-Operation", "DEL")
		} else {
			m.Data = w.Value
		}
		if w.IfRevision {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.Revision, 10))
		}
		msgs = append(msgs, m)
	}
	mark := nats.NewMsg(a.prefix + a.markKey(e.ID))
	mark.Data = []byte(strconv.FormatUint(e.Position, 10))
	mark.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0") // no mark yet
	return append(msgs, mark), nil
}

// validKey is the key-value bucket's rule for keys.
func validKey(k string) bool {
	if k == "" || k[0] == '.' || k[len(k)-1] == '.' || strings.Contains(k, "..") {
		return false
	}
	for _, c := range k {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-/_=.", c)
		if !ok {
			return false
		}
	}
	return true
}

// isWrongLastSequence: 10071 on one node, 10164 on a replicated stream; a
// check in the batch failed and nothing was stored.
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	c := apiErr.ErrorCode
	return c == jetstream.JSErrCodeStreamWrongLastSequence || c == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

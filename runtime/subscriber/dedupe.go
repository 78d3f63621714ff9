package subscriber

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultDedupeSize is how many event ids a Dedupe remembers in memory.
const DefaultDedupeSize = 100_000

// Dedupe remembers the ids of events already handled, so that a handler
// wrapped with it skips the redeliveries of events it finished. It narrows
// at-least-once delivery but does not make it exactly once: see Wrap.
// It keeps the most recent ids in a bounded in-memory LRU and, when given a
// JetStream key-value bucket, every id there too, so that the memory of a
// restarted process reaches back past its own lifetime.
//
// Concurrency contract: safe for concurrent use. Two deliveries of the same
// event handled at the same moment may both run; the subscription prevents
// that by extending the ack wait while a handler runs.
type Dedupe struct {
	mu    sync.Mutex
	size  int
	order *list.List               // most recent at the front
	ids   map[string]*list.Element // id -> element of order
	kv    jetstream.KeyValue       // nil: memory only
}

// NewDedupe returns a Dedupe remembering up to size ids in memory
// (DefaultDedupeSize when size <= 0) and, when kv is not nil, every id in kv.
func NewDedupe(size int, kv jetstream.KeyValue) *Dedupe {
	if size <= 0 {
		size = DefaultDedupeSize
	}
	return &Dedupe{size: size, order: list.New(), ids: make(map[string]*list.Element), kv: kv}
}

// DedupeBucketPrefix starts the name of every subscription's dedupe bucket.
const DedupeBucketPrefix = "sub-dedupe-"

// DedupeBucket creates or opens the key-value bucket that persists the ids a
// subscription handled ("sub-dedupe-<name>", file storage, the LEDGER stream's replicas). Ids older than
// ttl are forgotten (0 keeps them for good); pick a ttl longer than any
// redelivery can take.
func DedupeBucket(ctx context.Context, js jetstream.JetStream, name string, ttl time.Duration) (jetstream.KeyValue, error) {
	if err := ValidateName(name); err != nil {
		return nil, withOp("subscriber.DedupeBucket", err)
	}
	const op = "subscriber.DedupeBucket"
	var kv jetstream.KeyValue
	err := guard(ctx, js, op, []string{jsAPI}, func(ctx context.Context) error {
		replicas, err := LogReplicas(ctx, js)
		if err != nil {
			return err
		}
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: DedupeBucketPrefix + name, Description: "event ids handled by subscriber " + name,
			TTL: ttl, Storage: jetstream.FileStorage, History: 1, Replicas: replicas,
		})
		if err != nil {
			return &events.Error{Op: op, Kind: events.KindUnavailable, Field: DedupeBucketPrefix + name, Err: err}
		}
		return nil
	})
	return kv, err
}

// Seen reports whether id was marked handled.
func (d *Dedupe) Seen(ctx context.Context, id string) (bool, error) {
	d.mu.Lock()
	el, ok := d.ids[id]
	if ok {
		d.order.MoveToFront(el)
	}
	d.mu.Unlock()
	if ok || d.kv == nil {
		return ok, nil
	}
	_, err := d.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, &events.Error{Op: "subscriber.Dedupe", Kind: events.KindUnavailable, Err: err}
	}
	d.remember(id)
	return true, nil
}

// Mark records that id was handled.
func (d *Dedupe) Mark(ctx context.Context, id string) error {
	if d.kv != nil {
		if _, err := d.kv.Put(ctx, id, nil); err != nil {
			return &events.Error{Op: "subscriber.Dedupe", Kind: events.KindUnavailable, Err: err}
		}
	}
	d.remember(id)
	return nil
}

func (d *Dedupe) remember(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if el, ok := d.ids[id]; ok {
		d.order.MoveToFront(el)
		return
	}
	d.ids[id] = d.order.PushFront(id)
	for d.order.Len() > d.size {
		last := d.order.Back()
		d.order.Remove(last)
		delete(d.ids, last.Value.(string))
	}
}

// markTimeout bounds the mark written after a handler succeeded.
const markTimeout = 10 * time.Second

// Wrap returns a handler that skips events already marked and marks each
// event h handled. An event is marked only after h returned nil, so a
// failure is retried; if marking fails the event is delivered again.
//
// The handler's effect and the mark are two writes, so Wrap gives at least
// once, not exactly once: a crash, a lost connection or an unavailable
// bucket after h returned and before the mark is stored makes h run again
// for that event. Effectively once therefore needs h to be idempotent, or
// its effect and the mark to be one write, which AtomicKV offers for effects
// in a key-value bucket. A stop (ctx ending) is not such a gap: the mark of
// a handler that returned nil is written even when ctx has ended.
func (d *Dedupe) Wrap(h Handler) Handler {
	return func(ctx context.Context, e events.Event) error {
		seen, err := d.Seen(ctx, e.ID)
		if err != nil || seen {
			return err
		}
		if err := h(ctx, e); err != nil {
			return err
		}
		// Not cut short by ctx: h's effect is done, and a mark lost to
		// a stop would make the next run repeat it.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), markTimeout)
		defer cancel()
		return d.Mark(mctx, e.ID)
	}
}

package projections

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/projections/notary"
)

// The as-of index (ADR 0019) keeps every version of every row of every
// keyed read model, so that the state of one key at a position, a recorded
// instant or a business instant is a lookup. It is a cache of the log: it
// holds nothing the log does not, and deleting its file and building it
// again gives the same answers.
//
// Layout, in one bbolt file:
//
//	rows/<model>/v<version>  <row key> 0x00 <position, 8 bytes BE>  ->  <occurred-at ns, 8 bytes BE> <1: present, 0: gone> <row JSON>
//	late/<model>/v<version>  <row key> 0x00 <position>  ->  <occurred-at ns>   (a late business event touched the row; Monotone models)
//	clock                    max <position>  ->  <running max business time, ns>   (only where it grows)
//	                         late <position> ->  <business time, ns>               (a business event earlier than that max)
//	                         rec <recorded ns> <position> -> ""                    (every event's server time)
//	                         bus <position> -> <business time, ns>                 (every business event)
//	                         lmin <block> -> <business time, ns>                   (the earliest late event of positions
//	                                                                                block*lateBlock to the block's end)
//	merkle                   <position> -> the Merkle frontier (notary.Frontier) of every event up to it, at
//	                                        the end of each batch of the fold: a tree root at any position
//	                                        reads the log from the entry before it only
//	meta                     head -> <position>: every position up to it is indexed
//	ckpt                     <model>/v<version> -> whole-model snapshot at meta/ckpt_head, for a restart
var (
	bucketClock = []byte("clock")
	bucketMeta  = []byte("meta")
	bucketCkpt  = []byte("ckpt")
	bucketTree  = []byte("merkle")
	keyHead     = []byte("head")
	keyCkptHead = []byte("ckpt_head")
	keyCkptMax  = []byte("ckpt_max")
	keyModels   = []byte("models")
)

// Index bounds. Each is a limit on memory or on how long a caller waits.
const (
	// indexBatchEvents is how many events' row versions one write
	// transaction carries at most.
	indexBatchEvents = 1024
	// IndexWaitMax bounds how long a query waits for the index to reach
	// the position it asks about.
	IndexWaitMax = 2 * time.Second
)

// indexCkptEvery is how many positions pass between two model checkpoints
// in the index (a restart refolds at most this many); a variable for tests.
var indexCkptEvery uint64 = 100_000

// indexFillPercent is how full bbolt fills the pages it splits. Row
// versions arrive in position order under each key, so a page mostly grows
// at the end of its keys' runs and is not split again soon: full pages
// make the file a third smaller than bbolt's half-full default (31 against
// 47 MiB at 17k events), and the build no slower.
var indexFillPercent = 0.9

// Index is the as-of index. Its methods are safe for concurrent use; one
// Build or Follow runs at a time (a second waits for the first).
type Index struct {
	db *bolt.DB

	build  sync.Mutex // one fold writes at a time
	ms     []models.Keyed
	maxOc  int64  // running max business time of the fold, ns
	tree   []byte // the fold's Merkle frontier at folded (notary.Frontier, encoded)
	folded uint64 // the position ms have applied
	ckptAt uint64 // the position of the index's model checkpoint

	mu       sync.Mutex
	head     uint64
	progress chan struct{} // closed and replaced whenever head moves
}

// OpenIndex opens (creating if needed) the index file at path.
func OpenIndex(path string) (*Index, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType,
		InitialMmapSize: 1 << 30, NoGrowSync: true}) // address space, not memory: no remap (which waits for readers) until 1 GiB
	if err != nil {
		return nil, &events.Error{Op: "projections.OpenIndex", Kind: events.KindUnavailable, Field: path, Err: err}
	}
	db.NoSync = true // a cache of the log: a torn index is rebuilt, never trusted (see Build)
	ix := &Index{db: db, progress: make(chan struct{})}
	built, err := builtModels()
	if err != nil {
		db.Close()
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil && !bytes.Equal(m.Get(keyModels), built) {
			// Built by other model versions: start again from the log.
			var names [][]byte
			tx.ForEach(func(name []byte, _ *bolt.Bucket) error { names = append(names, bytes.Clone(name)); return nil })
			for _, n := range names {
				if err := tx.DeleteBucket(n); err != nil {
					return err
				}
			}
		}
		for _, b := range [][]byte{bucketClock, bucketMeta, bucketCkpt} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		ix.head = getU64(tx.Bucket(bucketMeta).Get(keyHead))
		return tx.Bucket(bucketMeta).Put(keyModels, built)
	})
	if err != nil {
		db.Close()
		return nil, &events.Error{Op: "projections.OpenIndex", Kind: events.KindIntegrity, Field: path, Err: err}
	}
	return ix, nil
}

// RemoveIndex deletes the index file at path: the next OpenIndex starts
// empty and Build folds the log again.
func RemoveIndex(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Close syncs and closes the file.
func (ix *Index) Close() error {
	_ = ix.db.Sync()
	return ix.db.Close()
}

// Head returns the last position indexed: every position up to it is.
func (ix *Index) Head() uint64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.head
}

func (ix *Index) setHead(pos uint64) {
	ix.mu.Lock()
	ix.head = pos
	close(ix.progress)
	ix.progress = make(chan struct{})
	ix.mu.Unlock()
}

// WaitHead waits, at most wait, until the index has reached pos. It returns
// the head reached; an error says how far behind the index still is.
func (ix *Index) WaitHead(ctx context.Context, pos uint64, wait time.Duration) (uint64, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		ix.mu.Lock()
		head, ch := ix.head, ix.progress
		ix.mu.Unlock()
		if head >= pos {
			return head, nil
		}
		select {
		case <-ch:
		case <-t.C:
			return head, &events.Error{Op: "projections.Index", Kind: events.KindUnavailable, Field: "as_of",
				Rule: fmt.Sprintf("the as-of index has reached position %d, %d behind position %d; try again shortly", head, pos-head, pos)}
		case <-ctx.Done():
			return head, ctx.Err()
		}
	}
}

func rowsBucket(model string, version int) []byte {
	return fmt.Appendf(nil, "rows/%s/v%d", model, version)
}

func lateBucket(model string, version int) []byte {
	return fmt.Appendf(nil, "late/%s/v%d", model, version)
}

// indexLayout names the index's layout; a file of another layout is
// emptied when opened, as one built by other model versions is. Layout 2
// keeps the late keys of TimedContext models too.
// Layout 3 versions a TimedContext's context only when an event changes
// it other than its time, and keeps every business event's time instead;
// layout 4 keeps the fold's Merkle frontier (bucket merkle).
const indexLayout = "layout/4\n"

// builtModels names the layout and the model versions an index holds, as
// stored in it.
func builtModels() ([]byte, error) {
	ms, err := keyedModels()
	if err != nil {
		return nil, err
	}
	b := []byte(indexLayout)
	for _, m := range ms {
		b = fmt.Appendf(b, "%s/v%d\n", m.Name(), models.ModelVersion(m))
	}
	return b, nil
}

// keyedModels returns fresh keyed built-in models.
func keyedModels() ([]models.Keyed, error) {
	ms, err := models.NewModels()
	if err != nil {
		return nil, err
	}
	out := make([]models.Keyed, 0, len(ms))
	for _, m := range ms {
		k, ok := m.(models.Keyed)
		if !ok {
			return nil, &events.Error{Op: "projections.Index", Kind: events.KindInvalid, Field: "model",
				Rule: "read model " + m.Name() + " has no rows under keys"}
		}
		out = append(out, k)
	}
	return out, nil
}

// Build folds the log from the index's head up to position to (0: the
// log's head when called) and writes the row versions on the way. It is
// the index's only writer; Follow calls it in a loop.
func (ix *Index) Build(ctx context.Context, store events.Store, to uint64) error {
	ix.build.Lock()
	defer ix.build.Unlock()
	if to == 0 {
		last, ok := store.(interface {
			LastPosition(context.Context) (uint64, error)
		})
		if !ok {
			return &events.Error{Op: "projections.Index", Kind: events.KindInvalid, Field: "to", Rule: "give the position to build to"}
		}
		var err error
		if to, err = last.LastPosition(ctx); err != nil {
			return err
		}
	}
	if err := ix.load(); err != nil {
		return err
	}
	// In steps of indexCkptEvery positions, each ending in a checkpoint: a
	// build stopped part way (a crash, the log unreachable) starts again
	// from the last step, not from the start, and no write transaction
	// holds more than a step.
	for ix.folded < to {
		end := min(to, max(ix.ckptAt, ix.folded)+indexCkptEvery)
		if err := ix.buildTo(ctx, store, end); err != nil {
			return err
		}
	}
	return nil
}

// buildTo folds from the index's head up to position to, with the models
// loaded, and checkpoints them when indexCkptEvery positions have passed
// since the last checkpoint.
func (ix *Index) buildTo(ctx context.Context, store events.Store, to uint64) error {
	if err := ix.load(); err != nil {
		return err
	}
	from := ix.folded
	var tree notary.Frontier
	if err := tree.UnmarshalBinary(ix.tree); err != nil {
		return &events.Error{Op: "projections.Index", Kind: events.KindIntegrity, Field: "merkle", Err: err}
	}
	w := newIndexWriter(ix) // its writer goroutine ends with flush or abort
	rec := &indexRecorder{w: w}
	ms := make([]models.Model, 0, len(ix.ms)+1)
	w.maxOc, w.tree = ix.maxOc, tree
	for _, m := range ix.ms {
		r := &rowRecorder{Keyed: m, w: w, bucket: rowsBucket(m.Name(), models.ModelVersion(m))}
		if lateKept(m) {
			r.late = lateBucket(m.Name(), models.ModelVersion(m))
		}
		r.timed, _ = m.(models.TimedContext)
		ms = append(ms, r)
	}
	ms = append(ms, rec) // last: it sees each event after every model has applied it
	if from == 0 {
		// Rows a model holds before any event (a count at zero) are
		// versions at position 0.
		fresh, err := keyedModels()
		if err != nil {
			return err
		}
		for i, m := range fresh {
			keys := m.RowKeys()
			if _, ok := m.(models.Derived); ok {
				keys = append(keys, "")
			}
			for _, k := range keys {
				body, _ := stored(m, k)
				w.put(ms[i].(*rowRecorder).bucket, versionKey(k, 0), versionValue(0, true, body))
			}
		}
	}
	_, _, err := Fold(ctx, store, events.Query{From: from + 1, To: to}, ms, nil, nil)
	if err == nil {
		w.putTree(to)
		err = w.flush(to)
	} else {
		w.abort()
	}
	ix.maxOc = w.maxOc
	ix.tree, _ = w.tree.MarshalBinary()
	if err != nil {
		ix.ms = nil // the models may be half way through an event: restore them again
		return err
	}
	ix.folded = to
	if to >= ix.ckptAt+indexCkptEvery {
		return ix.checkpoint(to)
	}
	return nil
}

// load restores the fold's models from the index's checkpoint (or fresh)
// when they are not in memory.
func (ix *Index) load() error {
	if ix.ms != nil {
		return nil
	}
	ms, err := keyedModels()
	if err != nil {
		return err
	}
	var at uint64
	var maxOc int64
	tree, _ := (&notary.Frontier{}).MarshalBinary()
	err = ix.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCkpt)
		at, maxOc = getU64(b.Get(keyCkptHead)), int64(getU64(b.Get(keyCkptMax)))
		if at == 0 {
			return nil
		}
		if t := tx.Bucket(bucketTree); t != nil && t.Get(putU64(at)) != nil {
			tree = slices.Clone(t.Get(putU64(at)))
		} else {
			at, maxOc = 0, 0 // no frontier at the checkpoint: fold from the start
			return nil
		}
		for _, m := range ms {
			body := b.Get(rowsBucket(m.Name(), models.ModelVersion(m)))
			if body == nil {
				at, maxOc = 0, 0 // a model new to this index: fold from the start
				return nil
			}
			if err := m.Restore(body); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return &events.Error{Op: "projections.Index", Kind: events.KindIntegrity, Field: "checkpoint", Err: err}
	}
	if at == 0 {
		if ms, err = keyedModels(); err != nil {
			return err
		}
	}
	ix.ms, ix.folded, ix.ckptAt, ix.maxOc, ix.tree = ms, at, at, maxOc, tree
	return nil
}

// checkpoint stores the models' state at pos, so that a restart folds from
// there (rewriting, identically, the versions after it).
func (ix *Index) checkpoint(pos uint64) error {
	err := ix.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCkpt)
		for _, m := range ix.ms {
			body, err := m.Snapshot()
			if err != nil {
				return err
			}
			if err := b.Put(rowsBucket(m.Name(), models.ModelVersion(m)), body); err != nil {
				return err
			}
		}
		if err := b.Put(keyCkptMax, putU64(uint64(ix.maxOc))); err != nil {
			return err
		}
		return b.Put(keyCkptHead, putU64(pos))
	})
	if err != nil {
		return &events.Error{Op: "projections.Index", Kind: events.KindUnavailable, Field: "checkpoint", Err: err}
	}
	ix.ckptAt = pos
	return nil
}

// Follow builds the index up to the log's head, then again whenever the
// log grows, polling every poll, until ctx ends. It returns the error that
// stopped it (never nil: ctx's error when it ends).
func (ix *Index) Follow(ctx context.Context, store LogStore, poll time.Duration) error {
	for {
		head, err := store.LastPosition(ctx)
		if err == nil && head > ix.Head() {
			err = ix.Build(ctx, store, head)
		}
		if err != nil && ctx.Err() == nil && !errors.Is(err, events.ErrUnavailable) {
			return err
		}
		if ctx.Err() != nil {
			ix.build.Lock()
			if ix.ms != nil && ix.folded > ix.ckptAt {
				_ = ix.checkpoint(ix.folded)
			}
			ix.build.Unlock()
			return ctx.Err()
		}
		sleepCtx(ctx, poll)
	}
}

// rowRecorder applies events to a keyed model and records the rows each
// event touched.
type rowRecorder struct {
	models.Keyed
	w      *indexWriter
	bucket []byte
	late   []byte // nil: the model is not Monotone
	// timed is the model when it is a TimedContext: its context row's
	// time is the last business event's, which the clock keeps, so the row
	// is versioned only when an event changes its other part.
	timed models.TimedContext
}

// stored is the part of a row the index keeps.
func stored(m models.Keyed, key string) ([]byte, bool) {
	if d, ok := m.(models.Derived); ok {
		return d.StoredRow(key)
	}
	return m.Row(key)
}

func (r *rowRecorder) Apply(e events.Event, payload any) error {
	if err := r.Keyed.Apply(e, payload); err != nil {
		return err
	}
	keys, all := r.Keyed.Touched()
	if all {
		keys = r.Keyed.RowKeys()
	}
	occ := uint64(e.OccurredAt.UnixNano())
	for _, k := range keys {
		if k == "" && r.timed != nil && !r.timed.ContextEvent(payload) {
			continue // only its time moved
		}
		body, ok := stored(r.Keyed, k)
		r.w.put(r.bucket, versionKey(k, e.Position), versionValue(occ, ok, body))
	}
	if r.late != nil && models.IsBusiness(&e) && e.OccurredAt.UnixNano() < r.w.maxOc {
		if tc, ok := r.Keyed.(models.TimedContext); ok && !all {
			// The context's time is set at query time; only a change of
			// its other part (a policy event) touches every row.
			keys = slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == "" })
			if tc.ContextEvent(payload) {
				all = true
			}
		}
		if all {
			keys = []string{""} // every row: no row key is empty
		}
		for _, k := range keys {
			r.w.put(r.late, versionKey(k, e.Position), putU64(occ))
		}
	}
	return nil
}

// lateKept reports whether the index keeps the keys that business events
// applied out of order touched in m, to answer business instants by
// lookup: Monotone and TimedContext models.
func lateKept(m models.Model) bool {
	switch m.(type) {
	case models.Monotone, models.TimedContext:
		return true
	}
	return false
}

// indexRecorder records the business clock of each event and cuts the
// write batches at event boundaries.
type indexRecorder struct {
	w *indexWriter
	n int
}

func (r *indexRecorder) Name() string              { return "\x00clock" }
func (r *indexRecorder) Snapshot() ([]byte, error) { return nil, nil }
func (r *indexRecorder) Restore([]byte) error      { return nil }
func (r *indexRecorder) Rows() models.Table        { return models.Table{} }

func (r *indexRecorder) Apply(e events.Event, _ any) error {
	leaf, err := notary.EventLeaf(&e)
	if err != nil {
		return err
	}
	r.w.tree.Append(notary.LeafHash(leaf))
	rk := binary.BigEndian.AppendUint64(clockKey("rec", uint64(e.RecordedAt.UnixNano())), e.Position)
	r.w.put(bucketClock, rk, nil)
	if models.IsBusiness(&e) {
		occ := e.OccurredAt.UnixNano()
		r.w.put(bucketClock, clockKey("bus", e.Position), putU64(uint64(occ)))
		switch {
		case occ > r.w.maxOc || r.w.maxOc == 0:
			r.w.maxOc = occ
			r.w.put(bucketClock, clockKey("max", e.Position), putU64(uint64(occ)))
			r.w.put(bucketClock, clockKey("occ", uint64(occ)), putU64(e.Position))
		case occ < r.w.maxOc:
			r.w.put(bucketClock, clockKey("late", e.Position), putU64(uint64(occ)))
			r.w.lateIn(e.Position, uint64(occ))
		}
	}
	r.n++
	if r.n >= indexBatchEvents {
		r.n = 0
		r.w.putTree(e.Position)
		return r.w.cut(e.Position)
	}
	return nil
}

func clockKey(kind string, pos uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(kind+"\x00"), pos)
}

func versionKey(key string, pos uint64) []byte {
	b := make([]byte, 0, len(key)+9)
	b = append(b, key...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, pos)
}

func versionValue(occ uint64, present bool, body []byte) []byte {
	v := make([]byte, 9, 9+len(body))
	binary.BigEndian.PutUint64(v, occ)
	if present {
		v[8] = 1
	}
	return append(v, body...)
}

func putU64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// indexWriter batches puts and writes each batch in one transaction on a
// goroutine of its own, so that the fold goes on while the previous batch
// is written; at most one batch waits.
type indexWriter struct {
	ix *Index
	// maxOc is the fold's running maximum of business time, ns, before the
	// event being applied (the indexRecorder, applied last, moves it).
	maxOc int64
	// tree is the fold's Merkle frontier: every event the fold applied.
	tree    notary.Frontier
	batch   []kv
	batches chan indexBatch
	done    chan error
	// The block of positions the last late event fell in, and the
	// earliest business time of the late events in it.
	block, blockMin uint64
	blockSeen       bool
}

// lateBlock is how many positions one lmin entry of the clock covers: a
// business query skips a block none of whose late events occurred by its
// instant, so it reads at most a block's late events and one entry per
// block, instead of every late event after its prefix (a million-event log
// holds hundreds of thousands).
const lateBlock = 256

// lateIn records a late event in its block's earliest business time.
func (w *indexWriter) lateIn(pos, occ uint64) {
	if blk := pos / lateBlock; !w.blockSeen || blk != w.block {
		// A block this fold has not written yet: an earlier fold may
		// have (the fold before a restart, up to the checkpoint).
		w.block, w.blockSeen, w.blockMin = blk, true, ^uint64(0)
		_ = w.ix.db.View(func(tx *bolt.Tx) error {
			if v := tx.Bucket(bucketClock).Get(clockKey("lmin", blk)); v != nil {
				w.blockMin = getU64(v)
			}
			return nil
		})
	}
	if occ < w.blockMin {
		w.blockMin = occ
		w.put(bucketClock, clockKey("lmin", w.block), putU64(occ))
	}
}

type kv struct{ bucket, key, value []byte }

type indexBatch struct {
	puts []kv
	head uint64
}

func newIndexWriter(ix *Index) *indexWriter {
	w := &indexWriter{ix: ix, batches: make(chan indexBatch, 1), done: make(chan error, 1)}
	go w.run()
	return w
}

// putTree keeps the fold's Merkle frontier as of position pos.
func (w *indexWriter) putTree(pos uint64) {
	b, _ := w.tree.MarshalBinary()
	w.put(bucketTree, putU64(pos), b)
}

func (w *indexWriter) put(bucket, key, value []byte) {
	w.batch = append(w.batch, kv{bucket, key, value})
}

// cut hands the batch, which ends with position head, to the writer.
func (w *indexWriter) cut(head uint64) error {
	select {
	case w.batches <- indexBatch{w.batch, head}:
		w.batch = nil
		return nil
	case err := <-w.done: // the writer failed and stopped
		w.done <- err
		return err
	}
}

func (w *indexWriter) run() {
	var err error
	for b := range w.batches {
		if err != nil {
			continue // drain: the first error is the answer
		}
		// In key order: bbolt finds each leaf once and appends within it.
		// Stable: a key put twice in a batch (a block's lmin) keeps the
		// later value.
		slices.SortStableFunc(b.puts, func(x, y kv) int {
			if c := bytes.Compare(x.bucket, y.bucket); c != 0 {
				return c
			}
			return bytes.Compare(x.key, y.key)
		})
		err = w.ix.db.Update(func(tx *bolt.Tx) error {
			var bk *bolt.Bucket
			var last []byte
			for _, p := range b.puts {
				if bk == nil || !bytes.Equal(p.bucket, last) {
					var err error
					if bk, err = tx.CreateBucketIfNotExists(p.bucket); err != nil {
						return err
					}
					bk.FillPercent = indexFillPercent // not stored: set in every transaction
					last = p.bucket
				}
				if err := bk.Put(p.key, p.value); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(keyHead, putU64(b.head))
		})
		if err == nil {
			w.ix.setHead(b.head)
		}
	}
	w.done <- err
}

// flush writes what is left and waits for the writer; head is the
// position the whole fold covered.
func (w *indexWriter) flush(head uint64) error {
	w.batches <- indexBatch{w.batch, head}
	close(w.batches)
	if err := <-w.done; err != nil {
		return &events.Error{Op: "projections.Index", Kind: events.KindUnavailable, Rule: "writing the as-of index", Err: err}
	}
	return nil
}

func (w *indexWriter) abort() {
	close(w.batches)
	<-w.done
}

// validRowKey rejects what cannot name a row: the index separates a key
// from its position with a zero byte.
func validRowKey(key string) error {
	if key == "" || len(key) > 512 || strings.ContainsRune(key, 0) {
		return &events.Error{Op: "projections.Index", Kind: events.KindInvalid, Field: "key",
			Rule: "a row key is 1 to 512 bytes without a zero byte"}
	}
	return nil
}

package projections

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/projections/notary"
)

// Row is one row of a read model as of a point.
type Row struct {
	Key string `json:"key"`
	// Version is the position of the last event that wrote the row at or
	// before the point (0 when the answer was folded, not looked up).
	Version uint64          `json:"version,omitempty"`
	State   json.RawMessage `json:"state"`
}

// RowAnswer is where a point query landed and what it found.
type RowAnswer struct {
	Model string `json:"model"`
	Clock Clock  `json:"clock"`
	AsOf  string `json:"as_of"`
	// Position is the log prefix the answer reflects: on the position and
	// recorded clocks, the state after every event up to it; on the
	// business clock, every business event up to it occurred by the
	// instant, and none after it (up to KnownAt) did.
	Position uint64 `json:"position"`
	// KnownAt is the last position considered on the business clock.
	KnownAt uint64 `json:"known_at,omitempty"`
	// Method is "index" for a lookup, "fold" when business times out of
	// order made the index unable to answer exactly and the log was folded.
	Method string `json:"method"`
	Rows   []Row  `json:"rows"`
	// Next is the key to pass as after for the next page ("" on the last).
	Next string `json:"next,omitempty"`
}

// RowQuerier answers point and list queries from the as-of index. It is
// safe for concurrent use.
type RowQuerier struct {
	ix    *Index
	store LogStore
	q     *Querier
	// Wait bounds how long a query waits for the index to reach the point
	// it asks about (default IndexWaitMax).
	Wait time.Duration

	mu    sync.Mutex // guards folds and every model in it
	folds map[string]foldedModel
}

// foldedModel is a model folded to answer a business instant the index
// cannot, kept so that the next page of the same query does not fold again.
type foldedModel struct {
	m   models.Keyed
	pos uint64
}

// foldsMax bounds the folded models a RowQuerier keeps.
const foldsMax = 8

// NewRowQuerier returns a querier on ix, which follows store.
func NewRowQuerier(ctx context.Context, ix *Index, store LogStore) *RowQuerier {
	return &RowQuerier{ix: ix, store: store, q: NewQuerier(ctx, store), Wait: IndexWaitMax}
}

// point is an as-of resolved to the index.
type point struct {
	pos     uint64 // the position to look rows up at
	knownAt uint64 // business clock: the last position considered
	exact   bool   // the lookup at pos is the answer
}

// resolve checks at against the log and the index, waiting (bounded) for
// the index to reach it.
func (rq *RowQuerier) resolve(ctx context.Context, at AsOf, knownAt uint64) (point, error) {
	if p, ok, err := rq.fastResolve(ctx, at, knownAt); ok || err != nil {
		return p, err
	}
	b, err := rq.q.bounds(ctx)
	if err != nil {
		return point{}, err
	}
	var p point
	switch at.Clock {
	case ClockPosition, ClockRecorded:
		if knownAt != 0 {
			return p, &events.Error{Op: "projections.AsOf", Kind: events.KindInvalid, Field: "known_at", Rule: "known_at goes with the business clock only"}
		}
		if p.pos, err = rq.q.prefixPosition(ctx, at, b); err != nil {
			return p, err
		}
		_, err = rq.ix.WaitHead(ctx, p.pos, rq.Wait)
		p.exact = true
		return p, err
	case ClockBusiness:
		p.knownAt = b.head
		if knownAt != 0 {
			if knownAt > b.head {
				return p, &events.Error{Op: "projections.AsOf", Kind: events.KindInvalid, Field: "known_at",
					Rule: fmt.Sprintf("position %d is after the last position (%d)", knownAt, b.head)}
			}
			p.knownAt = knownAt
		}
		if _, err = rq.ix.WaitHead(ctx, p.knownAt, rq.Wait); err != nil {
			return p, err
		}
		return rq.ix.business(at, p.knownAt, knownAt != 0 && knownAt < b.head)
	}
	return p, &events.Error{Op: "projections.AsOf", Kind: events.KindInvalid, Field: "clock",
		Rule: fmt.Sprintf("clock must be position, recorded or business, got %q", at.Clock)}
}

// fastResolve resolves the common points with at most one request to the
// server: a position the index has reached is in the log (the index never
// passes the log's head); a recorded instant whose position is before the
// index's head is before the log's last event; a business instant needs
// only the log's head. It reports false for the rest, which resolve checks
// against the log's bounds.
func (rq *RowQuerier) fastResolve(ctx context.Context, at AsOf, knownAt uint64) (point, bool, error) {
	first, firstRecorded, ok := rq.q.cachedFirst()
	if !ok || knownAt != 0 && at.Clock != ClockBusiness {
		return point{}, false, nil
	}
	head := rq.ix.Head()
	switch at.Clock {
	case ClockPosition:
		if at.Position >= first && at.Position <= head {
			return point{pos: at.Position, exact: true}, true, nil
		}
	case ClockRecorded:
		if at.Time.Before(firstRecorded) {
			return point{}, false, nil
		}
		pos, ok := rq.ix.positionAt(at.Time)
		if ok && pos < head {
			return point{pos: pos, exact: true}, true, nil
		}
	case ClockBusiness:
		last, err := rq.store.LastPosition(ctx)
		if err != nil {
			return point{}, true, err
		}
		if knownAt > last {
			return point{}, false, nil // resolve names the bad known_at
		}
		if knownAt == 0 {
			knownAt = last
		}
		if _, err := rq.ix.WaitHead(ctx, knownAt, rq.Wait); err != nil {
			return point{}, true, err
		}
		p, err := rq.ix.business(at, knownAt, knownAt < last)
		return p, true, err
	}
	return point{}, false, nil
}

// positionAt is the log's PositionAt from the index: the last event
// recorded at or before t. It reports false when the index holds no event
// recorded after t (t may be past what it has reached).
func (ix *Index) positionAt(t time.Time) (uint64, bool) {
	var pos uint64
	var after bool
	ix.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketClock).Cursor()
		k, _ := c.Seek(clockKey("rec", uint64(t.UnixNano())+1))
		after = k != nil && bytes.HasPrefix(k, []byte("rec\x00"))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		if k != nil && bytes.HasPrefix(k, []byte("rec\x00")) && len(k) == 4+16 {
			pos = binary.BigEndian.Uint64(k[12:])
		}
		return nil
	})
	return pos, after && pos > 0
}

// business resolves a business instant, as known at knownAt. Let A be the
// last position up to which every business event occurred by T (the
// running maximum of business time is at most T). The fold of the business
// events that occurred by T, up to knownAt, is the fold of the prefix up
// to A exactly when no business event after A, up to knownAt, occurred by
// T: then it is a lookup at A.
//
// An instant after every business time known at knownAt is every business
// event known there; without knownAt, a future instant is refused, as
// Querier.State does (the facts that will have occurred by then are not
// known yet).
func (ix *Index) business(at AsOf, knownAt uint64, bitemporal bool) (point, error) {
	T := uint64(at.Time.UnixNano())
	p := point{knownAt: knownAt}
	err := ix.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketClock).Cursor()
		// The running maximum at knownAt: the last step at or before it.
		first, _ := c.Seek([]byte("max\x00"))
		if first == nil || !bytes.HasPrefix(first, []byte("max\x00")) {
			return outOfRange(at, "before the first event on the business clock")
		}
		firstBusiness := binary.BigEndian.Uint64(first[4:])
		k, v := c.Seek(clockKey("max", knownAt+1))
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		if k == nil || !bytes.HasPrefix(k, []byte("max\x00")) {
			return outOfRange(at, "before the first event on the business clock")
		}
		if maxOcc := getU64(v); T > maxOcc {
			if !bitemporal && at.Time.After(time.Now()) {
				return outOfRange(at, "in the future (the last event occurred at "+time.Unix(0, int64(maxOcc)).UTC().Format(time.RFC3339Nano)+")")
			}
			p.pos, p.exact = knownAt, true // every business event known there occurred by T
			return nil
		}
		// The first step past T ends the prefix.
		p.pos = knownAt
		if k, v := c.Seek(clockKey("occ", T+1)); k != nil && bytes.HasPrefix(k, []byte("occ\x00")) {
			if s := getU64(v); s-1 < p.pos {
				p.pos = s - 1
			}
		}
		_, _, late := lateBy(tx, p.pos, knownAt, T, false)
		p.exact = !late
		if p.exact && p.pos < firstBusiness {
			return outOfRange(at, "before the first event on the business clock")
		}
		return nil
	})
	return p, err
}

// Row returns one row of model as of at (knownAt: the last position
// considered on the business clock, 0 for the log's head). A key the model
// did not hold at that point is KindNotFound; one it never held (as far as
// the index has reached) is KindInvalid.
func (rq *RowQuerier) Row(ctx context.Context, model, key string, at AsOf, knownAt uint64) (*RowAnswer, error) {
	if err := validRowKey(key); err != nil {
		return nil, err
	}
	a, err := rq.page(ctx, model, key, true, "", 1, at, knownAt)
	if err != nil {
		return nil, err
	}
	if len(a.Rows) == 0 {
		if hist, err := rq.ix.History(model, key, ^uint64(0)); err == nil && len(hist) == 0 {
			return nil, &events.Error{Op: "projections.AsOf", Kind: events.KindInvalid, Field: "key",
				Rule: fmt.Sprintf("read model %s has never held a row %q", model, key)}
		}
		return nil, &events.Error{Op: "projections.AsOf", Kind: events.KindNotFound, Field: "key",
			Rule: fmt.Sprintf("read model %s holds no row %q as of %s", model, key, at)}
	}
	a.Next = ""
	return a, nil
}

// List returns up to limit rows of model whose keys start with prefix and
// come after after, in key order, as of at.
func (rq *RowQuerier) List(ctx context.Context, model, prefix, after string, limit int, at AsOf, knownAt uint64) (*RowAnswer, error) {
	if limit < 1 || limit > 1000 {
		return nil, &events.Error{Op: "projections.AsOf", Kind: events.KindInvalid, Field: "limit", Rule: "limit is from 1 to 1000"}
	}
	return rq.page(ctx, model, prefix, false, after, limit, at, knownAt)
}

func (rq *RowQuerier) page(ctx context.Context, model, prefix string, exactKey bool, after string, limit int, at AsOf, knownAt uint64) (*RowAnswer, error) {
	m, err := models.NewModel(model)
	if err != nil {
		return nil, err
	}
	if _, ok := m.(models.Keyed); !ok {
		return nil, &events.Error{Op: "projections.AsOf", Kind: events.KindInvalid, Field: "model", Rule: "read model " + model + " has no rows under keys"}
	}
	p, err := rq.resolve(ctx, at, knownAt)
	if err != nil {
		return nil, err
	}
	a := &RowAnswer{Model: model, Clock: at.Clock, AsOf: asOfValue(at), Position: p.pos, KnownAt: p.knownAt, Method: "index"}
	var ctxAt time.Time // a TimedContext's time at the point, when not the prefix's
	if !p.exact && exactKey && lateKept(m) {
		if p.exact, err = rq.ix.untouchedLate(m, prefix, at, p); err != nil {
			return nil, err
		}
		if _, ok := m.(models.TimedContext); ok && p.exact {
			// The business fold's time is that of the last event it
			// applies: a late one that occurred by the instant, or the
			// prefix's last (the context's time at p.pos).
			if _, occ := rq.ix.lastLate(at, p); occ != 0 {
				ctxAt = time.Unix(0, int64(occ))
			}
		}
	}
	if !p.exact {
		return rq.folded(ctx, a, m, prefix, exactKey, after, limit, at, p)
	}
	bucket := rowsBucket(model, models.ModelVersion(m))
	err = rq.ix.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		if exactKey {
			if r, ok := lookup(b.Cursor(), prefix, p.pos); ok {
				a.Rows = append(a.Rows, r)
			}
		} else {
			a.Rows, a.Next = scan(b.Cursor(), prefix, after, limit, p.pos)
		}
		if d, ok := m.(models.Derived); ok && len(a.Rows) > 0 {
			ctxRow, _ := lookup(b.Cursor(), "", p.pos)
			if _, ok := m.(models.TimedContext); ok && ctxAt.IsZero() {
				// The context's time at p.pos: that of the last business
				// event there (none: the stored one, before any).
				if occ, ok := businessTimeAt(tx, p.pos); ok {
					ctxAt = time.Unix(0, int64(occ))
				}
			}
			if tc, ok := m.(models.TimedContext); ok && !ctxAt.IsZero() {
				body, err := tc.ContextAt(ctxRow.State, ctxAt)
				if err != nil {
					return err
				}
				ctxRow.State = body
			}
			for i := range a.Rows {
				body, err := d.DeriveRow(a.Rows[i].State, ctxRow.State)
				if err != nil {
					return err
				}
				a.Rows[i].State = body
			}
		}
		return nil
	})
	return a, err
}

func asOfValue(at AsOf) string {
	if at.Clock == ClockPosition {
		return fmt.Sprint(at.Position)
	}
	return at.Time.Format(time.RFC3339Nano)
}

// untouchedLate reports whether no business event that came out of order
// after p.pos, up to p.knownAt, and occurred by the instant touched key (or
// every row). Those are the only events the business fold applies on top
// of the prefix up to p.pos; for a Monotone model, when none touched the
// key, the key's row there is the answer.
func (ix *Index) untouchedLate(m models.Model, key string, at AsOf, p point) (bool, error) {
	T := uint64(at.Time.UnixNano())
	clean := true
	err := ix.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(lateBucket(m.Name(), models.ModelVersion(m)))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for _, k := range []string{key, ""} {
			pre := append([]byte(k), 0)
			for kk, v := c.Seek(versionKey(k, p.pos+1)); kk != nil && bytes.HasPrefix(kk, pre) && len(kk) == len(pre)+8; kk, v = c.Next() {
				if binary.BigEndian.Uint64(kk[len(pre):]) > p.knownAt {
					break
				}
				if getU64(v) <= T {
					clean = false
					return nil
				}
			}
		}
		return nil
	})
	return clean, err
}

// lastLate returns the position and business time of the last business
// event after p.pos, up to p.knownAt, that occurred by the instant: one
// that came out of order (every business event after p.pos that occurred
// by the instant did). It returns zeros when there is none.
func (ix *Index) lastLate(at AsOf, p point) (pos, occ uint64) {
	ix.db.View(func(tx *bolt.Tx) error {
		pos, occ, _ = lateBy(tx, p.pos, p.knownAt, uint64(at.Time.UnixNano()), true)
		return nil
	})
	return pos, occ
}

// lateBy finds a late business event in the positions (from, to] that
// occurred at or before T: the first one, or with last the last one. It
// reads the blocks' earliest times (lmin) and the late events of only the
// blocks whose earliest time is at or before T.
func lateBy(tx *bolt.Tx, from, to, T uint64, last bool) (pos, occ uint64, ok bool) {
	if to <= from {
		return 0, 0, false
	}
	b := tx.Bucket(bucketClock)
	blocks, lates := b.Cursor(), b.Cursor()
	lmin, late := []byte("lmin\x00"), []byte("late\x00")
	// inBlock scans one block's late events within (from, to].
	inBlock := func(blk uint64) bool {
		lo, hi := max(from+1, blk*lateBlock), min(to, blk*lateBlock+lateBlock-1)
		if last {
			k, v := lates.Seek(clockKey("late", hi+1))
			if k == nil {
				k, v = lates.Last()
			} else {
				k, v = lates.Prev()
			}
			for ; k != nil && bytes.HasPrefix(k, late) && binary.BigEndian.Uint64(k[5:]) >= lo; k, v = lates.Prev() {
				if o := getU64(v); o <= T {
					pos, occ = binary.BigEndian.Uint64(k[5:]), o
					return true
				}
			}
			return false
		}
		for k, v := lates.Seek(clockKey("late", lo)); k != nil && bytes.HasPrefix(k, late) && binary.BigEndian.Uint64(k[5:]) <= hi; k, v = lates.Next() {
			if o := getU64(v); o <= T {
				pos, occ = binary.BigEndian.Uint64(k[5:]), o
				return true
			}
		}
		return false
	}
	first, end := (from+1)/lateBlock, to/lateBlock
	if last {
		k, v := blocks.Seek(clockKey("lmin", end+1))
		if k == nil {
			k, v = blocks.Last()
		} else {
			k, v = blocks.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, lmin) && binary.BigEndian.Uint64(k[5:]) >= first; k, v = blocks.Prev() {
			if getU64(v) <= T && inBlock(binary.BigEndian.Uint64(k[5:])) {
				return pos, occ, true
			}
		}
		return 0, 0, false
	}
	for k, v := blocks.Seek(clockKey("lmin", first)); k != nil && bytes.HasPrefix(k, lmin) && binary.BigEndian.Uint64(k[5:]) <= end; k, v = blocks.Next() {
		if getU64(v) <= T && inBlock(binary.BigEndian.Uint64(k[5:])) {
			return pos, occ, true
		}
	}
	return 0, 0, false
}

// businessTimeAt returns the business time of the last business event at
// or before pos, and false when there is none.
func businessTimeAt(tx *bolt.Tx, pos uint64) (uint64, bool) {
	c := tx.Bucket(bucketClock).Cursor()
	k, v := c.Seek(clockKey("bus", pos+1))
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, []byte("bus\x00")) {
		return 0, false
	}
	return getU64(v), true
}

// lookup returns the version of key in effect at pos, if the row existed.
func lookup(c *bolt.Cursor, key string, pos uint64) (Row, bool) {
	k, v := c.Seek(versionKey(key, pos+1))
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil || len(k) != len(key)+9 || string(k[:len(key)]) != key || k[len(key)] != 0 || len(v) < 9 || v[8] == 0 {
		return Row{}, false
	}
	return Row{Key: key, Version: binary.BigEndian.Uint64(k[len(key)+1:]), State: bytes.Clone(v[9:])}, true
}

// scan lists the rows present at pos whose keys start with prefix, after
// after, jumping from one key to the next.
func scan(c *bolt.Cursor, prefix, after string, limit int, pos uint64) ([]Row, string) {
	start := []byte(prefix)
	if after >= prefix {
		start = append([]byte(after), 1) // past every version of after
	}
	var rows []Row
	for k, _ := c.Seek(start); k != nil; k, _ = c.Seek(start) {
		i := bytes.IndexByte(k, 0)
		if i < 0 || !bytes.HasPrefix(k, []byte(prefix)) {
			break
		}
		key := string(k[:i])
		if key == "" { // a Derived model's context, not a row
			start = []byte{1}
			continue
		}
		if r, ok := lookup(c, key, pos); ok {
			if len(rows) == limit {
				return rows, rows[len(rows)-1].Key
			}
			rows = append(rows, r)
		}
		start = append([]byte(key), 1)
	}
	return rows, ""
}

// folded answers a business instant the index cannot: it folds the
// business events that occurred by the instant into a fresh model.
func (rq *RowQuerier) folded(ctx context.Context, a *RowAnswer, m models.Model, prefix string, exactKey bool, after string, limit int, at AsOf, p point) (*RowAnswer, error) {
	a.Method = "fold"
	id := fmt.Sprintf("%s|%d|%d", m.Name(), at.Time.UnixNano(), p.knownAt)
	rq.mu.Lock()
	defer rq.mu.Unlock()
	f, ok := rq.folds[id]
	if !ok {
		var err error
		if f, err = rq.fold(ctx, m, at, p); err != nil {
			return nil, err
		}
		if len(rq.folds) >= foldsMax || rq.folds == nil {
			rq.folds = map[string]foldedModel{}
		}
		rq.folds[id] = f
	}
	k := f.m
	a.Position = f.pos
	if exactKey {
		if body, ok := k.Row(prefix); ok {
			a.Rows = []Row{{Key: prefix, State: body}}
		}
		return a, nil
	}
	for _, key := range k.RowKeys() {
		if !strings.HasPrefix(key, prefix) || key <= after {
			continue
		}
		if len(a.Rows) == limit {
			a.Next = a.Rows[len(a.Rows)-1].Key
			break
		}
		body, _ := k.Row(key)
		a.Rows = append(a.Rows, Row{Key: key, State: body})
	}
	return a, nil
}

// fold folds the business events that occurred by at, up to p.knownAt,
// into m: from the engine's snapshots when it asks about the log's head.
func (rq *RowQuerier) fold(ctx context.Context, m models.Model, at AsOf, p point) (foldedModel, error) {
	head, err := rq.store.LastPosition(ctx)
	if err != nil {
		return foldedModel{}, err
	}
	if p.knownAt == head {
		s, err := rq.q.State(ctx, at, m.Name())
		if err != nil {
			return foldedModel{}, err
		}
		return foldedModel{s.Models[0].(models.Keyed), s.Point.Position}, nil
	}
	_, pos, err := Fold(ctx, rq.store, events.Query{From: 1, To: p.knownAt}, []models.Model{m}, nil, BusinessFilter(at.Time))
	return foldedModel{m.(models.Keyed), pos}, err
}

// History returns the positions of the events that wrote key of model at
// or before pos, oldest first: the events that produced its state there.
func (ix *Index) History(model string, key string, pos uint64) ([]uint64, error) {
	m, err := models.NewModel(model)
	if err != nil {
		return nil, err
	}
	var out []uint64
	err = ix.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(rowsBucket(model, models.ModelVersion(m)))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		pre := append([]byte(key), 0)
		for k, _ := c.Seek(pre); k != nil && bytes.HasPrefix(k, pre) && len(k) == len(pre)+8; k, _ = c.Next() {
			v := binary.BigEndian.Uint64(k[len(pre):])
			if v > pos {
				break
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// TreeAt returns the Merkle tree size and root of every event at or before
// position pos (RFC 6962, the notary's leaves): from the frontier the index
// kept at or before pos, and the log's events after it, so that the cost
// is a batch of the fold's, not the log up to pos. Without an index entry
// before pos it reads the log from its start.
func (rq *RowQuerier) TreeAt(ctx context.Context, pos uint64) (uint64, notary.Hash, error) {
	var t notary.Frontier
	from := uint64(0)
	err := rq.ix.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTree)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.Seek(putU64(pos))
		if k == nil || getU64(k) > pos {
			k, v = c.Prev()
		}
		if k == nil {
			return nil
		}
		from = getU64(k)
		return t.UnmarshalBinary(v)
	})
	if err != nil {
		return 0, notary.Hash{}, &events.Error{Op: "projections.TreeAt", Kind: events.KindIntegrity, Field: "merkle", Err: err}
	}
	if from < pos {
		for e, err := range rq.store.Read(ctx, events.Query{From: from + 1, To: pos}) {
			if err != nil {
				return 0, notary.Hash{}, err
			}
			leaf, err := notary.EventLeaf(&e)
			if err != nil {
				return 0, notary.Hash{}, err
			}
			t.Append(notary.LeafHash(leaf))
		}
	}
	root, ok := t.Root()
	if !ok {
		return 0, notary.Hash{}, &events.Error{Op: "projections.TreeAt", Kind: events.KindInvalid, Field: "position",
			Rule: fmt.Sprintf("no event at or before position %d", pos)}
	}
	return t.Size(), root, nil
}

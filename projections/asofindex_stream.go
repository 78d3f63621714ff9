package projections

import (
	"context"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/models"
)

// IndexPoint is where a whole-state answer from the index lands: the point
// a bundle names in its manifest, as QueryAsOf would resolve it.
type IndexPoint struct {
	// Position is the last position the answer covers; on the business
	// clock, the position of the last business event that occurred by the
	// instant (QueryAsOf's Point.Position).
	Position uint64
	// KnownAt is the last position considered on the business clock (the
	// log's head when resolved); every page of the answer is asked as
	// known there, so that events appended meanwhile change nothing.
	KnownAt uint64
	// RecordedAt is the server time of the event at Position.
	RecordedAt time.Time
	// Lookup is true when every row is a lookup in the index; false on a
	// business instant that out-of-order events make Each fold each model.
	Lookup bool
}

// Point resolves at for a whole-state answer read from the index page by
// page (Each).
func (rq *RowQuerier) Point(ctx context.Context, at AsOf) (IndexPoint, error) {
	p, err := rq.resolve(ctx, at, 0)
	if err != nil {
		return IndexPoint{}, err
	}
	ip := IndexPoint{Position: p.pos, KnownAt: p.knownAt, Lookup: p.exact}
	if at.Clock == ClockBusiness {
		if ip.Position, err = rq.lastBusiness(ctx, at, p); err != nil {
			return IndexPoint{}, err
		}
	}
	if ip.RecordedAt, err = rq.q.recordedAt(ctx, ip.Position); err != nil {
		return IndexPoint{}, err
	}
	return ip, nil
}

// lastBusiness is the position of the last business event, up to
// p.knownAt, that occurred by at: the last business event at or before
// p.pos (every one there occurred by at), or a later one that came out of
// order and occurred by at, whichever is later.
func (rq *RowQuerier) lastBusiness(ctx context.Context, at AsOf, p point) (uint64, error) {
	late, _ := rq.ix.lastLate(at, p)
	// Non-business events (notary checkpoints) are few and far between:
	// read back from p.pos a window at a time.
	const window = 256
	for to := p.pos; to > late; {
		from := max(late+1, to-min(to, window-1))
		var last uint64
		for e, err := range rq.store.Read(ctx, events.Query{From: from, To: to}) {
			if err != nil {
				return 0, err
			}
			if models.IsBusiness(&e) && !e.OccurredAt.After(at.Time) {
				last = e.Position
			}
		}
		if last > 0 {
			return last, nil
		}
		if from <= 1 {
			break
		}
		to = from - 1
	}
	if late == 0 {
		return 0, outOfRange(at, "before the first event on the business clock")
	}
	return late, nil
}

// eachPage is how many rows Each reads from the index per transaction.
const eachPage = 1000

// Each calls fn with every row of model as of at, known at ip.KnownAt on
// the business clock, in key order, a page at a time: memory holds one
// page, whatever the model's size (a business instant that the index cannot
// answer by lookup folds the model, and says so in the method it returns).
func (rq *RowQuerier) Each(ctx context.Context, model string, at AsOf, ip IndexPoint, fn func(Row) error) (method string, err error) {
	var knownAt uint64
	if at.Clock == ClockBusiness {
		knownAt = ip.KnownAt
	}
	after := ""
	for {
		page, err := rq.List(ctx, model, "", after, eachPage, at, knownAt)
		if err != nil {
			return "", err
		}
		method = page.Method
		for _, r := range page.Rows {
			if err := fn(r); err != nil {
				return "", err
			}
		}
		if after = page.Next; after == "" {
			return method, nil
		}
	}
}

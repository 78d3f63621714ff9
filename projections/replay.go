package projections

import (
	"context"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/models"
)

// Filter selects the events a fold applies; nil applies every event.
type Filter func(e *events.Event) bool

// Fold applies to models every event of the log range q that filter
// selects, in position order, each model only after position from[i] (from
// may be nil: every event). It returns the position of the last event read
// and of the last event applied. Payloads are decoded once for all models,
// on a goroutine of their own, while the models apply the previous chunk.
func Fold(ctx context.Context, store events.Store, q events.Query, ms []models.Model, from []uint64, filter Filter) (lastRead, lastApplied uint64, err error) {
	return fold(ctx, store, q, ms, from, filter, nil, 4)
}

// fold is Fold whose models apply nothing until ready yields (nil: at
// once), while up to ahead chunks of 256 events are read and decoded: an
// as-of query reads its tail while the models are still being restored from
// their snapshots.
func fold(ctx context.Context, store events.Store, q events.Query, ms []models.Model, from []uint64, filter Filter,
	ready <-chan error, ahead int) (lastRead, lastApplied uint64, err error) {
	type item struct {
		e       events.Event
		payload any
	}
	chunks := make(chan []item, ahead)
	errc := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(chunks)
		buf := make([]item, 0, 256)
		for e, err := range store.Read(ctx, q) {
			if err != nil {
				errc <- err
				return
			}
			var p any
			if filter == nil || filter(&e) {
				if p, err = models.DecodePayload(&e); err != nil {
					errc <- err
					return
				}
			}
			buf = append(buf, item{e, p})
			if len(buf) == cap(buf) {
				select {
				case chunks <- buf:
				case <-ctx.Done():
					return
				}
				buf = make([]item, 0, 256)
			}
		}
		if len(buf) > 0 {
			select {
			case chunks <- buf:
			case <-ctx.Done():
			}
		}
	}()
	if ready != nil {
		select {
		case err := <-ready:
			if err != nil {
				return 0, 0, err
			}
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
	for c := range chunks {
		for i := range c {
			it := &c[i]
			lastRead = it.e.Position
			if it.payload == nil {
				continue
			}
			lastApplied = it.e.Position
			for j, m := range ms {
				if from != nil && it.e.Position <= from[j] {
					continue
				}
				if err := m.Apply(it.e, it.payload); err != nil {
					return lastRead, lastApplied, err
				}
			}
		}
	}
	select {
	case err := <-errc:
		return lastRead, lastApplied, err
	default:
	}
	return lastRead, lastApplied, ctx.Err()
}

// Rebuild folds the whole log, up to position to (0: the head when called),
// into fresh models: the reference every other way of building a model must
// agree with byte for byte.
func Rebuild(ctx context.Context, store events.Store, to uint64, ms []models.Model) error {
	_, _, err := Fold(ctx, store, events.Query{To: to}, ms, nil, nil)
	return err
}

// BusinessFilter selects the business events that occurred at or before t.
func BusinessFilter(t time.Time) Filter {
	return func(e *events.Event) bool { return models.IsBusiness(e) && !e.OccurredAt.After(t) }
}

package eventstoredb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// backend is the part of EventStoreDB the store uses. It exists so that the
// store's logic can also run against an in-memory model of the server's
// semantics in tests, where no server is reachable.
type backend interface {
	// appendEvents appends evs to stream if it is at expected.
	appendEvents(ctx context.Context, stream string, expected esdb.ExpectedRevision, evs []esdb.EventData) error
	// readStream yields the events of stream from revision from (forwards)
	// or from its end (backwards), at most max of them. A stream that does
	// not exist yields nothing.
	readStream(ctx context.Context, stream string, backwards bool, from uint64, max uint64) iter.Seq2[*esdb.RecordedEvent, error]
	// readAll yields $all forwards from from (inclusive) or backwards from
	// the end, at most max events.
	readAll(ctx context.Context, backwards bool, from esdb.AllPosition, max uint64) iter.Seq2[*esdb.RecordedEvent, error]
	// subscribeAll starts a catch-up subscription to $all after from
	// (exclusive) or from the start, filtered to streams matching regex.
	subscribeAll(ctx context.Context, from esdb.AllPosition, regex string) (subscription, error)
	close() error
}

// subscription delivers events until it is closed or dropped.
type subscription interface {
	// next blocks for the next event; it skips checkpoints and caught-up
	// notices.
	next() (*esdb.RecordedEvent, error)
	close()
}

// unbounded is the count of a read that goes to the end.
const unbounded = math.MaxInt64

// clientBackend is the backend over the EventStoreDB gRPC client.
type clientBackend struct{ c *esdb.Client }

func (b clientBackend) appendEvents(ctx context.Context, stream string, expected esdb.ExpectedRevision, evs []esdb.EventData) error {
	_, err := b.c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: expected}, evs...)
	return err
}

func (b clientBackend) readStream(ctx context.Context, stream string, backwards bool, from uint64, max uint64) iter.Seq2[*esdb.RecordedEvent, error] {
	opts := esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(from)}
	if backwards {
		opts = esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}
	}
	return func(yield func(*esdb.RecordedEvent, error) bool) {
		rs, err := b.c.ReadStream(ctx, stream, opts, max)
		if err != nil {
			if isNotFound(err) {
				return
			}
			yield(nil, err)
			return
		}
		defer rs.Close()
		drain(rs, yield, true)
	}
}

func (b clientBackend) readAll(ctx context.Context, backwards bool, from esdb.AllPosition, max uint64) iter.Seq2[*esdb.RecordedEvent, error] {
	opts := esdb.ReadAllOptions{Direction: esdb.Forwards, From: from}
	if backwards {
		opts.Direction = esdb.Backwards
	}
	return func(yield func(*esdb.RecordedEvent, error) bool) {
		rs, err := b.c.ReadAll(ctx, opts, max)
		if err != nil {
			yield(nil, err)
			return
		}
		defer rs.Close()
		drain(rs, yield, false)
	}
}

// drain yields every event of rs. The client panics on a response type it
// does not know; that panic becomes an error here, so that a newer server
// fails one read instead of the process.
func drain(rs *esdb.ReadStream, yield func(*esdb.RecordedEvent, error) bool, notFoundIsEnd bool) {
	for {
		ev, err := recv(rs)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			if notFoundIsEnd && isNotFound(err) {
				return
			}
			yield(nil, err)
			return
		}
		if ev.Event == nil {
			continue // a link to a deleted event
		}
		if !yield(ev.Event, nil) {
			return
		}
	}
}

func recv(rs *esdb.ReadStream) (ev *esdb.ResolvedEvent, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("EventStoreDB client could not handle a read response: %v", r)
		}
	}()
	return rs.Recv()
}

func isNotFound(err error) bool {
	code, ok := errorCode(err)
	return ok && code == esdb.ErrorCodeResourceNotFound
}

func (b clientBackend) subscribeAll(ctx context.Context, from esdb.AllPosition, regex string) (subscription, error) {
	sub, err := b.c.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{
		From:   from,
		Filter: &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Regex: regex},
	})
	if err != nil {
		return nil, err
	}
	return clientSubscription{sub}, nil
}

func (b clientBackend) close() error { return b.c.Close() }

type clientSubscription struct{ s *esdb.Subscription }

func (s clientSubscription) next() (*esdb.RecordedEvent, error) {
	for {
		ev := s.s.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			err := ev.SubscriptionDropped.Error
			if err == nil {
				err = errors.New("subscription dropped")
			}
			return nil, err
		case ev.EventAppeared != nil && ev.EventAppeared.Event != nil:
			return ev.EventAppeared.Event, nil
		}
	}
}

func (s clientSubscription) close() { s.s.Close() }

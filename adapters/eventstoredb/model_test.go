package eventstoredb

import (
	"context"
	"fmt"
	"iter"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
)

// model is an in-memory model of the EventStoreDB semantics the store
// relies on, for tests where no server is reachable. It is not a server;
// what it models, from the server's documented behaviour:
//
//   - expected revisions (NoStream, Revision, Any) and WrongExpectedVersion;
//   - idempotent appends: an append whose expected revision is stale but
//     whose event ids are exactly the events at those revisions succeeds
//     without writing;
//   - $all positions as byte offsets of records: increasing, not dense, and
//     a read from a position inside a record refused (InvalidPosition);
//   - creation times at 100 ns resolution, one per append;
//   - catch-up subscriptions to $all that start after (exclusive) a
//     position, with a server-side stream-name regex filter;
//   - the 1 MiB default maximum append size;
//   - other applications' events and system events in $all.
type model struct {
	mu      sync.Mutex
	all     []*esdb.RecordedEvent
	streams map[string][]*esdb.RecordedEvent
	next    uint64
	last    time.Time
	changed chan struct{}
	// failAppend, when set, may fail an append before it is applied.
	failAppend func(stream string) error
}

const modelMaxAppendSize = 1 << 20

func newModel() *model {
	m := &model{streams: map[string][]*esdb.RecordedEvent{}, next: 1 << 10, changed: make(chan struct{})}
	// A database is rarely empty: system records and another application.
	m.mustAppend("$settings", "$settings", []byte(`{}`), nil)
	m.mustAppend("customer-7", "customer.registered", []byte(`{"name":"x"}`), []byte(`{"app":"crm"}`))
	return m
}

func (m *model) mustAppend(stream, typ string, data, meta []byte) {
	err := m.appendEvents(context.Background(), stream, esdb.Any{}, []esdb.EventData{{
		EventID: uuid.New(), EventType: typ, ContentType: esdb.ContentTypeJson, Data: data, Metadata: meta}})
	if err != nil {
		panic(err)
	}
}

// client returns a backend over the model, as one connection.
func (m *model) client() backend { return &modelClient{m: m} }

func (m *model) appendEvents(ctx context.Context, stream string, expected esdb.ExpectedRevision, evs []esdb.EventData) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	size := 0
	for _, e := range evs {
		size += len(e.Data) + len(e.Metadata)
	}
	if size > modelMaxAppendSize {
		return &codeError{code: esdb.ErrorCodeUnknown, msg: "maximum append size exceeded"}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failAppend != nil {
		if err := m.failAppend(stream); err != nil {
			return err
		}
	}
	cur := m.streams[stream]
	start, ok := uint64(len(cur)), true
	switch x := expected.(type) {
	case esdb.NoStream:
		start, ok = 0, len(cur) == 0
	case esdb.StreamRevision:
		start, ok = x.Value+1, uint64(len(cur)) == x.Value+1
	case esdb.StreamExists:
		ok = len(cur) > 0
	}
	if !ok {
		if start+uint64(len(evs)) <= uint64(len(cur)) {
			same := 0
			for i, e := range evs {
				if cur[start+uint64(i)].EventID == e.EventID {
					same++
				}
			}
			if same == len(evs) {
				return nil // idempotent: already written
			}
			if same > 0 {
				return &codeError{code: esdb.ErrorCodeUnknown, msg: "corrupted idempotency"}
			}
		}
		return &codeError{code: esdb.ErrorCodeWrongExpectedVersion, msg: fmt.Sprintf("wrong expected version: stream %s has %d events", stream, len(cur))}
	}
	now := time.Now().UTC().Truncate(100 * time.Nanosecond)
	if !now.After(m.last) {
		now = m.last.Add(100 * time.Nanosecond)
	}
	m.last = now
	for _, e := range evs {
		r := &esdb.RecordedEvent{EventID: e.EventID, EventType: e.EventType, ContentType: "application/json",
			StreamID: stream, EventNumber: uint64(len(m.streams[stream])),
			Position: esdb.Position{Commit: m.next, Prepare: m.next}, CreatedDate: now,
			Data: append([]byte(nil), e.Data...), UserMetadata: append([]byte(nil), e.Metadata...)}
		m.next += 100 + uint64(len(e.Data)+len(e.Metadata)+len(stream))
		m.streams[stream] = append(m.streams[stream], r)
		m.all = append(m.all, r)
	}
	close(m.changed)
	m.changed = make(chan struct{})
	return nil
}

// indexOf returns the index in $all of the record at position p, or
// ok=false and beyond=true past the end, or an invalid-position error for a
// position inside a record.
func (m *model) indexOf(p uint64) (i int, beyond bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, r := range m.all {
		if r.Position.Prepare == p {
			return i, false, nil
		}
	}
	if p >= m.next {
		return len(m.all), true, nil
	}
	return 0, false, &codeError{code: esdb.ErrorCodeUnknown, msg: fmt.Sprintf("invalid position %d", p)}
}

func (m *model) snapshot() []*esdb.RecordedEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.all[:len(m.all):len(m.all)]
}

type modelClient struct {
	m      *model
	closed atomic.Bool
}

func (c *modelClient) check(ctx context.Context) error {
	if c.closed.Load() {
		return &codeError{code: esdb.ErrorCodeConnectionClosed, msg: "connection is closed"}
	}
	return ctx.Err()
}

func (c *modelClient) appendEvents(ctx context.Context, stream string, expected esdb.ExpectedRevision, evs []esdb.EventData) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	return c.m.appendEvents(ctx, stream, expected, evs)
}

func (c *modelClient) readStream(ctx context.Context, stream string, backwards bool, from uint64, max uint64) iter.Seq2[*esdb.RecordedEvent, error] {
	return func(yield func(*esdb.RecordedEvent, error) bool) {
		if err := c.check(ctx); err != nil {
			yield(nil, err)
			return
		}
		c.m.mu.Lock()
		evs := c.m.streams[stream]
		evs = evs[:len(evs):len(evs)]
		c.m.mu.Unlock()
		var n uint64
		if backwards {
			for i := len(evs) - 1; i >= 0 && n < max; i-- {
				n++
				if !yield(evs[i], nil) {
					return
				}
			}
			return
		}
		for i := from; i < uint64(len(evs)) && n < max; i++ {
			n++
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			if !yield(evs[i], nil) {
				return
			}
		}
	}
}

func (c *modelClient) readAll(ctx context.Context, backwards bool, from esdb.AllPosition, max uint64) iter.Seq2[*esdb.RecordedEvent, error] {
	return func(yield func(*esdb.RecordedEvent, error) bool) {
		if err := c.check(ctx); err != nil {
			yield(nil, err)
			return
		}
		all := c.m.snapshot()
		var n uint64
		if backwards {
			for i := len(all) - 1; i >= 0 && n < max; i-- {
				n++
				if err := ctx.Err(); err != nil {
					yield(nil, err)
					return
				}
				if !yield(all[i], nil) {
					return
				}
			}
			return
		}
		start := 0
		if p, ok := from.(esdb.Position); ok {
			i, beyond, err := c.m.indexOf(p.Prepare)
			if err != nil {
				yield(nil, err)
				return
			}
			if beyond {
				return
			}
			start = i
		}
		for i := start; i < len(all) && n < max; i++ {
			n++
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			if !yield(all[i], nil) {
				return
			}
		}
	}
}

func (c *modelClient) subscribeAll(ctx context.Context, from esdb.AllPosition, regex string) (subscription, error) {
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	re, err := regexp.Compile(regex)
	if err != nil {
		return nil, err
	}
	idx := 0
	if p, ok := from.(esdb.Position); ok {
		i, _, err := c.m.indexOf(p.Prepare)
		if err != nil {
			return nil, err
		}
		idx = i + 1
	}
	ctx, cancel := context.WithCancel(ctx)
	return &modelSub{c: c, ctx: ctx, cancel: cancel, idx: idx, re: re}, nil
}

func (c *modelClient) close() error {
	c.closed.Store(true)
	return nil
}

type modelSub struct {
	c      *modelClient
	ctx    context.Context
	cancel context.CancelFunc
	idx    int
	re     *regexp.Regexp
}

func (s *modelSub) next() (*esdb.RecordedEvent, error) {
	for {
		if err := s.c.check(s.ctx); err != nil {
			return nil, err
		}
		s.c.m.mu.Lock()
		var r *esdb.RecordedEvent
		if s.idx < len(s.c.m.all) {
			r = s.c.m.all[s.idx]
			s.idx++
		}
		changed := s.c.m.changed
		s.c.m.mu.Unlock()
		if r != nil {
			if s.re.MatchString(r.StreamID) {
				return r, nil
			}
			continue
		}
		select {
		case <-changed:
		case <-s.ctx.Done():
		}
	}
}

func (s *modelSub) close() { s.cancel() }

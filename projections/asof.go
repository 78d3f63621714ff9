package projections

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/models"
)

// Clock names the clock an as-of instant is read on.
type Clock string

// The clocks.
const (
	// ClockPosition: the state after every event up to a global position.
	ClockPosition Clock = "position"
	// ClockRecorded: the state after every event the server had stored at
	// or before an instant: the position events.Store.PositionAt gives.
	ClockRecorded Clock = "recorded"
	// ClockBusiness: the state after every business event whose occurred-at
	// is at or before an instant, folded in position order. Occurred-at is
	// not monotonic in position (services' clocks disagree, histories are
	// imported), so this is not a prefix of the log: an event stamped after
	// the instant is left out even if it was stored before one stamped
	// earlier. The answer covers the log up to the last event it includes;
	// an event stamped earlier but appended later changes it, which is what
	// business time means (see Point.Position). Notary checkpoints are not
	// business facts and are left out.
	ClockBusiness Clock = "business"
)

// AsOf is a point in the log's history: a position, or an instant on the
// recorded or the business clock.
type AsOf struct {
	Clock    Clock
	Position uint64    // ClockPosition
	Time     time.Time // ClockRecorded, ClockBusiness
}

// AtPosition is the state after every event up to pos.
func AtPosition(pos uint64) AsOf { return AsOf{Clock: ClockPosition, Position: pos} }

// AtRecorded is the state the server had stored at t.
func AtRecorded(t time.Time) AsOf { return AsOf{Clock: ClockRecorded, Time: t} }

// AtBusiness is the state of every business fact that occurred by t.
func AtBusiness(t time.Time) AsOf { return AsOf{Clock: ClockBusiness, Time: t} }

func (a AsOf) String() string {
	if a.Clock == ClockPosition {
		return "position " + strconv.FormatUint(a.Position, 10)
	}
	return string(a.Clock) + " " + a.Time.Format(time.RFC3339Nano)
}

// ParseAsOf reads an as-of from the command line: clock is position,
// recorded or business (empty means business for an instant and position
// for a number); value is a position or an RFC 3339 instant with an offset
// ("2023-10-04T16:59:59+07:00").
func ParseAsOf(clock, value string) (AsOf, error) {
	const op = "projections.ParseAsOf"
	bad := func(field, rule string) error {
		return &events.Error{Op: op, Kind: events.KindInvalid, Field: field, Rule: rule}
	}
	value = strings.TrimSpace(value)
	if clock == "" {
		clock = string(ClockBusiness)
		if _, err := strconv.ParseUint(value, 10, 64); err == nil {
			clock = string(ClockPosition)
		}
	}
	switch Clock(clock) {
	case ClockPosition:
		p, err := strconv.ParseUint(value, 10, 64)
		if err != nil || p == 0 {
			return AsOf{}, bad("as_of", fmt.Sprintf("a position is a whole number from 1, got %q", value))
		}
		return AtPosition(p), nil
	case ClockRecorded, ClockBusiness:
		t, err := time.Parse(time.RFC3339Nano, value)
		if err != nil {
			return AsOf{}, bad("as_of", fmt.Sprintf("an instant is RFC 3339 with an offset, like 2023-10-04T16:59:59+07:00; got %q", value))
		}
		return AsOf{Clock: Clock(clock), Time: t}, nil
	}
	return AsOf{}, bad("clock", fmt.Sprintf("clock must be position, recorded or business, got %q", clock))
}

// LogStore is the store as-of queries and bundles read: the log plus the
// JetStream it lives on, where the snapshots are. *events.JetStreamStore is
// one.
type LogStore interface {
	events.Store
	JetStream() jetstream.JetStream
	LastPosition(ctx context.Context) (uint64, error)
}

// Point is where an as-of query landed.
type Point struct {
	AsOf AsOf
	// Position is the last position of the log the answer covers: every
	// event it includes is at or before it. On the business clock it is
	// the position of the last event included.
	Position uint64
	// RecordedAt is the server time of the message at Position.
	RecordedAt time.Time
}

// State is the read models as of a point.
type State struct {
	Point  Point
	Models []models.Model // sorted by name
	// Snapshots is the snapshot position each model started from (0: none).
	Snapshots map[string]uint64
	// Replayed is how many events of the tail were read.
	Replayed int
}

// Model returns the model of that name, or nil.
func (s *State) Model(name string) models.Model {
	for _, m := range s.Models {
		if m.Name() == name {
			return m
		}
	}
	return nil
}

// Querier answers as-of queries from the engine's snapshots plus the tail of
// the log after them. It is safe for concurrent use.
type Querier struct {
	store LogStore
	st    *storage // nil when no engine ever ran: queries replay from zero

	mu            sync.Mutex
	first         uint64 // position of the first event, once known
	firstRecorded time.Time
}

// NewQuerier returns a querier on store. Without the engine's buckets it
// still answers, by replaying from the first event.
func NewQuerier(ctx context.Context, store LogStore) *Querier {
	st, err := openStorage(ctx, store.JetStream(), false)
	if err != nil {
		st = nil
	}
	return &Querier{store: store, st: st}
}

// QueryAsOf is NewQuerier(ctx, store).State(ctx, at, names...).
func QueryAsOf(ctx context.Context, store LogStore, at AsOf, names ...string) (*State, error) {
	return NewQuerier(ctx, store).State(ctx, at, names...)
}

// State returns the named read models (every built-in one when names is
// empty) as of at. It fails with KindInvalid when at is before the first
// event or after the last on its clock, and KindNotFound for an unknown
// model.
func (q *Querier) State(ctx context.Context, at AsOf, names ...string) (*State, error) {
	ms, err := models.NewModels(names...)
	if err != nil {
		return nil, err
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name() < ms[j].Name() })
	b, err := q.bounds(ctx)
	if err != nil {
		return nil, err
	}
	var s *State
	if at.Clock == ClockBusiness {
		s, err = q.business(ctx, at, b, ms)
	} else {
		s, err = q.prefix(ctx, at, b, ms)
	}
	if err != nil {
		return nil, err
	}
	s.Point.AsOf = at
	if s.Point.RecordedAt, err = q.recordedAt(ctx, s.Point.Position); err != nil {
		return nil, err
	}
	return s, nil
}

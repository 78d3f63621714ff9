package eventstoredb

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/marketledger/ledger/events"
)

// Store is an events.Store on EventStoreDB. It keeps no state between calls
// but the client connection, so any number of Stores (in any number of
// processes) may share one database.
//
// What it cannot do as the JetStream store does: a fenced decision is
// refused (see Append), and positions are $all log positions, increasing but
// not dense.
type Store struct {
	b       backend
	checker events.TypeChecker
	once    sync.Once
	closed  chan struct{}
}

var (
	_ events.Store             = (*Store)(nil)
	_ events.IdempotencyLookup = (*Store)(nil)
)

// Option configures a Store.
type Option func(*Store)

// WithTypeChecker makes the store refuse events whose type, schema version
// or body the checker refuses, as events.WithTypeChecker does.
func WithTypeChecker(c events.TypeChecker) Option { return func(s *Store) { s.checker = c } }

// pingTimeout bounds the reachability check of Open.
const pingTimeout = 10 * time.Second

// Open connects to the EventStoreDB at a connection string such as
// "esdb://127.0.0.1:2113?tls=false" (credentials as
// "esdb://user:pass@host:2113"), and checks that the server answers and
// that the user may read $all, so that a wrong address or wrong credentials
// fail here with one clear error instead of on the first append.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	const op = "eventstoredb.Open"
	conf, err := esdb.ParseConnectionString(url)
	if err != nil {
		return nil, &events.Error{Op: op, Kind: events.KindInvalid, Field: "url", Rule: "not an EventStoreDB connection string (esdb://host:2113?tls=false)", Err: err}
	}
	// The client logs every failed call to stdout; the store returns them.
	conf.Logger = nil
	return OpenConfig(ctx, conf, opts...)
}

// OpenConfig is Open with a client configuration built by the caller.
func OpenConfig(ctx context.Context, conf *esdb.Configuration, opts ...Option) (*Store, error) {
	const op = "eventstoredb.Open"
	c, err := esdb.NewClient(conf)
	if err != nil {
		return nil, &events.Error{Op: op, Kind: events.KindInvalid, Field: "url", Rule: "invalid client configuration", Err: err}
	}
	s := newStore(clientBackend{c}, opts...)
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	for _, err := range s.b.readAll(pctx, true, esdb.End{}, 1) {
		if err != nil {
			c.Close()
			e := mapCtx(pctx, op, err).(*events.Error)
			if e.Kind == events.KindUnavailable {
				e.Rule = fmt.Sprintf("no EventStoreDB server was reachable at %s within %s", conf.Address, pingTimeout)
			}
			return nil, e
		}
	}
	return s, nil
}

func newStore(b backend, opts ...Option) *Store {
	s := &Store{b: b, closed: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Close closes the connection. Calls in flight fail with KindUnavailable.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		err = s.b.close()
	})
	return err
}

func (s *Store) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

func closedErr(op string) error {
	return &events.Error{Op: op, Kind: events.KindUnavailable, Rule: "store closed"}
}

// ruleFence explains why a fenced decision is refused.
const ruleFence = "fencing needs atomic multi-stream append (the decision's stream and the policy streams " +
	"checked in one write), which EventStoreDB does not have before KurrentDB 25.1; " +
	"see docs/eventstoredb.md for how the freeze guarantee is kept"

// mirrorReserved is the aggregate the mirror's checkpoint stream would be
// ("ledger-mirror-checkpoint"); Append refuses it so that the two never mix.
var mirrorReserved = events.AggregateRef{Context: "ledger", ID: "mirror-checkpoint"}

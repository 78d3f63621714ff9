package main

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/bundle"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/projections/notary"
)

// indexFile is the as-of index's file in the data directory (ADR 0019): a
// cache of the log, deleted and rebuilt at will.
const indexFile = "asof.db"

// indexPoll is how often the index follower looks for new events.
const indexPoll = 250 * time.Millisecond

// asOfService answers point and list queries from the as-of index.
type asOfService struct {
	store projections.LogStore
	ix    *projections.Index
	rq    *projections.RowQuerier
	nt    *notary.Notary // inclusion proofs; nil: no proofs
}

// rowQuery is a point or list query as the HTTP API and the CLI take it.
type rowQuery struct {
	model, key           string
	asOf, clock, knownAt string
	proof                bool
	prefix, after        string
	limit                int
}

// answer runs q: one row when q.key is set, else a page.
func (s *asOfService) answer(ctx context.Context, q rowQuery) (*bundle.RowAnswer, error) {
	if _, err := models.NewModel(q.model); err != nil {
		return nil, malformed(&events.Error{Kind: events.KindInvalid, Field: "model", Rule: "unknown read model " + strconv.Quote(q.model) + "; known: " + joinNames(models.ModelNames())})
	}
	at, err := s.asOf(ctx, q.clock, q.asOf)
	if err != nil {
		return nil, err
	}
	var knownAt uint64
	if q.knownAt != "" {
		if knownAt, err = strconv.ParseUint(q.knownAt, 10, 64); err != nil || knownAt == 0 {
			return nil, malformed(&events.Error{Kind: events.KindInvalid, Field: "known_at", Rule: "a position, a whole number from 1"})
		}
	}
	if q.key == "" {
		if q.proof {
			return nil, malformed(&events.Error{Kind: events.KindInvalid, Field: "proof", Rule: "a proof covers one row: name its key"})
		}
		a, err := s.rq.List(ctx, q.model, q.prefix, q.after, q.limit, at, knownAt)
		if err != nil {
			return nil, err
		}
		return &bundle.RowAnswer{RowAnswer: *a}, nil
	}
	a, err := s.rq.Row(ctx, q.model, q.key, at, knownAt)
	if err != nil {
		return nil, err
	}
	if !q.proof {
		return &bundle.RowAnswer{RowAnswer: *a}, nil
	}
	if s.nt == nil {
		return nil, &events.Error{Kind: events.KindUnavailable, Field: "proof", Rule: "this process keeps no notary tree"}
	}
	return bundle.ProveRow(ctx, s.store, s.ix, s.nt, a)
}

// asOf parses the as-of; none is the index's head on the position clock.
func (s *asOfService) asOf(ctx context.Context, clock, value string) (projections.AsOf, error) {
	if value == "" && (clock == "" || clock == string(projections.ClockPosition)) {
		head := s.ix.Head()
		if head == 0 {
			if _, err := s.ix.WaitHead(ctx, 1, projections.IndexWaitMax); err != nil {
				return projections.AsOf{}, err
			}
			head = s.ix.Head()
		}
		return projections.AtPosition(head), nil
	}
	if value == "" {
		return projections.AsOf{}, malformed(&events.Error{Kind: events.KindInvalid, Field: "as_of", Rule: "an instant (RFC 3339 with an offset) is required on the " + clock + " clock"})
	}
	return projections.ParseAsOf(clock, value)
}

// malformed marks bad input as a malformed request (400), not a refused
// decision (422).
func malformed(err error) error {
	var e *events.Error
	if errors.As(err, &e) && e.Kind == events.KindInvalid && e.Reason == "" {
		c := *e
		c.Reason = events.ReasonMalformed
		return &c
	}
	return err
}

func joinNames(names []string) string {
	s := ""
	for i, n := range names {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}

// mountModels serves the as-of index:
//
//	GET /v1/models/{model}/{key}?as_of=&clock=&known_at=&proof=
//	GET /v1/models/{model}?as_of=&clock=&known_at=&prefix=&after=&limit=
func (a *api) mountModels(s *asOfService) {
	read := httpauth.Require(httpauth.ReadRoles...)
	handle := func(w http.ResponseWriter, r *http.Request, key string) {
		q := r.URL.Query()
		rq := rowQuery{model: r.PathValue("model"), key: key, asOf: q.Get("as_of"), clock: q.Get("clock"),
			knownAt: q.Get("known_at"), prefix: q.Get("prefix"), after: q.Get("after"), limit: 100}
		if v := q.Get("proof"); v != "" {
			p, err := strconv.ParseBool(v)
			if err != nil {
				writeError(w, malformed(&events.Error{Kind: events.KindInvalid, Field: "proof", Rule: "true or false"}))
				return
			}
			rq.proof = p
		}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				writeError(w, malformed(&events.Error{Kind: events.KindInvalid, Field: "limit", Rule: "a whole number from 1 to 1000"}))
				return
			}
			rq.limit = n
		}
		ans, err := s.answer(r.Context(), rq)
		if err != nil {
			writeError(w, malformed(err))
			return
		}
		writeJSON(w, http.StatusOK, ans)
	}
	a.mux.Handle("GET /v1/models/{model}/{key...}", read(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handle(w, r, r.PathValue("key"))
	})))
	a.mux.Handle("GET /v1/models/{model}", read(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handle(w, r, "")
	})))
}

// startIndex opens the as-of index in dataDir and follows the log into it
// until stop is called.
func startIndex(ctx context.Context, dataDir string, store projections.LogStore, log *zap.Logger) (*asOfService, func(), error) {
	ix, err := projections.OpenIndex(filepath.Join(dataDir, indexFile))
	if err != nil {
		return nil, nil, err
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := ix.Follow(fctx, store, indexPoll); fctx.Err() == nil {
			log.Error("the as-of index stopped following the log; point queries wait and then say how far behind it is", zap.Error(err))
		}
	}()
	s := &asOfService{store: store, ix: ix, rq: projections.NewRowQuerier(ctx, ix, store), nt: notary.New(store, nil)}
	return s, func() {
		cancel()
		<-done
		ix.Close()
	}, nil
}

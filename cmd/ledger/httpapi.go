package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/marketledger/ledger/cmd/ledger/internal/eventhttp"
	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/service"
)

// HTTP limits: a bound on everything a client controls.
const (
	maxBodyBytes      = 1 << 20
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 32 << 10
)

// api is the HTTP surface of `ledger serve`. Health, readiness and the
// OpenAPI document are open; every other endpoint group needs a bearer
// token of a role it admits (internal/httpauth), and every client is
// bounded in requests in flight.
type api struct {
	mux     *http.ServeMux
	reg     *namedRegistry
	metrics *apiMetrics
	node    *node
	log     *zap.Logger
	ready   func() error
	// history, when set, compares the stream with what the ledger
	// recorded of it (checkHistory); without it only the stream's
	// settings are checked.
	history *historyGuard
	// buckets are the streams of the buckets this process uses besides
	// LEDGER; /readyz fails, naming the one it waits for, while any has no
	// leader.
	buckets []string
	authn   *httpauth.Authenticator
	limit   *httpauth.Limiter
}

func newAPI(n *node, tokens httpauth.TokenLookup, limit *httpauth.Limiter, log *zap.Logger) *api {
	a := &api{mux: http.NewServeMux(), reg: newNamedRegistry(), node: n, log: log,
		authn: httpauth.NewAuthenticator(tokens, log), limit: limit}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics = newAPIMetrics(a.reg)
	a.reg.MustRegister(newStoreCollector(n.stores))
	if n.appendMetrics != nil {
		n.appendMetrics.register(a.reg)
	}
	a.mux.Handle("GET /metrics", httpauth.Require(httpauth.MetricsRoles...)(promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{})))
	events := http.NewServeMux()
	eventhttp.New(n.store, eventhttp.Options{KnownType: func(t string) bool {
		_, ok := contracts.CurrentVersion(t)
		return ok
	}}).Register(events)
	read := httpauth.Require(httpauth.ReadRoles...)
	a.mux.Handle("GET /v1/events", read(events))
	a.mux.Handle("GET /v1/subscribe", read(events))
	a.mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPIDoc)
	})
	return a
}

// handler is the whole API with its bounds: body size, authentication,
// then the per-client limit (which knows the caller's token). Health and
// readiness stay outside the limit, so that a probe is answered however
// many streams the clients hold open.
func (a *api) handler() http.Handler {
	top := http.NewServeMux()
	top.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	top.HandleFunc("GET /readyz", a.readyz)
	top.Handle("/", a.authn.Middleware(a.limit.Middleware(a.metrics.instrument(problemRoutes(a.mux)))))
	return http.MaxBytesHandler(top, maxBodyBytes)
}

// problemRoutes answers a request that matches no route as every other
// refusal is answered, with a problem+json body: 404 for an unknown path,
// 405 (with the mux's Allow header) for a known path and another method.
func problemRoutes(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &headerRecorder{header: http.Header{}}
		mux.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		if rec.status == http.StatusMethodNotAllowed {
			service.HTTPProblem(rec.status, "method_not_allowed", "method not allowed",
				r.Method+" is not served on "+r.URL.Path+"; allowed: "+rec.header.Get("Allow")).Write(w)
			return
		}
		service.HTTPProblem(http.StatusNotFound, events.KindNotFound.String(), "not found",
			"no route "+r.Method+" "+r.URL.Path+"; the routes are listed in /openapi.json").Write(w)
	})
}

// headerRecorder keeps the status and headers the mux answers an unrouted
// request with, and drops its plain-text body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (h *headerRecorder) WriteHeader(status int)      { h.status = status }

// readyz answers 200 only when the log answers: the stream is reachable
// and has a leader (and so have the buckets this process uses), its
// settings still keep the guarantees, and it holds every position the
// ledger recorded it held (checkHistory).
func (a *api) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var err error
	if a.history != nil {
		// First: it names what is missing, a missing stream included.
		err = a.history.check(ctx)
	}
	var s jetstream.Stream
	if err == nil {
		// A stream without a leader answers nothing: say which one
		// readiness waits for.
		s, err = events.WaitStreamLeader(ctx, a.node.js, events.StreamName)
	}
	for _, b := range a.buckets {
		if err == nil {
			_, err = events.WaitStreamLeader(ctx, a.node.js, b)
		}
	}
	if err == nil {
		err = events.CheckStreamConfig(s.CachedInfo().Config)
	}
	if err == nil && a.ready != nil {
		err = a.ready()
	}
	if err != nil {
		service.HTTPProblem(http.StatusServiceUnavailable, events.KindUnavailable.String(), "not ready", err.Error()).Write(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "last_position": s.CachedInfo().State.LastSeq})
}

// serveHTTP listens on addr until ctx ends, then shuts down gracefully:
// in-flight requests finish (bounded), new ones are refused.
// With tlsCfg it serves HTTPS only.
func (a *api) serveHTTP(ctx context.Context, addr string, tlsCfg *tls.Config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return usagef("http: cannot listen on %s: %v", addr, err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: readHeaderTimeout,
		// No server-wide write timeout: /v1/subscribe streams for as long
		// as the client stays; every other handler ends with its request.
		ReadTimeout: readTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes,
		// TLS handshake failures and the like, as structured warnings.
		ErrorLog: zap.NewStdLog(a.log.Named("http").WithOptions(zap.IncreaseLevel(zap.WarnLevel)))}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.Info("http listening", zap.String("addr", ln.Addr().String()), zap.Bool("tls", tlsCfg != nil))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// storeCollector exports the append counters of every store of the
// process (one per NATS user).
type storeCollector struct {
	stores                                    func() []*events.JetStreamStore
	batches, decisions, conflicts, policyConf *prometheus.Desc
	resends, resolvedStored                   *prometheus.Desc
}

func newStoreCollector(stores func() []*events.JetStreamStore) *storeCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("ledger_store_"+name, help, nil, nil)
	}
	return &storeCollector{stores: stores,
		batches:    d("batches_total", "Atomic batches committed by this process."),
		decisions:  d("decisions_total", "Decisions committed by this process."),
		conflicts:  d("conflicts_total", "Decisions refused for a stale expected version."),
		policyConf: d("policy_conflicts_total", "Fenced decisions refused because a newer policy event existed."),
		resends:    d("batch_resends_total", "Batches sent again after no answer (a stream leader change) or a batch the server did not receive whole."),
		resolvedStored: d("batch_resends_found_stored_total",
			"Batches sent again whose earlier send the log showed stored: answered once, never stored twice."),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.batches
	ch <- c.decisions
	ch <- c.conflicts
	ch <- c.policyConf
	ch <- c.resends
	ch <- c.resolvedStored
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	var s events.Stats
	for _, st := range c.stores() {
		one := st.Stats()
		s.Batches += one.Batches
		s.Decisions += one.Decisions
		s.Conflicts += one.Conflicts
		s.PolicyConflicts += one.PolicyConflicts
		s.Resends += one.Resends
		s.ResolvedStored += one.ResolvedStored
	}
	ch <- prometheus.MustNewConstMetric(c.batches, prometheus.CounterValue, float64(s.Batches))
	ch <- prometheus.MustNewConstMetric(c.decisions, prometheus.CounterValue, float64(s.Decisions))
	ch <- prometheus.MustNewConstMetric(c.conflicts, prometheus.CounterValue, float64(s.Conflicts))
	ch <- prometheus.MustNewConstMetric(c.policyConf, prometheus.CounterValue, float64(s.PolicyConflicts))
	ch <- prometheus.MustNewConstMetric(c.resends, prometheus.CounterValue, float64(s.Resends))
	ch <- prometheus.MustNewConstMetric(c.resolvedStored, prometheus.CounterValue, float64(s.ResolvedStored))
}

// policyViewState is what readiness and the metrics read from the services'
// policy view (*policyview.View).
type policyViewState interface {
	Err() error
	Breaks() uint64
}

// watchPolicyView makes /readyz fail while the services' policy view refuses
// snapshots (it found the policy log not continuous, or stopped), when the
// fenced commands are refused anyway, and exports
// ledger_policy_view_failed_closed and ledger_policy_view_gaps_total.
func (a *api) watchPolicyView(v policyViewState) {
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_policy_view_failed_closed",
		Help: "1 while the services' policy view refuses fenced commands (policy log not continuous, or view stopped), else 0"},
		func() float64 {
			if v.Err() != nil {
				return 1
			}
			return 0
		}))
	a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_policy_view_gaps_total",
		Help: "times the services' policy view found a policy message missing (each re-read that finds it still missing counts)"},
		func() float64 { return float64(v.Breaks()) }))
	prev := a.ready
	a.ready = func() error {
		if prev != nil {
			if err := prev(); err != nil {
				return err
			}
		}
		if err := v.Err(); err != nil {
			return fmt.Errorf("policy view: %w", err)
		}
		return nil
	}
}

// watchSkew exports the services' measured clock skew as
// ledger_clock_skew_seconds (the server's recorded time of an append minus
// the decision instant it states: positive when the services' clock is
// behind the server's, negative when ahead) and makes /readyz fail while it
// is beyond its bound, when the services refuse fenced commands anyway.
func (a *api) watchSkew(skew *command.Skew) {
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_clock_skew_seconds",
		Help: "recorded minus decided time of the services' recent appends (smallest of a recent window); 0 until measured"},
		func() float64 {
			est, _ := skew.Estimate()
			return est.Seconds()
		}))
	prev := a.ready
	a.ready = func() error {
		if prev != nil {
			if err := prev(); err != nil {
				return err
			}
		}
		return skew.Check()
	}
}

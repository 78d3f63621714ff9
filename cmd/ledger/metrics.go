package main

import (
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/policyview"
)

// apiMetrics are the RED metrics of the HTTP API and of the commands it
// runs, and the build of the binary.
type apiMetrics struct {
	httpDuration *prometheus.HistogramVec
	commands     *prometheus.HistogramVec
	refusals     *prometheus.CounterVec
}

// Latency buckets from 1 ms to 10 s: a command is a few milliseconds on a
// quiet ledger and a leader change can hold one for seconds.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newAPIMetrics(reg prometheus.Registerer) *apiMetrics {
	m := &apiMetrics{
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ledger_http_request_duration_seconds",
			Help: "HTTP requests by route pattern, method and status, from the first byte read to the last written.", Buckets: latencyBuckets},
			[]string{"route", "method", "status"}),
		commands: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ledger_command_duration_seconds",
			Help: "Commands over HTTP by name and outcome (ok, or the refusal's kind), from decoding to the answer.", Buckets: latencyBuckets},
			[]string{"command", "outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_refusals_total",
			Help: "Commands refused, by command, kind (frozen, invalid, conflict, ...), reason (no_stock, contention, ...) and the rule that refused it (a policy rule id, or empty)."},
			[]string{"command", "kind", "reason", "rule"}),
	}
	version, goVersion := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ledger_build_info", Help: "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion}})
	build.Set(1)
	reg.MustRegister(m.httpDuration, m.commands, m.refusals, build)
	return m
}

// command records one command's outcome and latency; a refusal is also
// counted by its kind, reason and rule.
func (m *apiMetrics) command(name string, start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		kind := events.KindOf(err)
		outcome = kind.String()
		rule := ""
		if r, ok := policyview.RefusalOf(err); ok {
			rule = r.RuleID
		}
		m.refusals.WithLabelValues(name, kind.String(), string(events.ReasonOf(err)), rule).Inc()
	}
	m.commands.WithLabelValues(name, outcome).Observe(time.Since(start).Seconds())
}

// instrument measures every request by its route pattern (not its path:
// ids would make the label unbounded).
func (m *apiMetrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		r, span := startHTTPSpan(r)
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		endHTTPSpan(span, route, r.Method, sw.status)
		m.httpDuration.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Observe(time.Since(start).Seconds())
	})
}

// statusWriter remembers the status a handler answered with. It passes
// Flush through, so that the server-sent events stream still streams.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// startHTTPSpan starts the span of one request. A client is not trusted to
// choose the trace: every request is the root of a trace of its own, and a
// well-formed traceparent the client sent becomes a link to its trace; a
// malformed one is ignored.
func startHTTPSpan(r *http.Request) (*http.Request, trace.Span) {
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer)}
	if r.Header.Get("Traceparent") != "" {
		if sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
	}
	ctx, span := httpTracer().Start(r.Context(), "HTTP "+r.Method, opts...)
	if !span.IsRecording() {
		return r, span
	}
	return r.WithContext(ctx), span
}

// endHTTPSpan names the span by its route pattern (never by path: ids
// would make every name unique) and records the status.
func endHTTPSpan(span trace.Span, route, method string, status int) {
	if span.IsRecording() {
		span.SetName(method + " " + strings.TrimPrefix(route, method+" "))
		span.SetAttributes(attribute.String("http.route", route), attribute.String("http.request.method", method),
			attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	}
	span.End()
}

// natsCommands measures the commands the services answer over NATS (the
// checkout's steps, other processes' requests): the HTTP edge's commands
// are in ledger_command_duration_seconds and ledger_refusals_total. It
// exists before the API does, since the services are served first; the
// API registers it.
type natsCommands struct {
	duration *prometheus.HistogramVec
}

func newNATSCommands() *natsCommands {
	return &natsCommands{duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ledger_service_command_duration_seconds",
		Help:    "Commands the services answered over NATS (the checkout's steps among them) by name and outcome (ok, or the refusal's kind), from taking the request up to the answer.",
		Buckets: latencyBuckets}, []string{"command", "outcome"})}
}

// observe is a service.Config.Observe.
func (m *natsCommands) observe(name string, start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = events.KindOf(err).String()
	}
	m.duration.WithLabelValues(name, outcome).Observe(time.Since(start).Seconds())
}

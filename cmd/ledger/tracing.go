package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
)

// Tracing is configured by the standard OpenTelemetry environment and is
// off unless it asks for an exporter:
//
//   - OTEL_TRACES_EXPORTER=otlp (or any OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set): OTLP over HTTP, configured by
//     the OTEL_EXPORTER_OTLP_* variables;
//   - OTEL_TRACES_EXPORTER=console: one JSON object per span, on stdout or
//     appended to the file LEDGER_TRACES_FILE names (what tests read);
//   - OTEL_TRACES_EXPORTER=none, OTEL_SDK_DISABLED=true, or nothing: off.
//
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and
// OTEL_BSP_* are honoured by the SDK.
const envTracesFile = "LEDGER_TRACES_FILE"

// spanQueueMax bounds the spans ended and not yet exported: past it a span
// is dropped and counted, never waited for.
const spanQueueMax = 4096

// tracingState is the tracing of one serve: the spans it dropped, and how
// to flush and stop it.
type tracingState struct {
	dropped  atomic.Uint64
	queued   atomic.Int64
	logOnce  sync.Once
	log      *zap.Logger
	provider *sdktrace.TracerProvider
	closer   io.Closer
}

// Dropped returns the spans dropped: queue full, or the export failed.
func (t *tracingState) Dropped() uint64 {
	if t == nil {
		return 0
	}
	return t.dropped.Load()
}

// drop counts n dropped spans and says so once per process start: an
// unreachable collector must not fill the log.
func (t *tracingState) drop(n int, err error) {
	t.dropped.Add(uint64(n))
	t.logOnce.Do(func() {
		t.log.Warn("trace spans dropped; commands go on untraced until the exporter recovers (counted in ledger_trace_spans_dropped_total, said once)",
			zap.Int("spans", n), zap.Error(err))
	})
}

// Shutdown flushes what is queued (within ctx) and stops tracing.
func (t *tracingState) Shutdown(ctx context.Context) {
	if t == nil {
		return
	}
	globalTracer.use(nil)
	_ = t.provider.Shutdown(ctx)
	if t.closer != nil {
		_ = t.closer.Close()
	}
}

// startTracing sets tracing up from the environment, or returns nil when it
// is off. A configuration that cannot work (a malformed endpoint, an
// unknown exporter) never stops serve: it is logged, and every span is
// dropped and counted.
func startTracing(ctx context.Context, log *zap.Logger) *tracingState {
	kind := tracesExporter()
	if kind == "" {
		return nil
	}
	t := &tracingState{log: log}
	exp, err := newSpanExporter(ctx, kind, t)
	if err != nil {
		exp = failingExporter{err: err}
	}
	res, _ := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", "ledger")),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	bsp := sdktrace.NewBatchSpanProcessor(&countingExporter{next: exp, t: t}, sdktrace.WithMaxQueueSize(spanQueueMax))
	t.provider = sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSpanProcessor(&boundedProcessor{next: bsp, t: t}))
	globalTracer.use(t.provider)
	log.Info("tracing on", zap.String("exporter", kind))
	return t
}

// tracesExporter returns the exporter the environment asks for, "" for none.
func tracesExporter() string {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return ""
	}
	switch v := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))); v {
	case "none":
		return ""
	case "":
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
			return "otlp"
		}
		return ""
	default:
		return v
	}
}

func newSpanExporter(ctx context.Context, kind string, t *tracingState) (sdktrace.SpanExporter, error) {
	switch kind {
	case "otlp":
		if err := checkOTLPEndpoints(); err != nil {
			return nil, err
		}
		// No retries: a collector that is away loses the spans of the
		// moment (counted) instead of holding the queue for a minute.
		return otlptracehttp.New(ctx, otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
	case "console":
		var w io.Writer = os.Stdout
		if path := os.Getenv(envTracesFile); path != "" {
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", envTracesFile, err)
			}
			w, t.closer = f, f
		}
		return stdouttrace.New(stdouttrace.WithWriter(w))
	}
	return nil, fmt.Errorf("OTEL_TRACES_EXPORTER %q: want otlp, console or none", kind)
}

// boundedProcessor hands ended spans to the batch processor while fewer
// than spanQueueMax are waiting for export, and drops (and counts) the rest:
// a command never waits for a collector.
type boundedProcessor struct {
	next sdktrace.SpanProcessor
	t    *tracingState
}

func (p *boundedProcessor) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) {
	p.next.OnStart(ctx, s)
}

func (p *boundedProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	if p.t.queued.Add(1) > spanQueueMax {
		p.t.queued.Add(-1)
		p.t.drop(1, errors.New("export queue full"))
		return
	}
	p.next.OnEnd(s)
}

func (p *boundedProcessor) Shutdown(ctx context.Context) error   { return p.next.Shutdown(ctx) }
func (p *boundedProcessor) ForceFlush(ctx context.Context) error { return p.next.ForceFlush(ctx) }

// countingExporter releases exported spans from the bound and counts the
// spans of a failed export as dropped.
type countingExporter struct {
	next sdktrace.SpanExporter
	t    *tracingState
}

func (e *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.next.ExportSpans(ctx, spans)
	e.t.queued.Add(-int64(len(spans)))
	if err != nil {
		e.t.drop(len(spans), err)
	}
	return nil // counted and said once; the SDK's handler would say it again each time
}

func (e *countingExporter) Shutdown(ctx context.Context) error { return e.next.Shutdown(ctx) }

// failingExporter stands for an exporter that could not be made.
type failingExporter struct{ err error }

func (f failingExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return f.err }
func (f failingExporter) Shutdown(context.Context) error                             { return nil }

// swappableProvider is the process's global tracer provider once tracing
// was on: the OpenTelemetry global binds the packages' tracers to the first
// provider set, so each serve swaps its own in and out here instead.
type swappableProvider struct {
	embedded.TracerProvider
	current atomic.Pointer[sdktrace.TracerProvider]
}

var (
	globalTracer     = &swappableProvider{}
	installGlobalOne sync.Once
)

// use makes p the provider behind the global one; nil turns tracing off.
func (s *swappableProvider) use(p *sdktrace.TracerProvider) {
	s.current.Store(p)
	if p != nil {
		installGlobalOne.Do(func() {
			otel.SetTracerProvider(s)
			otel.SetTextMapPropagator(propagation.TraceContext{})
		})
	}
}

func (s *swappableProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return &swappableTracer{p: s, name: name, opts: opts}
}

type swappableTracer struct {
	embedded.Tracer
	p    *swappableProvider
	name string
	opts []trace.TracerOption
}

func (t *swappableTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if p := t.p.current.Load(); p != nil {
		return p.Tracer(t.name, t.opts...).Start(ctx, name, opts...)
	}
	return noop.NewTracerProvider().Tracer("").Start(ctx, name, opts...)
}

// httpTracer names the HTTP edge's spans.
func httpTracer() trace.Tracer { return otel.Tracer("github.com/marketledger/ledger/cmd/ledger") }

// flushTimeout bounds the flush of the spans still queued at shutdown.
const flushTimeout = 2 * time.Second

// watchTracing exports the spans tracing dropped (0 while it is off).
func (a *api) watchTracing(t *tracingState) {
	a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_trace_spans_dropped_total",
		Help: "Trace spans dropped because the export queue was full or the export failed; commands never wait for the collector."},
		func() float64 { return float64(t.Dropped()) }))
}

// checkOTLPEndpoints refuses a malformed OTLP endpoint, which the exporter
// would silently replace with localhost:4318.
func checkOTLPEndpoints() error {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		v := os.Getenv(name)
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s %q: must be an http or https URL with a host", name, v)
		}
	}
	return nil
}

// Package tracing is the ledger's one way to make spans and to carry W3C
// trace context between its processes: in NATS headers (traceparent) on
// requests to the services, and on each event (events.Event.Traceparent)
// across the log, so that a checkout's steps, run by a follower long after
// the HTTP call that placed the order, join the order's trace.
//
// It uses the OpenTelemetry API only. Which provider records and where the
// spans go is the binary's choice (cmd/ledger sets it from the OTEL_*
// environment); with none set every span is a no-op and the package costs
// next to nothing. It must never export, sample or configure anything.
package tracing

import (
	"context"
	"net/http"

	"github.com/marketledger/ledger/events"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Scope names the ledger's instrumentation.
const Scope = "github.com/marketledger/ledger"

// HeaderTraceparent is the W3C trace context header on NATS requests.
const HeaderTraceparent = "traceparent"

var (
	tracer = otel.Tracer(Scope)
	// propagator reads and writes traceparent (and tracestate). A
	// malformed traceparent is ignored by it: the span started under it is
	// the root of a new trace, and the request goes on.
	propagator = propagation.TraceContext{}
)

// Span is a started span; End it once.
type Span struct{ s trace.Span }

// The span kinds, made once: an option built per span would cost an
// allocation on every command even with tracing off.
var (
	serverKind   = trace.WithSpanKind(trace.SpanKindServer)
	consumerKind = trace.WithSpanKind(trace.SpanKindConsumer)
)

// Start starts a span named name as a child of the span ctx carries.
// Attributes that cost something to make are best set after checking
// Recording.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, Span) {
	ctx, s := tracer.Start(ctx, name)
	if len(attrs) > 0 && s.IsRecording() {
		s.SetAttributes(attrs...)
	}
	return ctx, Span{s}
}

// StartServer starts the span of a request served (kind server).
func StartServer(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, Span) {
	ctx, s := tracer.Start(ctx, name, serverKind)
	if len(attrs) > 0 && s.IsRecording() {
		s.SetAttributes(attrs...)
	}
	return ctx, Span{s}
}

// StartConsumer starts the span of an event delivered from the log, as a
// child of the decision that stored it when the event carries its trace
// context, and as a new trace otherwise.
func StartConsumer(ctx context.Context, name string, e *events.Event) (context.Context, Span) {
	if sc, ok := events.SpanContextOf(e.Traceparent); ok {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	ctx, s := tracer.Start(ctx, name, consumerKind)
	if s.IsRecording() {
		s.SetAttributes(attribute.String("ledger.event.type", e.Type), attribute.Int64("ledger.event.position", int64(e.Position)),
			attribute.String("ledger.aggregate", e.Context()+"/"+e.AggregateID))
	}
	return ctx, Span{s}
}

// Recording reports whether the span records anything: attributes that
// cost something to compute are set only then.
func (s Span) Recording() bool { return s.s.IsRecording() }

// Set adds attributes to the span.
func (s Span) Set(attrs ...attribute.KeyValue) { s.s.SetAttributes(attrs...) }

// End ends the span, marking it failed with err when err is not nil.
func (s Span) End(err error) {
	if err != nil && s.s.IsRecording() {
		s.s.RecordError(err)
		s.s.SetStatus(codes.Error, events.KindOf(err).String())
	}
	s.s.End()
}

// Traceparent returns the W3C traceparent of the span ctx carries, "" when
// it carries none that is valid: what command.Run stamps on each event.
func Traceparent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	flags := "00"
	if sc.IsSampled() {
		flags = "01"
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + flags
}

// TraceID returns the trace id of the span ctx carries, "" when none.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// Inject writes the trace context ctx carries into the headers of a NATS
// request; nothing when ctx carries none.
func Inject(ctx context.Context, h nats.Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagator.Inject(ctx, natsCarrier(h))
}

// Extract returns ctx carrying the remote trace context of a NATS request's
// headers. A missing or malformed traceparent leaves ctx as it is: the
// request's span then starts a new trace.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, natsCarrier(h))
}

// natsCarrier reads and writes trace context in NATS headers, whose keys
// are case-sensitive: written in lower case as W3C spells them, and read in
// lower case or in HTTP's canonical form.
type natsCarrier nats.Header

func (c natsCarrier) Get(key string) string {
	if v := nats.Header(c).Get(key); v != "" {
		return v
	}
	return http.Header(c).Get(key)
}

func (c natsCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// String is a span attribute with a string value: services set attributes
// through this package without importing OpenTelemetry themselves.
func String(key, value string) attribute.KeyValue { return attribute.String(key, value) }

// Int is a span attribute with an integer value.
func Int(key string, value int) attribute.KeyValue { return attribute.Int(key, value) }

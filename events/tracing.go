package events

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// tracer names the log's spans. It resolves through the global provider on
// every Start, so a provider set after the store was opened is used; with
// none set the spans are no-ops and cost a few nanoseconds.
var tracer = otel.Tracer("github.com/marketledger/ledger/events")

// SpanContextOf returns the remote span context of a W3C traceparent, and
// whether it was valid.
func SpanContextOf(traceparent string) (trace.SpanContext, bool) {
	if !ValidTraceparent(traceparent) {
		return trace.SpanContext{}, false
	}
	tid, err1 := trace.TraceIDFromHex(traceparent[3:35])
	sid, err2 := trace.SpanIDFromHex(traceparent[36:52])
	if err1 != nil || err2 != nil {
		return trace.SpanContext{}, false
	}
	var flags trace.TraceFlags
	if traceparent[53:55] == "01" {
		flags = trace.FlagsSampled
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true}), true
}

// batchSpan starts the span of one group-commit batch. A batch carries
// decisions of many traces, so it is a root of its own, linked to the
// decision of each traced event it stores.
// The committer's goroutine has no request of its own: the span starts
// from the background.
func batchSpan(batch []*pending) trace.Span {
	_, span := tracer.Start(context.Background(), "events.commit", trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindProducer))
	if !span.IsRecording() {
		return span
	}
	msgs := 0
	for _, p := range batch {
		msgs += len(p.msgs)
		// A decision of several commands (parts) carries each one's trace.
		prev := ""
		for i := range p.d.Events {
			tp := p.d.Events[i].Traceparent
			if tp == prev {
				continue
			}
			prev = tp
			if sc, ok := SpanContextOf(tp); ok {
				span.AddLink(trace.Link{SpanContext: sc})
			}
		}
	}
	span.SetAttributes(attribute.Int("ledger.batch.decisions", len(batch)), attribute.Int("ledger.batch.messages", msgs))
	return span
}

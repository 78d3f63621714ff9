package tracing

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"
)

const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestExtractTakesAWellFormedParentAndIgnoresAMalformedOne: a request with
// a malformed traceparent is served, under a trace of its own.
func TestExtractTakesAWellFormedParentAndIgnoresAMalformedOne(t *testing.T) {
	for _, tt := range []struct {
		name, key, value, wantTrace string
	}{
		{"lower case", "traceparent", parent, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"canonical", "Traceparent", parent, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"malformed", "traceparent", "00-nothex-00f067aa0ba902b7-01", ""},
		{"zero trace id", "traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		{"absent", "other", "x", ""},
	} {
		h := nats.Header{}
		h.Set(tt.key, tt.value)
		ctx := Extract(context.Background(), h)
		if got := trace.SpanContextFromContext(ctx).TraceID(); tt.wantTrace == "" && got.IsValid() || tt.wantTrace != "" && got.String() != tt.wantTrace {
			t.Errorf("%s: trace id = %s, want %q", tt.name, got, tt.wantTrace)
		}
	}
}

// TestInjectWritesWhatExtractReads: a request carries its caller's trace
// on to the service, in the header W3C names.
func TestInjectWritesWhatExtractReads(t *testing.T) {
	ctx := Extract(context.Background(), nats.Header{"traceparent": {parent}})
	h := nats.Header{}
	Inject(ctx, h)
	if got := h.Get(HeaderTraceparent); got != parent {
		t.Errorf("injected traceparent = %q, want %q", got, parent)
	}
	if got := Traceparent(ctx); got != parent {
		t.Errorf("Traceparent = %q, want %q", got, parent)
	}
	empty := nats.Header{}
	Inject(context.Background(), empty)
	if len(empty) != 0 {
		t.Errorf("untraced context injected %v", empty)
	}
}

package events

import (
	"strings"
	"testing"
)

const testTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestTraceparentIsOutsideTheHash: an event carries its trace context
// through the log, and the context changes nothing the hash covers, so an
// event stored before traces existed and one stored with a trace hash alike
// and both verify.
func TestTraceparentIsOutsideTheHash(t *testing.T) {
	plain := sealedEvent(t)
	traced := plain
	traced.Traceparent = testTraceparent
	if got := traced.ComputeHash(); got != plain.Hash {
		t.Errorf("hash with traceparent = %s, want the hash without it %s", got, plain.Hash)
	}
	m, err := Encode(&traced)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(HeaderTraceparent); got != testTraceparent {
		t.Errorf("%s = %q, want %q", HeaderTraceparent, got, testTraceparent)
	}
	got, err := Decode(m.Subject, m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Traceparent != testTraceparent {
		t.Errorf("decoded traceparent = %q, want %q", got.Traceparent, testTraceparent)
	}
	if err := VerifyChain([]Event{got}, 0, GenesisHash); err != nil {
		t.Errorf("traced event does not verify: %v", err)
	}
	// A stored event whose traceparent was damaged still reads and
	// verifies; only the trace is lost.
	m.Header.Set(HeaderTraceparent, "00-zz-not-a-trace")
	got, err = Decode(m.Subject, m.Header, m.Data)
	if err != nil {
		t.Fatalf("damaged traceparent refused the event: %v", err)
	}
	if got.Traceparent != "" {
		t.Errorf("damaged traceparent kept as %q", got.Traceparent)
	}
}

func TestValidTraceparent(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{testTraceparent, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"", false},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false},
		{"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", false},
	}
	for _, tt := range tests {
		if got := ValidTraceparent(tt.in); got != tt.want {
			t.Errorf("ValidTraceparent(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	bad := sealedEvent(t)
	bad.Traceparent = "garbage"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "traceparent") {
		t.Errorf("Validate with a malformed traceparent = %v, want a refusal naming traceparent", err)
	}
}

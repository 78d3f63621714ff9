package command

import (
	"fmt"
	"sync"
	"time"

	"github.com/marketledger/ledger/events"
)

// DefaultSkewMax is the clock skew beyond which a Skew refuses fenced
// commands when its Max is zero.
const DefaultSkewMax = 2 * time.Second

// DefaultSkewSampleEvery is how often, at most, a runner reads back the
// server's recorded time of an append to measure the skew, when
// Skew.SampleEvery is zero: one extra read a second is noise beside the
// appends it measures.
const DefaultSkewSampleEvery = time.Second

// skewSamplesMax bounds the window of recent measurements.
const skewSamplesMax = 32

// skewSampleMaxAge is how long a measurement counts. Without it a service
// refusing every fenced command after its clock was fixed would never
// measure again.
const skewSampleMaxAge = time.Minute

// Skew measures, at run time, how far the decision clock is from the log
// server's: each measurement is the server's recorded time of an appended
// event minus the decision instant the event states (ce-time). That is the
// append's latency plus the skew, so the estimate is the smallest
// measurement of a bounded window of recent ones: latency only ever adds.
// A positive estimate of more than a few milliseconds means the decision
// clock is behind the server's; a negative one means it is ahead.
//
// Beyond Max (either way) the runner refuses fenced commands with
// KindUnavailable, and Check fails so that readiness reports false: the
// events a service stores state the instant they were decided, and a
// reader of the log must be able to trust that instant.
//
// A Skew is safe for concurrent use; one Skew serves every runner of a
// process that decides on one clock. The zero value is ready to use.
type Skew struct {
	// Max is the bound on the estimate's magnitude; DefaultSkewMax when 0.
	Max time.Duration
	// SampleEvery is the least real time between two measurements;
	// DefaultSkewSampleEvery when 0, every append when negative.
	SampleEvery time.Duration

	mu      sync.Mutex
	samples [skewSamplesMax]skewSample
	n, next int
	last    time.Time // real time of the last measurement taken or begun
}

type skewSample struct {
	taken time.Time // real (monotonic) time of the measurement
	d     time.Duration
}

// Observe records one measurement: the decision instant an appended event
// states and the server's recorded time of it.
func (s *Skew) Observe(decided, recorded time.Time) {
	if decided.IsZero() || recorded.IsZero() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples[s.next] = skewSample{taken: time.Now(), d: recorded.Sub(decided)}
	s.next = (s.next + 1) % skewSamplesMax
	s.n = min(s.n+1, skewSamplesMax)
}

// Estimate returns recorded minus decided, the smallest of the recent
// measurements, and false when there is none younger than a minute.
func (s *Skew) Estimate() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var est time.Duration
	found := false
	for i := range s.n {
		sm := s.samples[i]
		if time.Since(sm.taken) > skewSampleMaxAge {
			continue
		}
		if !found || sm.d < est {
			est, found = sm.d, true
		}
	}
	return est, found
}

// Check returns a KindUnavailable error when the estimate's magnitude
// exceeds the bound, and nil otherwise (also while nothing was measured).
func (s *Skew) Check() error {
	est, ok := s.Estimate()
	limit := s.Max
	if limit == 0 {
		limit = DefaultSkewMax
	}
	if !ok || (est <= limit && est >= -limit) {
		return nil
	}
	dir := "behind"
	if est < 0 {
		dir = "ahead of"
	}
	return &events.Error{Op: "command.Run", Kind: events.KindUnavailable, Field: "clock",
		Rule: fmt.Sprintf("the decision clock is %s %s the log server's (bound %s): fenced commands are refused until it is corrected",
			abs(est).Round(time.Millisecond), dir, limit)}
}

// informative reports whether an append answered roundTrip after its
// decision can measure the skew. A measurement is the skew plus what the
// append waited for, so one that waited more than half the bound cannot
// tell a skew within the bound from its wait, and is not taken. An append
// that waited through a stream leader's election after a killed node (4 to
// 9 s) measured its wait as skew, and the payment service refused every
// fenced command for up to 60 s after it (docs/performance.md, "Leader
// changes").
func (s *Skew) informative(roundTrip time.Duration) bool {
	limit := s.Max
	if limit == 0 {
		limit = DefaultSkewMax
	}
	return roundTrip <= limit/2
}

// due reports whether a measurement should be taken now, and if so books
// it, so that concurrent appends take one between them.
func (s *Skew) due() bool {
	every := s.SampleEvery
	if every == 0 {
		every = DefaultSkewSampleEvery
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if every > 0 && !s.last.IsZero() && time.Since(s.last) < every {
		return false
	}
	s.last = time.Now()
	return true
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

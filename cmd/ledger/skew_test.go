package main

import (
	"testing"
	"time"

	"github.com/marketledger/ledger/runtime/command"
)

// TestSkewGaugeAndReadiness checks that a measured skew beyond the bound,
// either way, shows on ledger_clock_skew_seconds and makes readiness fail,
// and that a small one does neither.
func TestSkewGaugeAndReadiness(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		recorded time.Time
		ready    bool
	}{
		{now.Add(5 * time.Second), false},  // the services' clock is behind
		{now.Add(-5 * time.Second), false}, // ahead
		{now.Add(3 * time.Millisecond), true},
	} {
		a := &api{reg: newNamedRegistry()}
		skew := &command.Skew{Max: 2 * time.Second}
		a.watchSkew(skew)
		skew.Observe(now, tc.recorded)
		if err := a.ready(); (err == nil) != tc.ready {
			t.Errorf("recorded %s after deciding: ready error %v, want ready %v", tc.recorded.Sub(now), err, tc.ready)
		}
		mfs, err := a.reg.Gather()
		if err != nil || len(mfs) != 1 || mfs[0].GetName() != "ledger_clock_skew_seconds" {
			t.Fatalf("gather: %v, %v", mfs, err)
		}
		if got, want := mfs[0].GetMetric()[0].GetGauge().GetValue(), tc.recorded.Sub(now).Seconds(); got != want {
			t.Errorf("gauge %v, want %v", got, want)
		}
	}
}

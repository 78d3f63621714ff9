package main

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type fakeView struct {
	err    error
	breaks uint64
}

func (f *fakeView) Err() error     { return f.err }
func (f *fakeView) Breaks() uint64 { return f.breaks }

// TestPolicyViewReadiness checks that a policy view failed closed makes
// readiness fail with its reason and shows on the metrics, and that it is
// ready again once the view recovers.
func TestPolicyViewReadiness(t *testing.T) {
	a := &api{reg: prometheus.NewRegistry()}
	v := &fakeView{}
	a.watchPolicyView(v)
	if err := a.ready(); err != nil {
		t.Fatalf("continuous view: ready error %v", err)
	}
	v.err, v.breaks = errors.New("policy log not continuous: record at 57 follows policy position 40 but the view last applied 38"), 1
	if err := a.ready(); err == nil || err.Error() != "policy view: "+v.err.Error() {
		t.Errorf("failed-closed view: ready error %v", err)
	}
	got := map[string]float64{}
	mfs, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	if got["ledger_policy_view_failed_closed"] != 1 || got["ledger_policy_view_gaps_total"] != 1 {
		t.Errorf("metrics %v, want failed_closed 1 and gaps_total 1", got)
	}
	v.err = nil
	if err := a.ready(); err != nil {
		t.Errorf("recovered view: ready error %v", err)
	}
}

package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketledger/ledger/runtime/enforcement"
)

// watchRefusalRecords exports what became of the refusals by policy rules
// the services were to put on record: ledger_refusal_records_total by
// outcome (recorded; repeated: the same command was on record already;
// limited: over its actor's or the process's rate, counted and not
// recorded; dropped: too many records in flight; failed: the append
// failed, logged). Only "recorded" and "repeated" are in the log.
func (a *api) watchRefusalRecords(stats func() enforcement.Stats) {
	for outcome, get := range map[string]func(enforcement.Stats) uint64{
		"recorded": func(s enforcement.Stats) uint64 { return s.Recorded },
		"repeated": func(s enforcement.Stats) uint64 { return s.Repeated },
		"limited":  func(s enforcement.Stats) uint64 { return s.Limited },
		"dropped":  func(s enforcement.Stats) uint64 { return s.Dropped },
		"failed":   func(s enforcement.Stats) uint64 { return s.Failed },
	} {
		a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_refusal_records_total",
			Help:        "refusals by a policy rule the services were to record, by outcome (only recorded and repeated are in the log)",
			ConstLabels: prometheus.Labels{"outcome": outcome}},
			func() float64 { return float64(get(stats())) }))
	}
}

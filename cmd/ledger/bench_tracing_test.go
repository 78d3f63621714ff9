package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkCheckoutTracingCost measures what tracing costs the checkout, in
// one run, both ways: one `ledger serve` started with tracing on (every
// span exported by the batch processor over OTLP/HTTP to a collector on
// loopback that discards them), and
// LEDGER_BENCH_ROUNDS (default 3) pairs of loads of 64 clients for
// LEDGER_BENCH_SECONDS each after a warm-up load, alternating tracing off
// (the provider swapped out: the spans are no-ops and nothing is
// propagated) and on in the order off, on, on, off, ..., so that a
// machine's drift falls on both alike. It prints each round and one
// BENCH_JSON line with the median checkouts/s and p99 of each way and the
// cost: 1 - on/off of the medians (the bound: under 5%). On a machine
// shared with other work the rate moves by more than that from one load to
// the next, so it also reports the process's CPU per checkout each way,
// which the other work moves less.
func BenchmarkCheckoutTracingCost(b *testing.B) {
	seconds, rounds := benchSeconds, 3
	if s, err := strconv.Atoi(os.Getenv("LEDGER_BENCH_SECONDS")); err == nil && s > 0 {
		seconds = s
	}
	if n, err := strconv.Atoi(os.Getenv("LEDGER_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	// Tracing on as in production: OTLP over HTTP to a collector, here one
	// on loopback that reads every export and keeps nothing.
	var exported atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		exported.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	b.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	b.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.URL+"/v1/traces")
	for range b.N {
		base, js, ended, raw := servedForCheckouts(b, benchClients, benchListings)
		if b.Failed() {
			return
		}
		provider := globalTracer.current.Load()
		if provider == nil {
			b.Fatal("serve started without tracing although OTEL_TRACES_EXPORTER=otlp")
		}
		defer globalTracer.use(provider) // serve's shutdown flushes it
		fmt.Println("warm-up: tracing on, not counted")
		if checkoutLoad(b, managed, base, js, ended, benchClients, benchListings, seconds, raw) == nil {
			return
		}
		rates := map[bool][]float64{}
		p99s := map[bool][]float64{}
		cpu := map[bool][]float64{} // this process's CPU ms per checkout
		for r := range 2 * rounds {
			on := (r%2 == 1) != (r/2%2 == 1) // off, on, on, off, off, on...
			if on {
				globalTracer.use(provider)
			} else {
				globalTracer.use(nil)
			}
			fmt.Printf("round %d: tracing %s\n", r/2+1, map[bool]string{true: "on", false: "off"}[on])
			res := checkoutLoad(b, managed, base, js, ended, benchClients, benchListings, seconds, raw)
			if res == nil {
				return
			}
			rates[on] = append(rates[on], res["checkouts_per_s"].(float64))
			cpu[on] = append(cpu[on], round2(1000*res["cpu_cores_used"].(float64)*res["seconds"].(float64)/float64(res["checkouts"].(int))))
			p99s[on] = append(p99s[on], res["checkout_p99_ms"].(float64))
		}
		if exported.Load() == 0 {
			b.Fatal("tracing was on, yet the collector received nothing")
		}
		off, on := median(rates[false]), median(rates[true])
		cpuOff, cpuOn := median(cpu[false]), median(cpu[true])
		out, _ := json.Marshal(map[string]any{"bench": "checkout_tracing_cost", "clients": benchClients, "seconds": seconds, "rounds": rounds,
			"off_checkouts_per_s": rates[false], "on_checkouts_per_s": rates[true],
			"off_median_checkouts_per_s": round2(off), "on_median_checkouts_per_s": round2(on),
			"off_median_p99_ms": round2(median(p99s[false])), "on_median_p99_ms": round2(median(p99s[true])),
			"off_cpu_ms_per_checkout": cpu[false], "on_cpu_ms_per_checkout": cpu[true],
			"tracing_cost": round2(1 - on/off), "tracing_cpu_cost": round2(cpuOn/cpuOff - 1), "target_tracing_cost": 0.05})
		fmt.Printf("tracing off: %.0f checkouts/s (median of %v); on: %.0f (median of %v); cost %.1f%% (target < 5%%)\n",
			off, rates[false], on, rates[true], 100*(1-on/off))
		fmt.Printf("CPU of this process (serve, its NATS server and the clients) per checkout: off %.2f ms (median of %v); on %.2f ms (median of %v); cost %.1f%%\n",
			cpuOff, cpu[false], cpuOn, cpu[true], 100*(cpuOn/cpuOff-1))
		fmt.Printf("BENCH_JSON %s\n", out)
		b.ReportMetric(100*(1-on/off), "tracing_cost_%")
	}
}

// median returns the middle of xs (the mean of the two middle ones for an
// even count).
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

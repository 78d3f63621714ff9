package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
)

// exportedSpan is the part of a console-exported span the tests read.
type exportedSpan struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ TraceID, SpanID string }
	Attributes  []struct {
		Key   string
		Value struct{ Value any }
	}
}

func (s exportedSpan) attr(key string) string {
	for _, a := range s.Attributes {
		if a.Key == key {
			return fmt.Sprint(a.Value.Value)
		}
	}
	return ""
}

func readSpans(t *testing.T, path string) []exportedSpan {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []exportedSpan
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var s exportedSpan
		if json.Unmarshal(sc.Bytes(), &s) == nil && s.Name != "" {
			out = append(out, s)
		}
	}
	return out
}

// checkoutSpans are what one checkout's trace must hold: the HTTP call,
// the order service's command, the listing's and the payment's requests,
// the append, and the checkout's steps.
var checkoutSpans = []string{
	"POST /v1/commands/{name}", "command order.place", "service listing.reserve_stock", "service payment.authorize",
	"service order.confirm", "service payment.capture", "command.append", "command.load", "command.decide",
	"checkout.deliver", "checkout.step reserve", "checkout.step authorize", "checkout.step confirm", "checkout.step capture",
}

// missingFromTrace returns, for the trace of order id's placement, what
// checkoutSpans it lacks; all of them when no such trace was exported.
func missingFromTrace(spans []exportedSpan, orderID string) []string {
	trace := ""
	for _, s := range spans {
		if s.Name == "command.run" && s.attr("ledger.command") == "order.place" && s.attr("ledger.aggregate") == "order/"+orderID {
			trace = s.SpanContext.TraceID
		}
	}
	have := map[string]bool{}
	for _, s := range spans {
		if s.SpanContext.TraceID != trace {
			continue
		}
		have[s.Name] = true
		if s.Name == "command.run" {
			have["command "+s.attr("ledger.command")] = true
		}
	}
	var missing []string
	for _, n := range checkoutSpans {
		if !have[n] {
			missing = append(missing, n)
		}
	}
	return missing
}

// TestCheckoutThroughServeIsOneTrace places an order through `ledger serve`
// with the console exporter writing to a file, and finds one trace that
// covers the HTTP call, the order, listing and payment services, the append
// and every step of the checkout. The order's request carries a malformed
// traceparent: it is served, under a trace of its own. `ledger trace` then
// shows the trace id on each event of the checkout.
func TestCheckoutThroughServeIsOneTrace(t *testing.T) {
	spansFile := filepath.Join(t.TempDir(), "spans.jsonl")
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Setenv(envTracesFile, spansFile)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	g := &globals{dataDir: t.TempDir()}
	token := issueTestToken(t, g.dataDir, "operator")
	s := startServed(t, g, &serveOpts{}, http.DefaultClient)
	if code, body := s.call(t, "POST", "/v1/commands/listing.create", token, contracts.CreateListing{ListingID: "tr-1", SellerID: "seller-1",
		Title: "traced scarf", Category: "fashion", Channel: contracts.Channels[0], Jurisdiction: "ID", Origin: contracts.OriginDomestic,
		Price: contracts.Money{AmountMinor: 1_500_000, Currency: "IDR"}, Stock: 5}); code != http.StatusOK {
		t.Fatalf("listing.create = %d %s", code, body)
	}
	body, _ := json.Marshal(contracts.PlaceOrder{OrderID: "tr-order-1", BuyerID: "buyer-1", ListingID: "tr-1", Quantity: 1})
	req, _ := http.NewRequest("POST", s.base+"/v1/commands/order.place", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("traceparent", "00-not-a-trace-at-all")
	req.Header.Set("Ledger-Correlation-Id", "tr-order-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("order.place with a malformed traceparent = %d, want 200", resp.StatusCode)
	}
	var missing []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if missing = missingFromTrace(readSpans(t, spansFile), "tr-order-1"); len(missing) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond) // the exporter writes every 50 ms
	}
	if len(missing) > 0 {
		t.Fatalf("the checkout's trace lacks %v (of %v)", missing, checkoutSpans)
	}
	// The checkout's work shows in the histograms and gauges.
	_, metrics := s.call(t, "GET", "/metrics", token, nil)
	for _, name := range []string{"ledger_append_duration_seconds_bucket{outcome=\"ok\"", "ledger_append_batch_decisions_bucket",
		"ledger_append_batch_duration_seconds_bucket", "ledger_command_duration_seconds_bucket", "ledger_http_request_duration_seconds_bucket",
		"ledger_checkouts_in_flight ", "ledger_checkouts_stuck 0", "ledger_follower_lag_seconds{follower=\"checkout\"}", "ledger_follower_lag_events{follower=\"checkout\"}",
		"ledger_trace_spans_dropped_total 0", "ledger_service_command_duration_seconds_bucket{command=\"payment.authorize\",outcome=\"ok\""} {
		if !strings.Contains(string(metrics), name) {
			t.Errorf("/metrics after a checkout lacks %s", name)
		}
	}
	var out bytes.Buffer
	if err := runTrace(t.Context(), g, "tr-order-1", &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var eventLines, traced int
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "#") && strings.Contains(line, "business ") {
			eventLines++
			if strings.Contains(line, "  trace ") {
				traced++
			}
		}
	}
	if eventLines < 5 || traced != eventLines {
		t.Errorf("ledger trace shows a trace id on %d of %d events, want every event of the checkout (at least 5):\n%s", traced, eventLines, out.String())
	}
}

// TestBrokenTraceExportNeverStopsACommand: with the OTLP endpoint
// unreachable or malformed, commands answer as fast as ever, and the spans
// they make are dropped and counted in /metrics.
func TestBrokenTraceExportNeverStopsACommand(t *testing.T) {
	for _, endpoint := range []string{"http://" + freeAddr(t), "http://[::1:not-a-host"} {
		t.Run(endpoint, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
			t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
			g := &globals{dataDir: t.TempDir()}
			token := issueTestToken(t, g.dataDir, "operator")
			s := startServed(t, g, &serveOpts{}, http.DefaultClient)
			start := time.Now()
			for i := range 20 {
				if code, body := s.call(t, "POST", "/v1/commands/listing.create", token, contracts.CreateListing{ListingID: fmt.Sprintf("bx-%d", i),
					SellerID: "seller-1", Title: "scarf", Category: "fashion", Channel: contracts.Channels[0], Jurisdiction: "ID",
					Origin: contracts.OriginDomestic, Price: contracts.Money{AmountMinor: 1_500_000, Currency: "IDR"}, Stock: 5}); code != http.StatusOK {
					t.Fatalf("listing.create = %d %s", code, body)
				}
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("20 commands took %s with the collector unreachable", took)
			}
			var dropped string
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				_, body := s.call(t, "GET", "/metrics", token, nil)
				if dropped = metricLine(string(body), "ledger_trace_spans_dropped_total"); dropped != "" && dropped != "0" {
					break
				}
			}
			if dropped == "" || dropped == "0" {
				t.Errorf("ledger_trace_spans_dropped_total = %q, want the spans that could not be exported counted", dropped)
			}
		})
	}
}

// metricLine returns the value of an unlabelled metric in a Prometheus text
// exposition, "" when absent.
func metricLine(exposition, name string) string {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

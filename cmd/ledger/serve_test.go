package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestServeAnswersHealthMetricsAndOpenAPIThenStopsCleanly(t *testing.T) {
	g := &globals{dataDir: t.TempDir()}
	token := issueTestToken(t, g.dataDir, "operator")
	// startServed's cleanup cancels serve and fails the test unless it
	// returns nil within 30 s.
	s := startServed(t, g, &serveOpts{services: " "}, http.DefaultClient)
	if code, body := s.call(t, "GET", "/healthz", "", nil); code != 200 || !strings.Contains(string(body), "ok") {
		t.Errorf("/healthz = %d %s", code, body)
	}
	if code, body := s.call(t, "GET", "/readyz", "", nil); code != 200 || !strings.Contains(string(body), "ready") {
		t.Errorf("/readyz = %d %s", code, body)
	}
	if code, body := s.call(t, "GET", "/metrics", token, nil); code != 200 || !strings.Contains(string(body), "ledger_store_batches_total") {
		t.Errorf("/metrics = %d, missing ledger_store_batches_total", code)
	}
	// A request no route matches is refused as every other is: problem+json.
	for _, tc := range []struct {
		method, path string
		status       int
	}{{"GET", "/v1/nothing-here", 404}, {"DELETE", "/v1/events", 405}, {"GET", "/v1/commands/order.place", 405}} {
		code, body := s.call(t, tc.method, tc.path, token, nil)
		var p struct {
			Type   string `json:"type"`
			Status int    `json:"status"`
			Detail string `json:"detail"`
		}
		if code != tc.status || json.Unmarshal(body, &p) != nil || p.Status != tc.status ||
			!strings.HasPrefix(p.Type, "urn:marketledger:problem:") || p.Detail == "" {
			t.Errorf("%s %s = %d %s; want %d problem+json", tc.method, tc.path, code, body, tc.status)
		}
	}
	code, body := s.call(t, "GET", "/openapi.json", "", nil)
	var doc map[string]any
	if code != 200 || json.Unmarshal(body, &doc) != nil || doc["openapi"] == nil {
		t.Errorf("/openapi.json = %d, not an OpenAPI document", code)
	}
}

// TestOpenAPIDocIsTheServedOne keeps docs/openapi.json
// equal to the served document; run with -update to rewrite it.
func TestOpenAPIDocIsTheServedOne(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "openapi.json")
	if *update {
		if err := os.WriteFile(path, openAPIDoc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestOpenAPIDoc -update)", err)
	}
	if !bytes.Equal(got, openAPIDoc) {
		t.Errorf("docs/openapi.json differs from the document serve builds from the contracts; run go test -run TestOpenAPIDoc -update")
	}
}

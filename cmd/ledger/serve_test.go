package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	g := &globals{dataDir: t.TempDir()}
	hc := tokenClient(issueTestToken(t, g.dataDir, "operator"))
	go func() { done <- runServe(ctx, g, &serveOpts{http: addr, host: "127.0.0.1", port: -1, replicas: 1}) }()
	get := func(path string) (int, string) {
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := hc.Get("http://" + addr + path)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp.StatusCode, string(b)
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %v", path, err)
			}
			time.Sleep(20 * time.Millisecond) // the server is still starting: nothing to await but the socket
		}
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("/healthz = %d %s", code, body)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "ready") {
		t.Errorf("/readyz = %d %s", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "ledger_store_batches_total") {
		t.Errorf("/metrics = %d, missing ledger_store_batches_total", code)
	}
	code, body := get("/openapi.json")
	var doc map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &doc) != nil || doc["openapi"] == nil {
		t.Errorf("/openapi.json = %d, not an OpenAPI document", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v on shutdown", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30 s of its context ending")
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

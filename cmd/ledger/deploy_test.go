package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const deployDir = "../../deploy"

// servedMetricNames runs `ledger serve` with every part on (the four
// services, the checkout, the projections and the notary) and returns the
// names of the metric families its registry holds.
func servedMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	got := make(chan map[string]bool, 1)
	serving = func(a *api) { got <- a.reg.Names() }
	t.Cleanup(func() { serving = nil })
	g := &globals{dataDir: t.TempDir()}
	startServed(t, g, &serveOpts{projections: true}, http.DefaultClient)
	return <-got
}

var (
	promQLString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promQLName   = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// ledgerMetrics returns the ledger metric names a PromQL expression reads:
// every identifier starting with ledger_, outside quoted strings.
func ledgerMetrics(expr string) []string {
	var out []string
	for _, name := range promQLName.FindAllString(promQLString.ReplaceAllString(expr, `""`), -1) {
		if strings.HasPrefix(name, "ledger_") && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// exportedSeries reports whether name is a series of an exported family:
// the family itself, or a histogram's _bucket, _sum or _count.
func exportedSeries(families map[string]bool, name string) bool {
	if families[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && families[base] {
			return true
		}
	}
	return false
}

// deployExprs returns every PromQL expression in deploy/: the dashboard's
// panel targets and the alert rules, keyed by where they are.
func deployExprs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile(filepath.Join(deployDir, "grafana", "ledger-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			out["dashboard panel "+p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err = os.ReadFile(filepath.Join(deployDir, "prometheus", "ledger-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("alert rules: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	return out
}

// TestDeployNamesOnlyExportedMetrics holds the Grafana dashboard and the
// Prometheus alert rules in deploy/ to the metrics `ledger serve` registers:
// an expression that reads a metric the ledger does not export fails.
func TestDeployNamesOnlyExportedMetrics(t *testing.T) {
	exprs := deployExprs(t)
	// The alerts the operations guide promises.
	for _, alert := range []string{"LedgerProjectionLag", "LedgerParkedEvents", "LedgerNotaryCheckpointStale", "LedgerCheckoutsStuck",
		"LedgerClockSkew", "LedgerAppendP99High"} {
		if exprs["alert "+alert] == "" {
			t.Errorf("deploy/prometheus/ledger-alerts.yml has no rule %s", alert)
		}
	}
	families := servedMetricNames(t)
	for where, expr := range exprs {
		names := ledgerMetrics(expr)
		if len(names) == 0 {
			t.Errorf("%s reads no ledger metric: %q", where, expr)
		}
		for _, name := range names {
			if !exportedSeries(families, name) {
				t.Errorf("%s reads %s, which the ledger does not export", where, name)
			}
		}
	}
}

// TestDeployCheckFindsAMetricNotExported: the check above sees through
// quoted label values and histogram suffixes, and catches a misspelt name.
func TestDeployCheckFindsAMetricNotExported(t *testing.T) {
	families := map[string]bool{"ledger_append_duration_seconds": true, "ledger_checkouts_stuck": true}
	expr := `histogram_quantile(0.99, sum by (le) (rate(ledger_append_duration_seconds_bucket{outcome="ledger_fake"}[5m]))) > 0 or ledger_checkout_stuck > 0`
	var missing []string
	for _, n := range ledgerMetrics(expr) {
		if !exportedSeries(families, n) {
			missing = append(missing, n)
		}
	}
	if want := []string{"ledger_checkout_stuck"}; !slices.Equal(missing, want) {
		t.Errorf("not exported = %v, want %v", missing, want)
	}
}

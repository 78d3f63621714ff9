package main

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const modulePrefix = "github.com/marketledger/ledger/"

// forbiddenDeps returns the ledger packages among deps that service svc must
// not depend on: anything but itself, events and contracts.
func forbiddenDeps(svc string, deps []string) []string {
	allowed := []string{modulePrefix + "events", modulePrefix + "contracts", modulePrefix + "services/" + svc}
	var bad []string
	for _, pkg := range deps {
		// go list -test names test variants "p.test", "p_test" and "p [p.test]".
		pkg, _, _ = strings.Cut(pkg, " ")
		pkg = strings.TrimSuffix(strings.TrimSuffix(pkg, ".test"), "_test")
		if !strings.HasPrefix(pkg, modulePrefix) {
			continue
		}
		if !slices.ContainsFunc(allowed, func(a string) bool { return pkg == a || strings.HasPrefix(pkg, a+"/") }) {
			bad = append(bad, pkg)
		}
	}
	return bad
}

func TestForbiddenDepsDetectsCrossServiceImports(t *testing.T) {
	deps := []string{"fmt", modulePrefix + "events/command", modulePrefix + "services/order.test", modulePrefix + "services/order_test [" + modulePrefix + "services/order.test]", modulePrefix + "contracts", modulePrefix + "services/order/internal/x",
		modulePrefix + "services/payment", modulePrefix + "projections"}
	got := forbiddenDeps("order", deps)
	want := []string{modulePrefix + "services/payment", modulePrefix + "projections"}
	if !slices.Equal(got, want) {
		t.Errorf("forbiddenDeps = %v, want %v", got, want)
	}
}

// TestServiceModulesStayIndependent fails when a service imports another
// service (or any ledger package other than events and contracts): services
// are deployed on their own and share only the contract and the log.
func TestServiceModulesStayIndependent(t *testing.T) {
	for _, svc := range []string{"checkout", "listing", "order", "payment", "policy"} {
		cmd := exec.Command("go", "list", "-deps", "-test", "-f", "{{.ImportPath}}", "./...")
		cmd.Dir = filepath.Join("..", "..", "services", svc)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list in %s: %v\n%s", cmd.Dir, err, out)
		}
		deps := strings.Split(strings.TrimSpace(string(out)), "\n")
		if !slices.Contains(deps, modulePrefix+"services/"+svc) {
			t.Errorf("go list in %s did not list the service itself; the check saw nothing", cmd.Dir)
		}
		for _, pkg := range forbiddenDeps(svc, deps) {
			t.Errorf("service %s depends on %s; services may import only events and contracts", svc, pkg)
		}
	}
}

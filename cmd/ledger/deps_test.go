package main

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const modulePrefix = "github.com/marketledger/ledger/"

// The map of the modules (docs/architecture.md): what each may build on.
// Tests may also start a node (node/...); cmd/ledger and testkit may use
// everything, except testkit/decidertest, which the services' tests build
// on and which must therefore build on the log and the contracts alone.
var allowedDeps = map[string][]string{
	"events":              {"events"},
	"contracts":           {"contracts", "events"},
	"runtime":             {"runtime", "contracts", "events"},
	"node":                {"node", "events"},
	"projections":         {"projections", "runtime", "contracts", "events"},
	"services/checkout":   {"services/checkout", "runtime", "contracts", "events"},
	"services/listing":    {"services/listing", "runtime", "contracts", "events"},
	"services/order":      {"services/order", "runtime", "contracts", "events"},
	"services/payment":    {"services/payment", "runtime", "contracts", "events"},
	"services/policy":     {"services/policy", "runtime", "contracts", "events"},
	"testkit/decidertest": {"testkit/decidertest", "contracts", "events"},
}

// testDeps returns what mod's tests may build on besides what mod may: a
// node, and for a service the decider harness (and no other part of
// testkit, which builds on the services).
func testDeps(mod string) []string {
	deps := append(slices.Clone(allowedDeps[mod]), "node")
	if strings.HasPrefix(mod, "services/") {
		deps = append(deps, "testkit/decidertest")
	}
	return deps
}

// forbiddenDeps returns the ledger packages among deps that are not under
// one of allowed (module paths relative to the repository).
func forbiddenDeps(allowed []string, deps []string) []string {
	var bad []string
	for _, pkg := range deps {
		// go list -test names test variants "p.test", "p_test" and "p [p.test]".
		pkg, _, _ = strings.Cut(pkg, " ")
		pkg = strings.TrimSuffix(strings.TrimSuffix(pkg, ".test"), "_test")
		if !strings.HasPrefix(pkg, modulePrefix) {
			continue
		}
		if !slices.ContainsFunc(allowed, func(a string) bool {
			return pkg == modulePrefix+a || strings.HasPrefix(pkg, modulePrefix+a+"/")
		}) && !slices.Contains(bad, pkg) {
			bad = append(bad, pkg)
		}
	}
	return bad
}

func TestForbiddenDepsDetectsCrossServiceImports(t *testing.T) {
	deps := []string{"fmt", modulePrefix + "runtime/command", modulePrefix + "services/order.test", modulePrefix + "services/order_test [" + modulePrefix + "services/order.test]", modulePrefix + "contracts", modulePrefix + "services/order/internal/x",
		modulePrefix + "services/payment", modulePrefix + "projections", modulePrefix + "node/embedded"}
	got := forbiddenDeps(allowedDeps["services/order"], deps)
	want := []string{modulePrefix + "services/payment", modulePrefix + "projections", modulePrefix + "node/embedded"}
	if !slices.Equal(got, want) {
		t.Errorf("forbiddenDeps = %v, want %v", got, want)
	}
}

// TestServiceTestsMayUseOnlyTheDeciderHarness: a service's tests may build
// on testkit/decidertest, and on no other part of testkit; the harness
// itself may not start a node.
func TestServiceTestsMayUseOnlyTheDeciderHarness(t *testing.T) {
	deps := []string{modulePrefix + "testkit/decidertest", modulePrefix + "testkit/decidertestx", modulePrefix + "testkit",
		modulePrefix + "testkit/fault", modulePrefix + "node/embedded"}
	got := forbiddenDeps(testDeps("services/listing"), deps)
	want := []string{modulePrefix + "testkit/decidertestx", modulePrefix + "testkit", modulePrefix + "testkit/fault"}
	if !slices.Equal(got, want) {
		t.Errorf("service tests: forbiddenDeps = %v, want %v", got, want)
	}
	if got := forbiddenDeps(allowedDeps["testkit/decidertest"], []string{modulePrefix + "runtime/command"}); len(got) != 1 {
		t.Errorf("decidertest on runtime: forbiddenDeps = %v, want it forbidden", got)
	}
	if got := forbiddenDeps(allowedDeps["services/checkout"], []string{modulePrefix + "testkit/decidertest"}); len(got) != 1 {
		t.Errorf("a service's own build on decidertest: forbiddenDeps = %v, want it forbidden", got)
	}
}

func goList(t *testing.T, dir string, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = filepath.Join("..", "..", dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list in %s: %v\n%s", dir, err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestModuleMap fails when a module builds on one it must not: a service on
// another service, the log on the runtime, anything but cmd/ledger and
// testkit on the embedded server. Services, contracts, the runtime and the
// log never have nats-server in their build, and contracts and the read
// models (projections/models) do no I/O of their own.
func TestModuleMap(t *testing.T) {
	for mod, allowed := range allowedDeps {
		t.Run(mod, func(t *testing.T) {
			deps := goList(t, mod, "-deps", "-f", "{{.ImportPath}}", "./...")
			if !slices.ContainsFunc(deps, func(p string) bool { return strings.HasPrefix(p, modulePrefix+mod) }) {
				t.Fatalf("go list in %s did not list the module itself; the check saw nothing", mod)
			}
			for _, pkg := range forbiddenDeps(allowed, deps) {
				t.Errorf("%s builds on %s; it may build only on %v", mod, pkg, allowed)
			}
			if mod != "node" {
				for _, pkg := range deps {
					if strings.HasPrefix(pkg, "github.com/nats-io/nats-server/") {
						t.Errorf("%s has %s in its build", mod, pkg)
						break
					}
				}
			}
			// Tests may start an embedded node besides.
			tdeps := goList(t, mod, "-deps", "-test", "-f", "{{.ImportPath}}", "./...")
			for _, pkg := range forbiddenDeps(testDeps(mod), tdeps) {
				t.Errorf("%s's tests build on %s", mod, pkg)
			}
		})
	}
	// The types of the trade and the read models are pure: whatever does
	// I/O builds on them, never the other way round.
	for _, pure := range []struct{ name, dir, pkgs string }{
		{"contracts does no I/O", "contracts", "./..."},
		{"the read models do no I/O", "projections", "./models/..."},
	} {
		t.Run(pure.name, func(t *testing.T) {
			lines := goList(t, pure.dir, "-f", "{{.ImportPath}}: {{join .Imports \" \"}}", pure.pkgs)
			if len(lines) == 0 || lines[0] == "" {
				t.Fatalf("go list %s in %s listed nothing; the check saw nothing", pure.pkgs, pure.dir)
			}
			for _, line := range lines {
				for _, imp := range strings.Fields(line)[1:] {
					if doesIO(imp) {
						t.Errorf("%s imports %s", strings.TrimSuffix(strings.Fields(line)[0], ":"), imp)
					}
				}
			}
		})
	}
}

// doesIO reports whether importing pkg means doing I/O of one's own: NATS,
// the network or the file system.
func doesIO(pkg string) bool {
	return strings.HasPrefix(pkg, "github.com/nats-io/") || pkg == "net" || strings.HasPrefix(pkg, "net/") || pkg == "os"
}

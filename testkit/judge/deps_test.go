package judge

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// repoPrefix is the module path prefix of every module of this repository.
const repoPrefix = "github.com/marketledger/ledger/"

// self is this package's import path.
const self = repoPrefix + "testkit/judge"

// allowedDirect are the only packages outside the standard library the
// judge and its tests may import: the NATS client, and in tests the server
// they start.
var allowedDirect = []string{
	"github.com/nats-io/nats.go",
	"github.com/nats-io/nats.go/jetstream",
	"github.com/nats-io/nats-server/v2/server",
}

// repoDeps returns the packages of this repository among deps, other than
// the judge itself, its command and their test variants.
func repoDeps(deps []string) []string {
	var bad []string
	for _, pkg := range deps {
		// go list -test names test variants "p.test", "p_test" and "p [p.test]".
		pkg, _, _ = strings.Cut(pkg, " ")
		pkg = strings.TrimSuffix(strings.TrimSuffix(pkg, ".test"), "_test")
		if strings.HasPrefix(pkg, repoPrefix) && pkg != self && !strings.HasPrefix(pkg, self+"/") {
			bad = append(bad, pkg)
		}
	}
	return bad
}

// foreignImports returns the imports that are neither standard library
// (no dot in the first path element) nor allowed (the command imports the
// judge itself).
func foreignImports(imports []string) []string {
	var bad []string
	for _, p := range imports {
		first, _, _ := strings.Cut(p, "/")
		if p == "" || !strings.Contains(first, ".") || slices.Contains(allowedDirect, p) || p == self {
			continue
		}
		bad = append(bad, p)
	}
	return bad
}

func TestRepoDepsDetectsRepositoryImports(t *testing.T) {
	deps := []string{"fmt", self, self + ".test", self + "_test [" + self + ".test]", "github.com/nats-io/nats.go",
		repoPrefix + "events", repoPrefix + "runtime/policyview", repoPrefix + "testkit"}
	got := repoDeps(deps)
	want := []string{repoPrefix + "events", repoPrefix + "runtime/policyview", repoPrefix + "testkit"}
	if !slices.Equal(got, want) {
		t.Errorf("repoDeps = %v, want %v", got, want)
	}
	imports := []string{"fmt", "encoding/json", "github.com/nats-io/nats.go/jetstream", "github.com/google/uuid", repoPrefix + "events"}
	if got, want := foreignImports(imports), []string{"github.com/google/uuid", repoPrefix + "events"}; !slices.Equal(got, want) {
		t.Errorf("foreignImports = %v, want %v", got, want)
	}
}

// TestJudgeSharesNoCodeWithTheLedger fails when the judge, or any of its
// tests, depends on a package of this repository, directly or through
// another module, or imports anything but the standard library and the
// NATS client and server: a checker that shares code with what it checks
// shares its mistakes.
func TestJudgeSharesNoCodeWithTheLedger(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", "-f", "{{.ImportPath}}", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Split(strings.TrimSpace(string(out)), "\n")
	if !slices.Contains(deps, self) {
		t.Fatalf("go list did not list %s itself; the check saw nothing:\n%s", self, out)
	}
	for _, pkg := range repoDeps(deps) {
		t.Errorf("the judge depends on %s; it may import only the standard library and the NATS client", pkg)
	}
	out, err = exec.Command("go", "list", "-f",
		`{{join .Imports "\n"}}{{"\n"}}{{join .TestImports "\n"}}{{"\n"}}{{join .XTestImports "\n"}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list imports: %v\n%s", err, out)
	}
	for _, pkg := range foreignImports(strings.Split(string(out), "\n")) {
		t.Errorf("the judge imports %s; it may import only the standard library and the NATS client (and server, in tests)", pkg)
	}
}

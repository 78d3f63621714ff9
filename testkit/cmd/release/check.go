package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// checkFolders are the modules a service subscribing to the ledger fetches
// (docs/subscriber.md), plus the order service's commands and events.
var checkFolders = []string{"runtime", "events", "contracts", "services/order"}

// consumerMain is a program on the subscriber SDK and the contracts, as a
// service outside the repository would write it.
const consumerMain = `package main

import (
	"fmt"

	"%[1]s/contracts"
	"%[1]s/runtime/subscriber"
)

func main() {
	if err := subscriber.ValidateName("emails-orders"); err != nil {
		panic(err)
	}
	fmt.Println("subscriber ok, notary aggregate", contracts.NotaryAggregateID)
}
`

// checkRelease fetches the release from the proxy directory into a fresh
// module outside the workspace, as a service would with `go get`, and
// builds and runs a program on the subscriber SDK.
//
// The fresh module has a module cache of its own: the release's versions
// must not enter the user's cache, where a later check would silently use
// a stale copy and the real tags, once pushed, would find a different zip
// under the same version. Third-party modules come from the user's module
// cache through its download directory (a valid proxy), then from the
// user's GOPROXY, so nothing already downloaded is downloaded again.
func checkRelease(proxy, v string, mods []workMod, stdout io.Writer) error {
	byFolder := make(map[string]workMod, len(mods))
	for _, m := range mods {
		byFolder[m.folder] = m
	}
	var gets []string
	for _, f := range checkFolders {
		m, ok := byFolder[f]
		if !ok {
			return fmt.Errorf("--check: go.work has no module in folder %s to fetch", f)
		}
		gets = append(gets, m.path+"@"+v)
	}
	prefix := strings.TrimSuffix(byFolder["runtime"].path, "/runtime")

	env, err := checkEnv(proxy)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "release-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	mod := filepath.Join(dir, "consumer")
	env = append(env, "GOMODCACHE="+filepath.Join(dir, "modcache"))
	if err := os.MkdirAll(mod, 0o755); err != nil {
		return err
	}
	gomod := "module example.com/releasecheck\n\ngo 1.26.0\n"
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mod, "main.go"), fmt.Appendf(nil, consumerMain, prefix), 0o644); err != nil {
		return err
	}
	if _, err := goCmd(mod, env, append([]string{"get"}, gets...)...); err != nil {
		return fmt.Errorf("--check: a fresh module could not fetch the release from --proxy %s: %w", proxy, err)
	}
	// -trimpath: the module cache's path changes from one check to the
	// next; without it no compiled package would come from the build cache.
	bin := filepath.Join(dir, "consumer.bin")
	if _, err := goCmd(mod, env, "build", "-trimpath", "-o", bin, "."); err != nil {
		return fmt.Errorf("--check: a program importing %s/runtime/subscriber and %s/contracts at %s does not build: %w", prefix, prefix, v, err)
	}
	out, err := command(mod, nil, bin)
	if err != nil {
		return fmt.Errorf("--check: the program built against the release failed: %w", err)
	}
	fmt.Fprintf(stdout, "checked: a fresh module fetched %s and built a subscriber: %s", strings.Join(gets, " "), out)
	return nil
}

// checkEnv is the go command's environment for the fresh module: outside
// any workspace, the release first in GOPROXY, no checksum database (the
// release is not published, and the third-party modules come from the
// user's verified cache).
func checkEnv(proxy string) ([]string, error) {
	abs, err := filepath.Abs(proxy)
	if err != nil {
		return nil, err
	}
	out, err := goCmd(".", nil, "env", "GOPROXY", "GOMODCACHE", "GOCACHE")
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		return nil, fmt.Errorf("go env GOPROXY GOMODCACHE GOCACHE answered %q", out)
	}
	goproxy := "file://" + filepath.ToSlash(abs)
	if lines[1] != "" {
		goproxy += ",file://" + filepath.ToSlash(filepath.Join(lines[1], "cache", "download"))
	}
	if lines[0] != "" {
		goproxy += "," + lines[0]
	}
	return []string{
		// GOENV=off: a GOPRIVATE or GONOPROXY in the user's go env file
		// would send the project's paths to their VCS instead of the
		// release directory.
		"GOENV=off",
		"GOPROXY=" + goproxy,
		"GOPRIVATE=", "GONOPROXY=", "GONOSUMDB=",
		"GOSUMDB=off",
		"GOFLAGS=-mod=mod -modcacherw",
		"GOTOOLCHAIN=local",
		"GOCACHE=" + lines[2],
	}, nil
}

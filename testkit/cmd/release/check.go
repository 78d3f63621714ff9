package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// getFolders are the modules a service subscribing to the ledger asks
// for with `go get`: the subscriber SDK and the order service's commands
// and events. The modules they need (events, contracts, node) must come
// from the release's own requirements, as they will for that service.
var getFolders = []string{"runtime", "services/order"}

// wantFolders are the modules the fresh module must then require at the
// release version.
var wantFolders = []string{"runtime", "services/order", "events", "contracts"}

// consumerMain is a program on the subscriber SDK and the contracts, as a
// service outside the repository would write it.
const consumerMain = `package main

import (
	"fmt"

	"%[1]s/contracts"
	"%[1]s/events"
	"%[1]s/runtime/subscriber"
)

func main() {
	if err := subscriber.ValidateName("emails-orders"); err != nil {
		panic(err)
	}
	fmt.Println("subscriber ok, notary aggregate", contracts.NotaryAggregateID, "subjects", events.SubjectPrefix)
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
	for _, f := range wantFolders {
		if _, ok := byFolder[f]; !ok {
			return fmt.Errorf("--check: go.work has no module in folder %s to fetch", f)
		}
	}
	var gets []string
	for _, f := range getFolders {
		gets = append(gets, byFolder[f].path+"@"+v)
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
	if err := checkSelected(mod, prefix, v, byFolder); err != nil {
		return err
	}
	// The service's next step: tidy loads the tests of the packages it
	// imports too, so every module they need must resolve at the release.
	if _, err := goCmd(mod, env, "mod", "tidy"); err != nil {
		return fmt.Errorf("--check: go mod tidy in a fresh module using the release fails: %w", err)
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
	fmt.Fprintf(stdout, "checked: a fresh module fetched %s, tidied and built a subscriber: %s", strings.Join(gets, " "), out)
	return nil
}

// checkSelected refuses a fresh module that, after `go get`, requires one
// of the project's modules at another version than the release's, or lacks
// one that a subscriber needs.
func checkSelected(mod, prefix, v string, byFolder map[string]workMod) error {
	file := filepath.Join(mod, "go.mod")
	mf, err := readModFile(file)
	if err != nil {
		return err
	}
	got := make(map[string]string)
	for _, r := range mf.Require {
		if strings.HasPrefix(r.Mod.Path, prefix+"/") {
			got[r.Mod.Path] = r.Mod.Version
			if r.Mod.Version != v {
				return fmt.Errorf("--check: after go get, a fresh module requires %s@%s, not %s: a module of the release still requires it at %s", r.Mod.Path, r.Mod.Version, v, r.Mod.Version)
			}
		}
	}
	for _, f := range wantFolders {
		if p := byFolder[f].path; got[p] != v {
			return fmt.Errorf("--check: after go get, a fresh module does not require %s@%s", p, v)
		}
	}
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

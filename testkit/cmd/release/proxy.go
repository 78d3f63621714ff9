package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"
)

// proxyDir is the directory of a module's versions in a proxy laid out as
// GOPROXY's protocol expects: <escaped module path>/@v.
func proxyDir(root, modPath string) (string, error) {
	esc, err := module.EscapePath(modPath)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, filepath.FromSlash(esc), "@v"), nil
}

// writeProxy writes every module at version v into the proxy directory
// root: the go.mod as released, the .info with the commit's time, the .zip
// made as the go command makes it from a tag (nested modules left out, the
// repository's LICENSE added to a module without its own), and the list of
// versions.
func writeProxy(root, tree string, mods []workMod, v string, when time.Time) error {
	license, err := os.ReadFile(filepath.Join(tree, "LICENSE"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, m := range mods {
		if err := writeProxyModule(root, tree, m, v, when, license); err != nil {
			return fmt.Errorf("--proxy %s: %s: %w", root, m.path, err)
		}
	}
	return nil
}

func writeProxyModule(root, tree string, m workMod, v string, when time.Time, license []byte) error {
	src := filepath.Join(tree, filepath.FromSlash(m.folder))
	dst, err := proxyDir(root, m.path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ev, err := module.EscapeVersion(v)
	if err != nil {
		return err
	}
	gomod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dst, ev+".mod"), gomod, 0o644); err != nil {
		return err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{v, when})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dst, ev+".info"), info, 0o644); err != nil {
		return err
	}
	if license != nil {
		// The go command adds the repository's LICENSE to the zip of a
		// module in a subdirectory that has none; do the same, so the
		// zip's hash is the one a proxy will compute from the tag.
		lic := filepath.Join(src, "LICENSE")
		if _, err := os.Stat(lic); errors.Is(err, fs.ErrNotExist) {
			if err := os.WriteFile(lic, license, 0o644); err != nil {
				return err
			}
		}
	}
	if err := writeZip(filepath.Join(dst, ev+".zip"), src, module.Version{Path: m.path, Version: v}); err != nil {
		return err
	}
	return addToList(filepath.Join(dst, "list"), v)
}

func writeZip(file, src string, mv module.Version) (err error) {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(file)
		}
	}()
	return modzip.CreateFromDir(f, mv, src)
}

// addToList adds v to a proxy's list of a module's versions, keeping the
// versions already there, in semver order.
func addToList(file, v string) error {
	data, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	versions := strings.Fields(string(data))
	if !slices.Contains(versions, v) {
		versions = append(versions, v)
	}
	semver.Sort(versions)
	return os.WriteFile(file, []byte(strings.Join(versions, "\n")+"\n"), 0o644)
}

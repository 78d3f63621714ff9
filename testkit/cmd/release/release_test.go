package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

// gitEnv makes the test's git commands independent of the user's git
// configuration (identity, signing, hooks).
func gitEnv(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed:", err)
	}
	t.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	t.Setenv("GIT_AUTHOR_NAME", "release test")
	t.Setenv("GIT_AUTHOR_EMAIL", "release-test@example.com")
	t.Setenv("GIT_COMMITTER_NAME", "release test")
	t.Setenv("GIT_COMMITTER_EMAIL", "release-test@example.com")
}

func mustGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := git(dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// workingTreeRepo copies the files of this repository's working tree
// (tracked and untracked, not ignored: what a commit of it would hold) into
// a fresh repository with one commit, so that the release is cut from the
// code under test, uncommitted changes included, and its tags land in a
// throwaway repository.
func workingTreeRepo(t *testing.T) string {
	t.Helper()
	top, err := git(".", "rev-parse", "--show-toplevel")
	if err != nil {
		t.Skip("not in a git checkout (a source archive?): nothing to release:", err)
	}
	root := strings.TrimSpace(top)
	files := mustGit(t, root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	dst := filepath.Join(t.TempDir(), "repo")
	for _, f := range strings.Split(strings.TrimRight(files, "\x00"), "\x00") {
		src := filepath.Join(root, filepath.FromSlash(f))
		info, err := os.Lstat(src)
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if !info.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dst, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	mustGit(t, dst, "init", "--quiet")
	mustGit(t, dst, "add", "--all")
	mustGit(t, dst, "commit", "--quiet", "--message", "working tree")
	return dst
}

// TestReleaseFetchedWithGoGet cuts this repository's working tree as
// v0.1.0 into a proxy directory and tags, then, as a service outside the
// repository would, fetches runtime, events, contracts and services/order
// with `go get` from that directory in a fresh module (no workspace, no
// replace directives) and builds and runs a program importing
// runtime/subscriber and contracts.
func TestReleaseFetchedWithGoGet(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program against the release: not in -short")
	}
	gitEnv(t)
	repo := workingTreeRepo(t)
	head := mustGit(t, repo, "rev-parse", "HEAD")
	proxy := filepath.Join(t.TempDir(), "proxy")
	const v = "v0.1.0"

	var stdout, stderr bytes.Buffer
	if err := run([]string{"--repo", repo, "--version", v, "--proxy", proxy, "--tag", "--check"}, &stdout, &stderr); err != nil {
		t.Fatalf("release: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Log(stdout.String())

	mods, err := workspaceModules(repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		dir, err := proxyDir(proxy, m.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"list", v + ".info", v + ".mod", v + ".zip"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("proxy: %s: %v", m.path, err)
			}
		}
		// The tag names a commit whose go.mod requires the project's
		// modules at the release version, and the proxy serves that go.mod.
		tagged := mustGit(t, repo, "show", m.tag(v)+":"+m.folder+"/go.mod")
		served, err := os.ReadFile(filepath.Join(dir, v+".mod"))
		if err != nil {
			continue
		}
		if string(served) != tagged {
			t.Errorf("%s: the proxy's go.mod differs from the one at tag %s", m.path, m.tag(v))
		}
		mf, err := modfile.Parse(m.folder+"/go.mod", served, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range mf.Require {
			if strings.HasPrefix(r.Mod.Path, "github.com/marketledger/ledger/") && r.Mod.Version != v {
				t.Errorf("%s at %s requires %s", m.path, v, r.Mod)
			}
		}
	}
	// The caller's repository: same commit checked out, nothing changed,
	// the release's worktree gone.
	if got := mustGit(t, repo, "rev-parse", "HEAD"); got != head {
		t.Errorf("HEAD moved from %s to %s", head, got)
	}
	if st := mustGit(t, repo, "status", "--porcelain"); st != "" {
		t.Errorf("the release changed the caller's files:\n%s", st)
	}
	if wt := mustGit(t, repo, "worktree", "list"); strings.Count(wt, "\n") != 1 {
		t.Errorf("the release left a worktree behind:\n%s", wt)
	}
}

// smallRepo is a repository with a one-module workspace, for the refusals.
func smallRepo(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.work", "go 1.26.0\n\nuse ./a\n")
	write("a/go.mod", "module example.com/small/a\n\ngo 1.26.0\n")
	write("a/a.go", "package a\n")
	mustGit(t, dir, "init", "--quiet")
	mustGit(t, dir, "add", "--all")
	mustGit(t, dir, "commit", "--quiet", "--message", "small")
	return dir
}

func TestReleaseRefuses(t *testing.T) {
	gitEnv(t)
	clean := smallRepo(t)
	dirty := smallRepo(t)
	if err := os.WriteFile(filepath.Join(dirty, "a", "b.go"), []byte("package a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tagged := smallRepo(t)
	mustGit(t, tagged, "tag", "a/v0.1.0")
	proxy := filepath.Join(t.TempDir(), "proxy")

	tests := []struct {
		name string
		args []string
		want []string // in the error
	}{
		{"no version", []string{"--repo", clean, "--proxy", proxy}, []string{"--version", "required"}},
		{"no v", []string{"--repo", clean, "--version", "0.1.0", "--proxy", proxy}, []string{"--version", `"0.1.0"`, "not a semantic version"}},
		{"short", []string{"--repo", clean, "--version", "v0.1", "--proxy", proxy}, []string{"--version", "not a semantic version"}},
		{"build metadata", []string{"--repo", clean, "--version", "v0.1.0+x", "--proxy", proxy}, []string{"--version", "not a semantic version"}},
		{"major 2", []string{"--repo", clean, "--version", "v2.0.0", "--proxy", proxy}, []string{"--version", "/v2 suffix"}},
		{"nothing to do", []string{"--repo", clean, "--version", "v0.1.0"}, []string{"--proxy", "--tag"}},
		{"check without proxy", []string{"--repo", clean, "--version", "v0.1.0", "--tag", "--check"}, []string{"--check needs --proxy"}},
		{"argument", []string{"--repo", clean, "--version", "v0.1.0", "--tag", "v0.2.0"}, []string{`"v0.2.0"`, "flag"}},
		{"not a repository", []string{"--repo", t.TempDir(), "--version", "v0.1.0", "--tag"}, []string{"--repo", "not inside a git repository"}},
		{"dirty", []string{"--repo", dirty, "--version", "v0.1.0", "--proxy", proxy}, []string{"--repo", "uncommitted changes", "a/b.go"}},
		{"no such rev", []string{"--repo", clean, "--rev", "nosuch", "--version", "v0.1.0", "--tag"}, []string{"--rev", `"nosuch"`, "no such commit"}},
		{"tag taken", []string{"--repo", tagged, "--version", "v0.1.0", "--tag"}, []string{"--version v0.1.0", "a/v0.1.0 already exists"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(tt.args, &stdout, &stderr)
			if err == nil {
				t.Fatalf("release %s: no error; stdout:\n%s", strings.Join(tt.args, " "), stdout.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}

	// A proxy directory that already holds the version is refused too, and
	// the first release into it left the caller's go.mod as it was.
	if err := run([]string{"--repo", clean, "--version", "v0.1.0", "--proxy", proxy}, new(bytes.Buffer), new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"--repo", clean, "--version", "v0.1.0", "--proxy", proxy}, new(bytes.Buffer), new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "--proxy") || !strings.Contains(err.Error(), "already holds example.com/small/a@v0.1.0") {
		t.Errorf("second release into one proxy directory: %v", err)
	}
	if st := mustGit(t, clean, "status", "--porcelain"); st != "" {
		t.Errorf("the release changed the caller's files:\n%s", st)
	}
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run([]string{"--help"}, &stdout, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v, want flag.ErrHelp (exit status 0)", err)
	}
	if !strings.Contains(stderr.String(), "Usage: release --version vX.Y.Z") {
		t.Errorf("--help printed:\n%s", stderr.String())
	}
}

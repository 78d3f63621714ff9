package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
)

// repo is the git repository a release is cut from.
type repo struct {
	root string
}

// workMod is one module of the workspace in the release tree.
type workMod struct {
	folder string // slash-separated, relative to the repository root: the tag prefix
	path   string // the module path
}

// tag is the module's tag for version v, as the go command looks it up for
// a module in a subdirectory.
func (m workMod) tag(v string) string { return m.folder + "/" + v }

// openRepo finds the repository that holds dir and refuses a dirty working
// tree: a release is cut from a commit, and uncommitted changes would not be
// in it.
func openRepo(dir string) (*repo, error) {
	out, err := git(dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, usagef("--repo %s: not inside a git repository (%v)", dir, err)
	}
	r := &repo{root: strings.TrimSpace(out)}
	status, err := git(r.root, "status", "--porcelain")
	if err != nil {
		return nil, err
	}
	if lines := strings.Split(strings.TrimRight(status, "\n"), "\n"); status != "" {
		return nil, usagef("--repo %s has uncommitted changes (%d paths, the first %q): commit or stash them; a release is cut from a commit",
			r.root, len(lines), strings.TrimSpace(lines[0]))
	}
	return r, nil
}

func (r *repo) release(o options, stdout io.Writer) error {
	commit, err := git(r.root, "rev-parse", "--verify", "--quiet", o.rev+"^{commit}")
	if err != nil {
		return usagef("--rev %q: no such commit in %s", o.rev, r.root)
	}
	commit = strings.TrimSpace(commit)
	tmp, err := os.MkdirTemp("", "release-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "tree")
	if _, err := git(r.root, "worktree", "add", "--detach", tree, commit); err != nil {
		return err
	}
	defer git(r.root, "worktree", "remove", "--force", tree)

	mods, err := workspaceModules(tree)
	if err != nil {
		return err
	}
	if err := r.refuseTaken(o, mods); err != nil {
		return err
	}
	if err := setRequirements(tree, mods, o.version); err != nil {
		return err
	}
	when, err := r.commitTime(commit)
	if err != nil {
		return err
	}
	if o.tag {
		if when, err = r.commitAndTag(tree, mods, o.version); err != nil {
			return err
		}
	}
	if o.proxy != "" {
		if err := writeProxy(o.proxy, tree, mods, o.version, when); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %d modules at %s to the proxy directory %s\n", len(mods), o.version, o.proxy)
	}
	if o.check {
		if err := checkRelease(o.proxy, o.version, mods, stdout); err != nil {
			return err
		}
	}
	if o.tag {
		tags := make([]string, len(mods))
		for i, m := range mods {
			tags[i] = m.tag(o.version)
		}
		fmt.Fprintf(stdout, "tagged %d modules; publish with:\n  git push origin %s\n", len(mods), strings.Join(tags, " "))
	}
	return nil
}

// workspaceModules lists the modules of the tree's go.work, checking that
// each module path ends with its folder: the go command finds a module in
// a subdirectory by a tag prefixed with that folder, so the two must agree.
func workspaceModules(tree string) ([]workMod, error) {
	data, err := os.ReadFile(filepath.Join(tree, "go.work"))
	if err != nil {
		return nil, fmt.Errorf("the release needs the repository's go.work to list its modules: %w", err)
	}
	wf, err := modfile.ParseWork("go.work", data, nil)
	if err != nil {
		return nil, err
	}
	var mods []workMod
	prefix := ""
	for _, u := range wf.Use {
		folder := path.Clean(filepath.ToSlash(u.Path))
		if folder == "." || strings.HasPrefix(folder, "../") || path.IsAbs(folder) {
			return nil, fmt.Errorf("go.work: use %s: a released module must be in a subdirectory of the repository", u.Path)
		}
		mf, err := readModFile(filepath.Join(tree, filepath.FromSlash(folder), "go.mod"))
		if err != nil {
			return nil, err
		}
		p := mf.Module.Mod.Path
		root, ok := strings.CutSuffix(p, "/"+folder)
		if !ok || (prefix != "" && root != prefix) {
			return nil, fmt.Errorf("%s/go.mod: module path %s does not end with its folder %s under one repository path: no tag %s/vX.Y.Z would find it",
				folder, p, folder, folder)
		}
		prefix = root
		mods = append(mods, workMod{folder: folder, path: p})
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("go.work lists no modules")
	}
	return mods, nil
}

func readModFile(file string) (*modfile.File, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return modfile.Parse(file, data, nil)
}

// refuseTaken refuses a version already tagged or already in the proxy
// directory: a published version must never change.
func (r *repo) refuseTaken(o options, mods []workMod) error {
	for _, m := range mods {
		if o.tag {
			if _, err := git(r.root, "rev-parse", "--verify", "--quiet", "refs/tags/"+m.tag(o.version)); err == nil {
				return usagef("--version %s: tag %s already exists; a released version never changes, pick the next one", o.version, m.tag(o.version))
			}
		}
		if o.proxy != "" {
			dir, err := proxyDir(o.proxy, m.path)
			if err != nil {
				return err
			}
			if _, err := os.Stat(filepath.Join(dir, o.version+".zip")); err == nil {
				return usagef("--proxy %s already holds %s@%s; a released version never changes: use an empty directory", o.proxy, m.path, o.version)
			}
		}
	}
	return nil
}

// setRequirements points every requirement of a module on another module of
// the project at version v. The replace directives stay: the go command
// ignores them in a module fetched as a dependency, and they keep a
// checkout of the tag building from its folders.
func setRequirements(tree string, mods []workMod, v string) error {
	ours := make(map[string]bool, len(mods))
	for _, m := range mods {
		ours[m.path] = true
	}
	for _, m := range mods {
		dir := filepath.Join(tree, filepath.FromSlash(m.folder))
		mf, err := readModFile(filepath.Join(dir, "go.mod"))
		if err != nil {
			return err
		}
		args := []string{"mod", "edit"}
		for _, req := range mf.Require {
			if ours[req.Mod.Path] {
				args = append(args, "-require="+req.Mod.Path+"@"+v)
			}
		}
		if len(args) == 2 {
			continue
		}
		if _, err := goCmd(dir, nil, args...); err != nil {
			return fmt.Errorf("%s: %w", m.folder, err)
		}
	}
	return nil
}

// commitAndTag commits the edited go.mod files in the release tree and tags
// the commit once per module. The commit is on no branch: the tags keep it.
func (r *repo) commitAndTag(tree string, mods []workMod, v string) (time.Time, error) {
	if _, err := git(tree, "commit", "--quiet", "--all", "--allow-empty", "--message", "release "+v); err != nil {
		return time.Time{}, err
	}
	commit, err := git(tree, "rev-parse", "HEAD")
	if err != nil {
		return time.Time{}, err
	}
	commit = strings.TrimSpace(commit)
	var made []string
	for _, m := range mods {
		if _, err := git(r.root, "tag", "--annotate", "--message", m.path+" "+v, m.tag(v), commit); err != nil {
			// All tags or none: a release with some modules tagged would
			// refuse to be cut again at the same version.
			if len(made) > 0 {
				git(r.root, append([]string{"tag", "--delete"}, made...)...)
			}
			return time.Time{}, err
		}
		made = append(made, m.tag(v))
	}
	return r.commitTime(commit)
}

func (r *repo) commitTime(commit string) (time.Time, error) {
	out, err := git(r.root, "show", "--no-patch", "--format=%cI", commit)
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(out))
	if err != nil {
		return time.Time{}, fmt.Errorf("commit %s: committer date %q: %w", commit, strings.TrimSpace(out), err)
	}
	return t.UTC(), nil
}

// git runs git in dir and returns its standard output; an error carries
// git's own message.
func git(dir string, args ...string) (string, error) {
	return command(dir, nil, "git", args...)
}

// goCmd runs the go command in dir outside any workspace, with env added to
// the process's environment.
func goCmd(dir string, env []string, args ...string) (string, error) {
	return command(dir, append([]string{"GOWORK=off"}, env...), "go", args...)
}

func command(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return stdout.String(), fmt.Errorf("%s %s: %s", name, strings.Join(args, " "), msg)
	}
	return stdout.String(), nil
}

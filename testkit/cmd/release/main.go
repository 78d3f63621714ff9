// Command release cuts a release of every module of the repository's Go
// workspace at one version: in a clean copy of a commit (a git worktree,
// never the caller's files) it sets each module's requirements on the
// project's other modules to that version, then tags one commit once per
// module (`<folder>/vX.Y.Z`, --tag) and/or writes the modules into a
// directory laid out as a Go module proxy (--proxy), so that the release
// can be fetched with `go get` and checked (--check) before anything is
// pushed. It never pushes: it prints the push command.
//
// Usage:
//
//	go run ./cmd/release --version v0.1.0 --proxy ../bin/release-proxy --check
//	go run ./cmd/release --version v0.1.0 --tag
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/mod/semver"
)

// usageError is a refusal of the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// options is the parsed command line.
type options struct {
	version string
	repo    string
	rev     string
	proxy   string
	tag     bool
	check   bool
}

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	fmt.Fprintln(os.Stderr, "release:", err)
	var ue *usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

const usageText = `Usage: release --version vX.Y.Z [--repo DIR] [--rev REV] [--proxy DIR] [--check] [--tag]

Cuts version vX.Y.Z of every module listed in the repository's go.work, from
the commit REV, in a git worktree of its own (the caller's files are never
touched). In that copy each module's requirements on the project's other
modules are set to vX.Y.Z (go mod edit); then:

  --proxy DIR  writes the modules into DIR in the module proxy layout
               (<module>/@v/list, vX.Y.Z.info, .mod, .zip), so that
               GOPROXY=file://DIR can serve the release before it is pushed;
  --check      (with --proxy) fetches runtime, events, contracts and
               services/order at vX.Y.Z from DIR into a fresh module outside
               the workspace and builds a program on the subscriber SDK;
  --tag        commits the edited go.mod files ("release vX.Y.Z", a child
               of REV on no branch) and tags that commit once per module,
               <folder>/vX.Y.Z; push the tags to publish the release.

The working tree of the repository must be clean.

Flags:
`

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.version, "version", "", "the release version, vMAJOR.MINOR.PATCH (for example v0.1.0)")
	fs.StringVar(&o.repo, "repo", ".", "a directory inside the repository to release")
	fs.StringVar(&o.rev, "rev", "HEAD", "the commit to release")
	fs.StringVar(&o.proxy, "proxy", "", "write the release into this directory in the module proxy layout")
	fs.BoolVar(&o.tag, "tag", false, "commit the release and tag it once per module (<folder>/vX.Y.Z)")
	fs.BoolVar(&o.check, "check", false, "build a program against the release in --proxy from a fresh module")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, &usageError{msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return o, usagef("unexpected argument %q: every input is a flag (see --help)", fs.Arg(0))
	}
	if err := checkVersion(o.version); err != nil {
		return o, err
	}
	if o.proxy == "" && !o.tag {
		return o, usagef("nothing to do: give --proxy DIR, --tag, or both")
	}
	if o.check && o.proxy == "" {
		return o, usagef("--check needs --proxy DIR: it fetches the release from there")
	}
	if o.rev == "" {
		return o, usagef("--rev is empty: name the commit to release (default HEAD)")
	}
	return o, nil
}

// checkVersion refuses a version the go command would not accept as a
// release tag: it must be canonical semver with a leading v and no build
// metadata.
func checkVersion(v string) error {
	if v == "" {
		return usagef("--version is required: the release version, vMAJOR.MINOR.PATCH (for example v0.1.0)")
	}
	if !semver.IsValid(v) || semver.Canonical(v) != v || strings.Contains(v, "+") {
		return usagef("--version %q is not a semantic version of the form vMAJOR.MINOR.PATCH (for example v0.1.0, or v0.1.0-rc.1)", v)
	}
	if m := semver.Major(v); m != "v0" && m != "v1" {
		return usagef("--version %q: major version %s needs a /%s suffix on every module path first; this repository's modules have none", v, m, m)
	}
	return nil
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	r, err := openRepo(o.repo)
	if err != nil {
		return err
	}
	return r.release(o, stdout)
}

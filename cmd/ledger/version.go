package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is the release this binary was built as; a release build sets it
// with -ldflags "-X main.version=v1.2.3". Otherwise the module version and
// the VCS revision Go recorded in the binary are printed.
var version = ""

// buildInfo is what `ledger version` prints.
type buildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, GoVersion: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if b.Version == "" {
			b.Version = "(unknown)"
		}
		return b
	}
	b.GoVersion = bi.GoVersion
	if b.Version == "" {
		b.Version = bi.Main.Version
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the ledger's version, the source revision it was built from, and its Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := readBuildInfo()
			w := cmd.OutOrStdout()
			return printJSONOr(w, g.json, b, func() {
				rev := b.Revision
				if rev == "" {
					rev = "unknown revision"
				} else if b.Modified {
					rev += " with local changes"
				}
				fmt.Fprintf(w, "ledger %s (%s, %s)\n", b.Version, rev, b.GoVersion)
			})
		},
	}
}

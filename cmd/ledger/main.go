// Command ledger is the marketplace ledger's one binary: it serves the log
// and the services, plays the demo day, and answers investigators' and
// regulators' questions about the log.
package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/events"
)

// Exit codes: 0 success, 1 failure, 2 bad input (usage, flags, arguments,
// or a command refused as invalid), 3 a bundle that is intact but whose
// signer was not checked against a trusted key (ledger verify without
// --key).
const (
	exitFailure   = 1
	exitUsage     = 2
	exitUntrusted = 3
)

// usageError marks an error caused by what the user typed.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func main() {
	startProfile()
	root := newRoot()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ledger: "+describe(err))
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	var nt untrustedError
	if errors.As(err, &nt) {
		return exitUntrusted
	}
	// Input the ledger refused (breaks a rule, names nothing that exists, or
	// reuses a key) is the caller's to fix: exit 2 like a usage error.
	switch events.KindOf(err) {
	case events.KindInvalid, events.KindNotFound, events.KindDuplicate:
		return exitUsage
	}
	return exitFailure
}

func oneLine(err error) string {
	s := err.Error()
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

// globals are the flags every subcommand shares.
type globals struct {
	dataDir  string
	natsURL  string
	credsDir string
	tlsCA    string
	json     bool
	// tz is --tz as given; loc the zone it names, set before any
	// subcommand runs.
	tz  string
	loc *time.Location
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "ledger",
		Short: "An event-sourced marketplace transaction ledger on NATS JetStream",
		Long: `ledger keeps every order, payment, listing and policy decision of a marketplace
as immutable events in one JetStream stream (LEDGER), and answers questions about
them: what happened, in which order, under which policy, and what the ledger knew
at any instant.

By default it runs on an embedded NATS server with its data in --data; with
--nats it uses an existing NATS cluster instead.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.dataDir, "data", "./data", "data directory of the embedded server (JetStream store, keys, credentials)")
	root.PersistentFlags().StringVar(&g.natsURL, "nats", "", "URL of an existing NATS cluster to use instead of the embedded server")
	root.PersistentFlags().StringVar(&g.credsDir, "creds", "", "a NATS user's .creds file, used for every connection of the command, or the directory of the ledger's <role>.creds files, one user per role (default DATA/credentials; with --nats, used when it exists; serve takes the directory)")
	root.PersistentFlags().StringVar(&g.tlsCA, "tls-ca", "", "CA certificate (PEM) that signs the NATS server's certificate, when it uses TLS")
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print data as JSON")
	root.PersistentFlags().StringVar(&g.tz, "tz", "", tzUsage)
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		var err error
		g.loc, err = parseZone(g.tz)
		return err
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	root.AddCommand(newServeCmd(g), newStreamCmd(g), newDemoCmd(g), newPolicyCmd(g), newSnapshotCmd(g), newStateCmd(g), newVerifyCmd(g), newDiffCmd(g), newMirrorCmd(g), newTokenCmd(g), newCredentialsCmd(g), newReplayCmd(g), newTraceCmd(g), newTailCmd(g), newVersionCmd(g), newNotaryCmd(g), newBackupCmd(g), newRestoreCmd(g))
	strictArgs(root)
	return root
}

// strictArgs makes every refusal of what was typed a usage error (exit 2):
// cobra reports wrong arguments and unknown subcommands as plain errors,
// and a group command (ledger policy) given an unknown subcommand prints
// its help and succeeds.
func strictArgs(c *cobra.Command) {
	for _, sub := range c.Commands() {
		strictArgs(sub)
	}
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q (see '%s --help')", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		}
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		return
	}
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageError{fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
			}
			return nil
		}
	}
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
)

// tokensFile is the HTTP API's tokens file in the credentials directory.
const tokensFile = "tokens.json"

func newTokenCmd(g *globals) *cobra.Command {
	var path string
	tokens := func() string {
		if path != "" {
			return path
		}
		return filepath.Join(credentialsDir(g.dataDir), tokensFile)
	}
	c := &cobra.Command{
		Use:   "token",
		Short: "Issue, list and revoke bearer tokens of the HTTP API",
		Long: `Every endpoint of the HTTP API but /healthz, /readyz and /openapi.json wants
"Authorization: Bearer <token>", and each token grants one role:

  seller         its own listings; order.cancel and order.ship of its orders
  buyer          order.place, order.cancel and order.complete, for its own orders
  operator       every command but policy ones (payments too), events, snapshots, metrics
  regulator      events and snapshots, read only
  investigator   events and snapshots, read only
  policy_issuer  policy commands (freeze, lift, floor price); nobody else may

Only the SHA-256 of a token is stored (DATA/credentials/tokens.json, 0600); the
token itself is shown once, when it is issued. A buyer's or seller's
--subject is its buyer or seller id: the token acts only for that id. A running 'ledger serve' takes
issued and revoked tokens into account within a second.`,
		Args: cobra.NoArgs,
	}
	c.PersistentFlags().StringVar(&path, "tokens", "", "tokens file (default DATA/credentials/tokens.json)")

	var role, subject string
	var quiet bool
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Issue a token for a role and print it once",
		Long: `Issue a token for a role and print it once, with how to use it; --quiet
prints the token alone on one line, for a script:

  TOKEN=$(ledger token issue --data ./data --role buyer --subject buyer-17 --quiet)`,
		Example: "  ledger token issue --role buyer --subject buyer-17",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains(httpauth.Roles(), role) {
				return usagef("--role %q: use one of %s", role, strings.Join(httpauth.Roles(), ", "))
			}
			if subject == "" {
				return usagef("--subject is required: who holds the token (a seller id, a team, a person)")
			}
			p := tokens()
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			token, e, err := httpauth.IssueToken(p, role, subject)
			if err != nil {
				return usagef("%v", err)
			}
			w := cmd.OutOrStdout()
			if quiet {
				_, err := fmt.Fprintln(w, token)
				return err
			}
			return printJSONOr(w, g.json, map[string]string{"token": token, "role": e.Role, "subject": e.Subject, "token_id": e.TokenSHA256[:8]},
				func() { httpauth.PrintIssued(w, token, e) })
		},
	}
	issue.Flags().StringVar(&role, "role", "", "role the token grants: "+strings.Join(httpauth.Roles(), ", "))
	issue.Flags().StringVar(&subject, "subject", "", "who holds the token")
	issue.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the token, on one line (for TOKEN=$(...) in a script)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the issued tokens: subject, role and token id (never the token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			entries, err := httpauth.ReadEntries(tokens())
			if err != nil {
				return usagef("%v", err)
			}
			type row struct {
				Subject string `json:"subject"`
				Role    string `json:"role"`
				TokenID string `json:"token_id"`
			}
			rows := make([]row, 0, len(entries))
			for _, e := range entries {
				rows = append(rows, row{e.Subject, e.Role, e.TokenSHA256[:8]})
			}
			w := cmd.OutOrStdout()
			return printJSONOr(w, g.json, rows, func() {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SUBJECT\tROLE\tTOKEN ID")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Subject, r.Role, r.TokenID)
				}
				tw.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke SUBJECT|TOKEN_ID",
		Short: "Revoke every token of a subject, or the token with that id",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := httpauth.RevokeTokens(tokens(), args[0])
			if err != nil {
				return usagef("%v", err)
			}
			if n == 0 {
				return usagef("no token of subject or id %q", args[0])
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %d token(s)\n", n)
			return nil
		},
	}
	c.AddCommand(issue, list, revoke)
	return c
}

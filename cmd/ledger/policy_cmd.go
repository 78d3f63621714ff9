package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/services/policy"
)

// policyFlags are the flags of `ledger policy freeze` and `lift`.
type policyFlags struct {
	ruleID        string
	jurisdictions []string
	channels      []string
	categories    []string
	sellers       []string
	all           bool
	operations    []string
	effective     string
	basis         string
	issuer        string
	description   string
	key           string
	issuers       string
}

func newPolicyCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "Impose, lift and list regulatory policy rules (freezes)",
		Long: `policy appends regulatory rules to the log through the policy service. A
freeze is one policy event: from its effective instant every service refuses
the operations it blocks in its scope (order placement, payment authorization
and capture by default), while refunds, voids, cancellations and settlements go
on. Only issuers holding the policy_issuer role may append policy events.`,
	}
	c.AddCommand(newFreezeCmd(g), newLiftCmd(g), newPolicyListCmd(g))
	return c
}

func newFreezeCmd(g *globals) *cobra.Command {
	f := &policyFlags{}
	c := &cobra.Command{
		Use:   "freeze",
		Short: "Impose a freeze on a scope of trade",
		Example: `  ledger policy freeze --jurisdiction ID --channel social_commerce \
    --basis "Permendag 31/2023" --issuer kemendag    # in force at once`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			eff, err := optionalInstant(f.effective)
			if err != nil {
				return err
			}
			ops := make([]contracts.Operation, len(f.operations))
			for i, o := range f.operations {
				ops[i] = contracts.Operation(o)
			}
			chans := make([]contracts.Channel, len(f.channels))
			for i, ch := range f.channels {
				chans[i] = contracts.Channel(ch)
			}
			ruleID := f.ruleID
			if ruleID == "" {
				ruleID = "freeze-" + time.Now().UTC().Format("20060102T150405Z")
			}
			c := contracts.ImposeFreeze{RuleID: ruleID, Scope: contracts.Scope{All: f.all, Jurisdictions: f.jurisdictions,
				Channels: chans, Categories: f.categories, Sellers: f.sellers}, BlockedOperations: ops,
				EffectiveAt: eff, LegalBasis: f.basis, Issuer: f.issuer, Description: f.description, IdempotencyKey: f.key}
			return withPolicy(cmd.Context(), g, f.issuers, cmd.OutOrStdout(), "policy.impose_freeze", c)
		},
	}
	c.Flags().StringVar(&f.ruleID, "rule-id", "", "id of the new rule (default: freeze-<UTC time>)")
	c.Flags().StringSliceVar(&f.jurisdictions, "jurisdiction", nil, "ISO 3166-1 alpha-2 jurisdiction in scope (repeatable)")
	c.Flags().StringSliceVar(&f.channels, "channel", nil, "sales channel in scope: marketplace or social_commerce (repeatable)")
	c.Flags().StringSliceVar(&f.categories, "category", nil, "category in scope (repeatable)")
	c.Flags().StringSliceVar(&f.sellers, "seller", nil, "seller id in scope (repeatable)")
	c.Flags().BoolVar(&f.all, "all", false, "freeze all trade (required when no scope flag is given)")
	c.Flags().StringSliceVar(&f.operations, "operation", nil, "operation to block (default order.place, payment.authorize, payment.capture)")
	addCommonPolicyFlags(c, f)
	return c
}

func newLiftCmd(g *globals) *cobra.Command {
	f := &policyFlags{}
	c := &cobra.Command{
		Use:     "lift",
		Short:   "Lift a freeze from an effective instant",
		Example: `  ledger policy lift --rule-id F1 --basis "Permendag 31/2023 amended" --issuer kemendag`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.ruleID == "" {
				return usagef("--rule-id is required: the freeze to lift")
			}
			eff, err := optionalInstant(f.effective)
			if err != nil {
				return err
			}
			c := contracts.LiftFreeze{RuleID: f.ruleID, EffectiveAt: eff, LegalBasis: f.basis, Issuer: f.issuer, IdempotencyKey: f.key}
			return withPolicy(cmd.Context(), g, f.issuers, cmd.OutOrStdout(), "policy.lift_freeze", c)
		},
	}
	c.Flags().StringVar(&f.ruleID, "rule-id", "", "the freeze to lift")
	addCommonPolicyFlags(c, f)
	return c
}

func addCommonPolicyFlags(c *cobra.Command, f *policyFlags) {
	c.Flags().StringVar(&f.effective, "effective", "", "effective instant, RFC 3339 with offset, not in the past (default: now)")
	c.Flags().StringVar(&f.basis, "basis", "", "legal basis, for example \"Permendag 31/2023\"")
	c.Flags().StringVar(&f.issuer, "issuer", "", "issuer (must hold the policy_issuer role)")
	c.Flags().StringVar(&f.description, "description", "", "what the rule does, for people")
	c.Flags().StringVar(&f.key, "idempotency-key", "", "a retry with the same key returns the first result")
	c.Flags().StringVar(&f.issuers, "policy-issuers", "", "file naming who may issue policy (default DATA/"+issuersFile+"; see 'ledger serve --help')")
}

func optionalInstant(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, usagef("--effective %q is not an RFC 3339 instant with offset (for example 2023-10-04T17:00:00+07:00)", s)
	}
	return t, nil
}

// withPolicy validates a policy command against its contract, runs it
// through a policy service on the log, and prints the result.
func withPolicy(ctx context.Context, g *globals, issuersFlag string, w io.Writer, name string, cmd any) error {
	body, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	issuers, err := issuersFrom(g.dataDir, issuersFlag)
	if err != nil {
		return err
	}
	n, err := openExisting(ctx, g, auth.RolePolicy)
	if err != nil {
		return err
	}
	defer n.Close()
	st, err := newStack(ctx, n.storeOf(ctx), time.Now, map[string]bool{contracts.ServicePolicy: true}, nil, withIssuers(issuers))
	if err != nil {
		return err
	}
	defer st.Close()
	reply, err := dispatch(ctx, st, name, body)
	if err != nil {
		return namePolicyFlag(err)
	}
	return printJSONOr(w, g.json, reply, func() {
		r := reply.(policy.Reply)
		fmt.Fprintf(w, "rule %s: version %d", r.RuleID, r.Version)
		for _, e := range r.Events {
			fmt.Fprintf(w, ", %s at position %d", e.Type, e.Position)
		}
		fmt.Fprintln(w)
	})
}

// policyFieldFlags names the flag that sets each field of a policy command,
// longest field first where one is the prefix of another.
var policyFieldFlags = []struct{ field, flag string }{
	{"/effective_at", "--effective"},
	{"/legal_basis", "--basis"},
	{"/issuer", "--issuer"},
	{"/rule_id", "--rule-id"},
	{"/description", "--description"},
	{"/idempotency_key", "--idempotency-key"},
	{"/blocked_operations", "--operation"},
	{"/scope/jurisdictions", "--jurisdiction"},
	{"/scope/channels", "--channel"},
	{"/scope/categories", "--category"},
	{"/scope/sellers", "--seller"},
	{"/scope", "--all or a scope flag (--jurisdiction, --channel, --category, --seller)"},
}

// flagError is a refusal of a command field, told by the flag that set it.
type flagError struct {
	flag string
	err  *events.Error
}

func (e flagError) Error() string {
	rule := e.err.Rule
	if rule == "" && e.err.Err != nil {
		rule = e.err.Err.Error()
	}
	// The contract's words for required and for a closed list.
	if rule == "minLength 1" {
		rule = "required, must not be empty"
	} else if list, ok := strings.CutPrefix(rule, "enum ["); ok {
		rule = "must be one of " + strings.ReplaceAll(strings.TrimSuffix(list, "]"), " ", ", ")
	}
	return e.flag + ": " + rule
}

func (e flagError) Unwrap() error { return e.err }

// namePolicyFlag says which flag a policy command's refusal is about,
// instead of the command field's JSON pointer.
func namePolicyFlag(err error) error {
	var e *events.Error
	if !errors.As(err, &e) || e.Field == "" {
		return err
	}
	for _, f := range policyFieldFlags {
		if e.Field == f.field || strings.HasPrefix(e.Field, f.field+"/") {
			return flagError{flag: f.flag, err: e}
		}
	}
	return err
}

func newPolicyListCmd(g *globals) *cobra.Command {
	var asOf, clock string
	c := &cobra.Command{
		Use:   "list",
		Short: "List the policy rules and whether each is in force at an instant",
		Long: `list folds every policy event up to the log position an instant lands on (the
head of the log without --as-of) and says, for each rule, whether it is in
force for the next event stored after that position: the same position diff
and snapshot land on for the same instant.

` + clockHelp,
		Example: `  ledger policy list --data ./d --as-of 2023-10-04T17:00:00+07:00`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var at projections.AsOf
			if asOf != "" {
				var err error
				if at, err = parseAsOfFlag("--as-of", clock, asOf); err != nil {
					return err
				}
			} else if clock != "" {
				return usagef("--clock applies to --as-of: give both, or neither for the head of the log")
			}
			ctx := cmd.Context()
			n, err := openExisting(ctx, g, auth.RoleInvestigator)
			if err != nil {
				return err
			}
			defer n.Close()
			st, err := newStack(ctx, sameStore(n.store), time.Now, map[string]bool{contracts.ServicePolicy: true}, nil)
			if err != nil {
				return err
			}
			defer st.Close()
			var l policy.Listing
			if asOf == "" {
				l, err = st.policy.List(ctx, time.Time{})
			} else {
				var p projections.Point
				if p, err = resolveAsOf(ctx, n.store, "--as-of", at); err == nil {
					l, err = st.policy.ListAt(ctx, p.Position, instantOf(at, p))
				}
			}
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			return printJSONOr(w, g.json, l, func() {
				on := ""
				if asOf != "" {
					on = " on the " + string(at.Clock) + " clock"
				}
				fmt.Fprintf(w, "policy as of %s%s (log position %d): %d rules\n", inZone(l.AsOf, g.zone()).Format(time.RFC3339), on, l.Position, len(l.Rules))
				for _, r := range l.Rules {
					b, _ := json.Marshal(r)
					fmt.Fprintf(w, "  %s\n", b)
				}
			})
		},
	}
	c.Flags().StringVar(&asOf, "as-of", "", "instant (RFC 3339 with offset) or position to judge the rules at (default: the head of the log)")
	addClockFlag(c, &clock)
	return c
}

// instantOf is the instant an as-of answer reports: the one asked for, or
// for a position the server's recorded time of it.
func instantOf(at projections.AsOf, p projections.Point) time.Time {
	if at.Clock == projections.ClockPosition {
		return p.RecordedAt
	}
	return at.Time
}

func printJSONOr(w io.Writer, asJSON bool, v any, text func()) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text()
	return nil
}

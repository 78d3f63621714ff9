package main

import (
	"context"
	"errors"
	"strings"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/models"
)

// clockUsage documents the one default every as-of flag shares (snapshot
// --as-of, diff --at, policy list --as-of): an instant is business time
// unless --clock says otherwise, a whole number is a position.
const clockUsage = "clock of the as-of instant: business (the default for an instant: when the fact happened, the events' occurred-at), recorded (when the server stored the event), or position (the default for a whole number)"

// clockHelp is the paragraph the as-of commands' --help share.
const clockHelp = `An as-of instant is RFC 3339 with an offset. --clock business (the default)
judges it by the events' business occurred-at, which is what a simulated 2023
day uses; --clock recorded by the server's recorded time; a whole number, or
--clock position, is a log position. An instant up to now after the last
event is the head of the log; an instant in the future is refused.`

func addClockFlag(c *cobra.Command, clock *string) {
	c.Flags().StringVar(clock, "clock", "", clockUsage)
}

// parseAsOfFlag reads an as-of flag's value on --clock; its errors name the
// flag.
func parseAsOfFlag(flag, clock, value string) (projections.AsOf, error) {
	at, err := projections.ParseAsOf(clock, value)
	if err != nil {
		return at, asOfError(flag, err)
	}
	return at, nil
}

// asOfError says which flag an as-of query's refusal is about: the query
// names its fields (as_of, clock, model), the user typed flags.
func asOfError(flag string, err error) error {
	var e *events.Error
	if !errors.As(err, &e) || e.Rule == "" {
		return err
	}
	switch {
	case e.Field == "clock":
		flag = "--clock"
	case e.Field == "model":
		flag = "--model"
	case e.Kind == events.KindNotFound: // an empty log
	case e.Kind != events.KindInvalid:
		return err
	}
	return usagef("%s: %s", flag, e.Rule)
}

// resolveAsOf returns the log position an as-of instant lands on, the way
// diff and snapshot resolve it (projections.Querier), so that every as-of
// command agrees on it.
func resolveAsOf(ctx context.Context, store projections.LogStore, flag string, at projections.AsOf) (projections.Point, error) {
	s, err := projections.QueryAsOf(ctx, store, at, models.ModelPolicy)
	if err != nil {
		return projections.Point{}, asOfError(flag, err)
	}
	return s.Point, nil
}

// describe is the one line an error prints as: without the Go operation
// names the ledger's errors carry for the operator's logs.
func describe(err error) string {
	s := oneLine(err)
	for e := err; e != nil; e = errors.Unwrap(e) {
		if le, ok := e.(*events.Error); ok && le.Op != "" {
			s = strings.Replace(s, le.Op+": ", "", 1)
		}
	}
	return s
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/events"
)

type tailOpts struct {
	from     string
	subjects []string
	types    []string
	count    int
}

func newTailCmd(g *globals) *cobra.Command {
	o := &tailOpts{}
	c := &cobra.Command{
		Use:   "tail",
		Short: "Follow the live log until interrupted",
		Long: `tail prints every new event as it is appended (or from --from), filtered by
--subject and --type, as a table or with --json one JSON object a line, until
interrupted (Ctrl-C) or, with --count, after that many events.`,
		Example: `  ledger tail --subject 'ledger.order.>'
  ledger tail --data ./demo --from 1 --count 10 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runTail(ctx, g, o, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&o.from, "from", "", "first position to print (default: the next event appended)")
	c.Flags().StringArrayVar(&o.subjects, "subject", nil, "subject pattern, e.g. ledger.order.> (repeatable)")
	c.Flags().StringArrayVar(&o.types, "type", nil, "event type, e.g. order.placed (repeatable)")
	c.Flags().IntVar(&o.count, "count", 0, "stop after this many events (0: until interrupted)")
	return c
}

func runTail(ctx context.Context, g *globals, o *tailOpts, stdout io.Writer) error {
	if o.count < 0 {
		return usagef("--count must be 0 or more")
	}
	from, err := parseBound("from", o.from, time.Now())
	if err != nil {
		return err
	}
	if from.kind != boundNone && from.kind != boundPosition {
		return usagef("--from of tail is a position")
	}
	types, err := checkFilters(o.subjects, o.types)
	if err != nil {
		return err
	}
	n, err := openLog(ctx, g)
	if err != nil {
		return err
	}
	defer n.Close()
	start := from.pos
	if start == 0 {
		head, err := n.store.LastPosition(ctx)
		if err != nil {
			return err
		}
		start = head + 1
	}
	p := newPrinter(stdout, g.json).in(g.zone())
	p.stream = true
	return tailEvents(ctx, n.store, start, &logRange{subjects: o.subjects, types: types}, o.count, p)
}

// errTailDone ends a subscription after --count events.
var errTailDone = fmt.Errorf("tail: count reached")

func tailEvents(ctx context.Context, st events.Store, from uint64, r *logRange, count int, p *printer) error {
	printed := 0
	// The subjects filter on the server; the types and business times,
	// which a subject does not carry, here.
	err := st.Subscribe(ctx, events.Query{From: from, Subjects: r.subjects}, func(e events.Event) error {
		if !r.match(&e) {
			return nil
		}
		if err := p.print(e); err != nil {
			return err
		}
		p.flush()
		if printed++; count > 0 && printed == count {
			return errTailDone
		}
		return nil
	})
	if err == errTailDone || ctx.Err() != nil {
		return nil
	}
	return err
}

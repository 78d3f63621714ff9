package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/marketledger/ledger/projections"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/cmd/ledger/internal/eventhttp"
	"github.com/marketledger/ledger/events"
)

type replayOpts struct {
	from, to string
	subjects []string
	types    []string
	model    string
	out      string
}

func newReplayCmd(g *globals) *cobra.Command {
	o := &replayOpts{}
	c := &cobra.Command{
		Use:   "replay",
		Short: "Print a range of the global log, in order, as a table or JSON lines",
		Long: `replay reads the global log from --from to --to (the whole log by default),
filtered by --subject and --type, and prints one event a line: a table, or
with --json one JSON object a line. A range of more than 10,000 positions
draws a progress bar on stderr.

` + boundSyntax,
		Example: `  ledger replay --data ./demo --from 1 --to 100
  ledger replay --data ./demo --from business:2023-10-04T16:55:00+07:00 --to business:2023-10-04T17:05:00+07:00
  ledger replay --data ./demo --type order.rejected --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.model != "" {
				return replayModel(cmd.Context(), g, o, cmd.OutOrStdout())
			}
			return runReplay(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	c.Flags().StringVar(&o.model, "model", "", "rebuild this read model as of --to instead of printing events (with --out)")
	c.Flags().StringVar(&o.out, "out", "", "directory for --model's JSON and CSV")
	c.Flags().StringVar(&o.from, "from", "", "first event: a position, an RFC 3339 recorded instant, or business:<instant>")
	c.Flags().StringVar(&o.to, "to", "", "last event (inclusive), in the same syntax; default the head of the log")
	c.Flags().StringArrayVar(&o.subjects, "subject", nil, "subject pattern, e.g. ledger.order.> (repeatable)")
	c.Flags().StringArrayVar(&o.types, "type", nil, "event type, e.g. order.placed (repeatable)")
	return c
}

// replayModel rebuilds one read model as of --to (a position, a recorded
// instant, or business:<instant>) and writes it to --out.
func replayModel(ctx context.Context, g *globals, o *replayOpts, w io.Writer) error {
	if o.out == "" || o.to == "" {
		return usagef("--model needs --to (the instant to rebuild it as of) and --out (a directory)")
	}
	clock, value := "", o.to
	if v, ok := strings.CutPrefix(o.to, "business:"); ok {
		clock, value = string(projections.ClockBusiness), v
	} else if _, err := strconv.ParseUint(o.to, 10, 64); err != nil {
		clock = string(projections.ClockRecorded)
	}
	at, err := projections.ParseAsOf(clock, value)
	if err != nil {
		return err
	}
	return writeModelAsOf(ctx, g, w, o.model, at, o.out)
}

func runReplay(ctx context.Context, g *globals, o *replayOpts, stdout, stderr io.Writer) error {
	now := time.Now()
	from, err := parseBound("from", o.from, now)
	if err != nil {
		return err
	}
	to, err := parseBound("to", o.to, now)
	if err != nil {
		return err
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
	r, err := resolveRange(ctx, n.store, from, to)
	if err != nil {
		return err
	}
	r.subjects, r.types = o.subjects, types
	p := newPrinter(stdout, g.json).in(g.zone())
	defer p.flush()
	if r.to < r.from {
		return nil // a recorded-time range with no event in it
	}
	bar := newBar(stderr, r.to-r.from+1, "replaying")
	defer bar.Finish()
	for e, err := range n.store.Read(ctx, events.Query{From: r.from, To: r.to, Subjects: r.subjects}) {
		if err != nil {
			return err
		}
		bar.Set64(int64(e.Position - r.from + 1))
		if r.match(&e) {
			if err := p.print(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// newBar returns a progress bar on w for ranges over progressMin positions
// when w is a terminal, and a silent one otherwise: a log file or a pipe
// gets no bar.
func newBar(w io.Writer, span uint64, what string) *progressbar.ProgressBar {
	if span <= progressMin || !isTerminal(w) {
		return progressbar.DefaultSilent(int64(span))
	}
	return progressbar.NewOptions64(int64(span), progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
}

// printer writes events as a table or as JSON lines.
type printer struct {
	w      io.Writer
	tw     *tabwriter.Writer
	json   *json.Encoder
	header bool
	// stream prints fixed-width columns, line by line: a tabwriter aligns
	// only what it holds, and tail flushes every event.
	stream bool
	// loc is the zone times are printed in (--tz); nil is UTC.
	loc *time.Location
}

// in makes p print times in loc, with its offset.
func (p *printer) in(loc *time.Location) *printer {
	p.loc = loc
	return p
}

func newPrinter(w io.Writer, asJSON bool) *printer {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false) // bodies as stored: the bytes their hashes cover
		return &printer{w: w, json: enc}
	}
	return &printer{w: w, tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

// recordedLayout prints a recorded instant to the millisecond, with the
// offset of the zone it is printed in.
const recordedLayout = "2006-01-02T15:04:05.000Z07:00"

// inZone is t in loc (UTC when loc is nil): every command prints its times
// in the one zone --tz names, with the offset.
func inZone(t time.Time, loc *time.Location) time.Time {
	if loc == nil {
		return t.UTC()
	}
	return t.In(loc)
}

func (p *printer) print(e events.Event) error {
	if p.json != nil {
		return p.json.Encode(eventhttp.ToJSON(e))
	}
	if p.stream {
		_, err := fmt.Fprintf(p.w, "%-9d %-29s %-25s %-28s %-32s %-36s %d\n", e.Position, inZone(e.RecordedAt, p.loc).Format(recordedLayout),
			inZone(e.OccurredAt, p.loc).Format(time.RFC3339), e.Type, e.Context()+"/"+e.AggregateID, orDash(e.CorrelationID), e.PolicyPosition)
		return err
	}
	if !p.header {
		fmt.Fprintln(p.tw, "POSITION\tRECORDED\tBUSINESS TIME\tTYPE\tAGGREGATE\tCORRELATION\tPOLICY")
		p.header = true
	}
	_, err := fmt.Fprintf(p.tw, "%d\t%s\t%s\t%s\t%s/%s\t%s\t%d\n", e.Position, inZone(e.RecordedAt, p.loc).Format(recordedLayout),
		inZone(e.OccurredAt, p.loc).Format(time.RFC3339), e.Type, e.Context(), e.AggregateID, orDash(e.CorrelationID), e.PolicyPosition)
	return err
}

// flushNow writes the table so far (tail prints as events arrive).
func (p *printer) flush() {
	if p.tw != nil {
		p.tw.Flush()
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// isTerminal reports whether w is a terminal (a character device), where a
// progress bar helps; anywhere else it is noise in a file.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/models"
)

// dayData is what the day page shows.
type dayData struct {
	Series  *Series
	Chart   *Chart
	Clock   Clock
	From    string
	To      string
	Step    string
	Rows    []dayRow
	Markers []markerRow
	Head    uint64
	Types   string // the event types the live list listens for
}

type dayRow struct {
	Start     string
	Checkouts []int // in Series.Channels order
	Refusals  int
	Refunds   int
}

type markerRow struct {
	ChartMarker
	Business, Recorded string
	AsOfBefore, AsOfAt string
}

// zoomSpan is how far either side of a marker its zoom reaches.
const zoomSpan = 2 * time.Minute

func (c *Console) dayPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	clock := Clock(q.Get("clock"))
	switch clock {
	case "":
		clock = Business
	case Business, Recorded:
	default:
		c.fail(w, r, http.StatusBadRequest, "clock", fmt.Sprintf("clock must be business or recorded, got %q", clock))
		return
	}
	if err := c.day.Refresh(r.Context()); err != nil {
		c.failErr(w, r, "", err)
		return
	}
	from, to, err := c.dayRange(clock, q.Get("from"), q.Get("to"))
	if err != nil {
		c.failErr(w, r, "", err)
		return
	}
	step, err := parseStep(q.Get("step"), to.Sub(from))
	if err != nil {
		c.failErr(w, r, "step", err)
		return
	}
	s, err := c.day.Bin(clock, from, to, step)
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, "from, to, step", err.Error())
		return
	}
	zone := c.cfg.Zone
	zoom := func(m Marker) string {
		at := m.At(clock).In(zone)
		return "/console/?" + url.Values{"clock": {string(clock)}, "from": {at.Add(-zoomSpan).Format(time.RFC3339)},
			"to": {at.Add(zoomSpan).Format(time.RFC3339)}, "step": {"second"}}.Encode()
	}
	d := dayData{Series: s, Chart: NewChart("day", s, zone, zoom), Clock: clock, From: from.In(zone).Format(time.RFC3339),
		To: to.In(zone).Format(time.RFC3339), Step: step.String()}
	for _, b := range s.Buckets {
		row := dayRow{Start: b.Start.In(zone).Format(time.RFC3339), Refunds: b.Refunds}
		for _, ch := range s.Channels {
			row.Checkouts = append(row.Checkouts, b.Checkouts[ch])
		}
		for _, n := range b.Refusals {
			row.Refusals += n
		}
		d.Rows = append(d.Rows, row)
	}
	for i, m := range s.Markers {
		d.Markers = append(d.Markers, markerRow{ChartMarker: d.Chart.Markers[i],
			Business: m.Business.In(zone).Format(time.RFC3339), Recorded: m.Recorded.In(zone).Format(time.RFC3339Nano),
			AsOfBefore: asOfLink(clock, m.At(clock).In(zone).Add(-time.Second)), AsOfAt: asOfLink(clock, m.At(clock).In(zone))})
	}
	d.Head, _ = c.cfg.Store.LastPosition(r.Context())
	d.Types = strings.Join(c.cfg.EventTypes, " ")
	c.render(w, r, http.StatusOK, "day", page{Title: "The day", Nav: "day", Data: d})
}

func asOfLink(clock Clock, t time.Time) string {
	return "/console/asof?" + url.Values{"clock": {string(clock)}, "as_of": {t.Format(time.RFC3339)}, "model": {models.ModelOrders}}.Encode()
}

// dayRange reads from and to, or spans every counted second on clock,
// widened to whole hours of the display zone.
func (c *Console) dayRange(clock Clock, fromS, toS string) (time.Time, time.Time, error) {
	first, last := c.day.Span(clock)
	if first.IsZero() {
		first, last = time.Now(), time.Now()
	}
	from := first.In(c.cfg.Zone).Truncate(time.Hour)
	to := last.In(c.cfg.Zone).Truncate(time.Hour).Add(time.Hour)
	if clock == Recorded && last.Sub(first) < time.Hour {
		from, to = first.Truncate(time.Minute), last.Truncate(time.Minute).Add(time.Minute)
	}
	var err error
	if fromS != "" {
		if from, err = parseInstant("from", fromS); err != nil {
			return from, to, err
		}
	}
	if toS != "" {
		if to, err = parseInstant("to", toS); err != nil {
			return from, to, err
		}
	}
	if !to.After(from) {
		return from, to, &events.Error{Kind: events.KindInvalid, Field: "to", Rule: fmt.Sprintf("must be after from (%s), got %s", from.Format(time.RFC3339), to.Format(time.RFC3339))}
	}
	return from, to, nil
}

// parseInstant reads an RFC 3339 instant that states its offset.
func parseInstant(param, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(v))
	if err != nil {
		return t, &events.Error{Kind: events.KindInvalid, Field: param,
			Rule: fmt.Sprintf("an instant is RFC 3339 with an offset, like 2023-10-04T17:00:00+07:00; got %q", v)}
	}
	return t, nil
}

// parseStep reads a bucket size: second, minute, hour or a Go duration
// ("5m"); without one, the smallest of a few that keeps the chart readable.
func parseStep(v string, span time.Duration) (time.Duration, error) {
	bad := func() error {
		return &events.Error{Kind: events.KindInvalid, Field: "step",
			Rule: fmt.Sprintf("step is second, minute, hour or a duration of whole seconds like 5m; got %q", v)}
	}
	switch v {
	case "":
		for _, st := range []time.Duration{time.Second, 10 * time.Second, time.Minute, 5 * time.Minute, time.Hour} {
			if span/st <= 1000 {
				return st, nil
			}
		}
		return 24 * time.Hour, nil
	case "second":
		return time.Second, nil
	case "minute":
		return time.Minute, nil
	case "hour":
		return time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second || d%time.Second != 0 {
		return 0, bad()
	}
	return d, nil
}

// policyData is the policy timeline page.
type policyData struct {
	Position uint64
	Table    models.Table
}

func (c *Console) policyPage(w http.ResponseWriter, r *http.Request) {
	head, err := c.cfg.Store.LastPosition(r.Context())
	if err != nil {
		c.failErr(w, r, "", err)
		return
	}
	st, err := c.modelsAsOf(r, projections.AtPosition(head), models.ModelPolicy)
	if err != nil {
		c.failErr(w, r, "", err)
		return
	}
	c.render(w, r, http.StatusOK, "policy", page{Title: "Policy timeline", Nav: "policy",
		Data: policyData{Position: st.Point.Position, Table: c.inZone(st.Models[0].Rows())}})
}

// modelsAsOf is the console's one read of models as of an instant: the
// projections' as-of query (snapshots plus the log's tail). When the API
// serves point-in-time reads of a model, switch this function to them.
func (c *Console) modelsAsOf(r *http.Request, at projections.AsOf, model string) (*projections.State, error) {
	return c.querier.State(r.Context(), at, model)
}

// asOfData is the as-of page.
type asOfData struct {
	AsOf, Clock, Model, Filter string
	Models                     []string
	Clocks                     []string
	Asked                      bool
	Position                   uint64
	RecordedAt                 string
	Columns                    []string
	Rows                       [][]string
	Matched, Total             int
}

// asOfRowsMax bounds the rows one page shows; a filter narrows them.
const asOfRowsMax = 200

func (c *Console) asOfPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := asOfData{AsOf: q.Get("as_of"), Clock: q.Get("clock"), Model: q.Get("model"), Filter: q.Get("q"),
		Models: models.ModelNames(), Clocks: []string{"business", "recorded", "position"}}
	if d.Clock == "" {
		d.Clock = "business"
	}
	if d.Model == "" {
		d.Model = models.ModelOrders
	}
	if _, err := models.NewModel(d.Model); err != nil {
		c.failErr(w, r, "model", err)
		return
	}
	if d.AsOf != "" {
		at, err := projections.ParseAsOf(d.Clock, d.AsOf)
		if err != nil {
			c.failErr(w, r, "as_of", err)
			return
		}
		st, err := c.modelsAsOf(r, at, d.Model)
		if err != nil {
			c.failErr(w, r, "as_of", err)
			return
		}
		t := c.inZone(st.Models[0].Rows())
		d.Asked, d.Position, d.RecordedAt, d.Columns, d.Total = true, st.Point.Position, st.Point.RecordedAt.In(c.cfg.Zone).Format(time.RFC3339Nano), t.Columns, len(t.Rows)
		for _, row := range t.Rows {
			if d.Filter != "" && !strings.Contains(strings.Join(row, "\x00"), d.Filter) {
				continue
			}
			d.Matched++
			if len(d.Rows) < asOfRowsMax {
				d.Rows = append(d.Rows, row)
			}
		}
	}
	c.render(w, r, http.StatusOK, "asof", page{Title: "As of", Nav: "asof", Data: d})
}

// inZone shows the instants of a model's table (the columns named *_at,
// RFC 3339 in UTC) in the display zone: the same instants as the CLI
// prints, read in the zone of the day.
func (c *Console) inZone(t models.Table) models.Table {
	for i, col := range t.Columns {
		if !strings.HasSuffix(col, "_at") {
			continue
		}
		for _, row := range t.Rows {
			if at, err := time.Parse(time.RFC3339Nano, row[i]); err == nil {
				row[i] = at.In(c.cfg.Zone).Format(time.RFC3339Nano)
			}
		}
	}
	return t
}

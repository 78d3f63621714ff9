package console

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Chart is a series drawn as an SVG line chart: one line per sales
// channel, one for refunds, and every policy marker as a vertical line.
// Every coordinate is computed here, so the template only places them and
// the page reads without scripts.
type Chart struct {
	ID            string
	Title, Desc   string
	Width, Height int
	Left, Top     int
	Right, Bottom int // coordinates of the plot area's far edges
	Lines         []Line
	XTicks        []Tick
	YTicks        []Tick
	Markers       []ChartMarker
	// InForce are the spans after an effective policy marker, shaded.
	InForce []Span
}

// Line is one series of a chart.
type Line struct {
	Name   string
	Class  string
	Points string // SVG polyline points
	Total  int
}

// Tick is a labelled axis position.
type Tick struct {
	Pos   float64
	Label string
}

// ChartMarker is a policy event on the time axis.
type ChartMarker struct {
	X         float64
	Label     string
	Time      string // RFC 3339 in the display zone
	Type      string
	RuleID    string
	Position  uint64
	Effective bool
	ZoomURL   string // "" when the chart is static
	// Anchor and DX put the label beside the line, on the side with room.
	Anchor string
	DX     int
}

// Span is a shaded stretch of the time axis.
type Span struct{ X, W float64 }

// chartSeries names the lines of a chart in a stable order: the channels,
// then refunds.
func chartLines(s *Series) []struct {
	name, class string
	value       func(*Counts) int
} {
	var out []struct {
		name, class string
		value       func(*Counts) int
	}
	for _, ch := range s.Channels {
		out = append(out, struct {
			name, class string
			value       func(*Counts) int
		}{"checkouts: " + ch, "line-" + cssName(ch), func(c *Counts) int { return c.Checkouts[ch] }})
	}
	out = append(out, struct {
		name, class string
		value       func(*Counts) int
	}{"refunds", "line-refunds", func(c *Counts) int { return c.Refunds }})
	return out
}

// NewChart lays out s. zone is the display zone; zoom, when not nil, gives
// the link of a marker's zoom.
func NewChart(id string, s *Series, zone *time.Location, zoom func(Marker) string) *Chart {
	c := &Chart{ID: id, Width: 960, Height: 320, Left: 56, Top: 24, Right: 940, Bottom: 280}
	span := s.To.Sub(s.From)
	x := func(t time.Time) float64 {
		return float64(c.Left) + float64(t.Sub(s.From))/float64(span)*float64(c.Right-c.Left)
	}
	lines := chartLines(s)
	top := 1
	for _, b := range s.Buckets {
		for _, l := range lines {
			top = max(top, l.value(&b.Counts))
		}
	}
	top = niceCeil(top)
	y := func(v int) float64 {
		return float64(c.Bottom) - float64(v)/float64(top)*float64(c.Bottom-c.Top)
	}
	for _, l := range lines {
		var pts strings.Builder
		total := 0
		for _, b := range s.Buckets {
			v := l.value(&b.Counts)
			total += v
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(b.Start.Add(s.Step/2)), y(v))
		}
		c.Lines = append(c.Lines, Line{Name: l.name, Class: l.class, Points: strings.TrimSpace(pts.String()), Total: total})
	}
	for i := 0; i <= 4; i++ {
		v := top * i / 4
		c.YTicks = append(c.YTicks, Tick{Pos: y(v), Label: strconv.Itoa(v)})
	}
	tickStep, layout := axisStep(span)
	for t := s.From.In(zone).Truncate(tickStep); !t.After(s.To); t = t.Add(tickStep) {
		if t.Before(s.From) {
			continue
		}
		c.XTicks = append(c.XTicks, Tick{Pos: x(t), Label: t.In(zone).Format(layout)})
	}
	for _, m := range s.Markers {
		at := m.At(s.Clock).In(zone)
		cm := ChartMarker{X: x(at), Time: at.Format(time.RFC3339), Type: m.Type, RuleID: m.RuleID, Position: m.Position,
			Effective: m.Effective(), Label: markerLabel(m, at), Anchor: "start", DX: 6}
		if cm.X > float64(c.Left+c.Right)/2 {
			cm.Anchor, cm.DX = "end", -8
		}
		if zoom != nil {
			cm.ZoomURL = zoom(m)
		}
		c.Markers = append(c.Markers, cm)
		if cm.Effective {
			c.InForce = append(c.InForce, Span{X: cm.X, W: float64(c.Right) - cm.X})
		}
	}
	unit := "minute"
	if s.Step < time.Minute {
		unit = "second"
	} else if s.Step > time.Minute {
		unit = s.Step.String()
	}
	c.Title = fmt.Sprintf("Checkouts per %s by channel, and refunds, on %s time", unit, s.Clock)
	c.Desc = describe(s, zone)
	return c
}

func markerLabel(m Marker, at time.Time) string {
	what := strings.TrimPrefix(m.Type, "policy.")
	if m.Effective() {
		what = "in force"
	}
	basis := ""
	if m.LegalBasis != "" {
		basis = " (" + m.LegalBasis + ")"
	}
	return fmt.Sprintf("%s %s: %s%s", at.Format("15:04:05 MST"), what, m.RuleID, basis)
}

// describe says in words what the chart shows, for screen readers and
// for anyone who cannot see the lines.
func describe(s *Series, zone *time.Location) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From %s to %s in buckets of %s.", s.From.In(zone).Format("2 Jan 2006 15:04:05 MST"), s.To.In(zone).Format("15:04:05 MST"), s.Step)
	for _, ch := range s.Channels {
		fmt.Fprintf(&b, " %s: %d checkouts.", ch, s.Total.Checkouts[ch])
	}
	fmt.Fprintf(&b, " Refunds: %d.", s.Total.Refunds)
	for _, m := range s.Markers {
		fmt.Fprintf(&b, " Policy event at %s: %s %s.", m.At(s.Clock).In(zone).Format("15:04:05 MST"), m.Type, m.RuleID)
	}
	return b.String()
}

// axisStep picks a tick interval that puts a handful of labels on span.
func axisStep(span time.Duration) (time.Duration, string) {
	for _, st := range []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour} {
		if span/st <= 16 {
			if st < time.Minute {
				return st, "15:04:05"
			}
			return st, "15:04"
		}
	}
	return 6 * time.Hour, "02 15:04"
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v int) int {
	p := 1
	for {
		for _, m := range []int{1, 2, 5} {
			if m*p >= v {
				return m * p
			}
		}
		p *= 10
	}
}

func cssName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}

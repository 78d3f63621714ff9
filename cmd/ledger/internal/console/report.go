package console

import (
	"bytes"
	"html/template"
	"io"
)

// Report is a self-contained HTML page: the day's chart as inline SVG and
// tables, with its style inline and no script, so that it reads from a
// file, offline, in any browser.
type Report struct {
	Title  string
	Lead   []string // paragraphs above the chart
	Chart  *Chart
	Tables []ReportTable
	Footer string
}

// ReportTable is one table of a report.
type ReportTable struct {
	ID      string
	Caption string
	Columns []string
	Rows    [][]string
}

var reportPage = template.Must(template.New("").Funcs(template.FuncMap{}).ParseFS(assets, "assets/report.html", "assets/chart.html"))

// WriteReport writes r as one HTML page.
func WriteReport(w io.Writer, r Report) error {
	css, err := assets.ReadFile("assets/static/chart.css")
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := reportPage.ExecuteTemplate(&buf, "report", struct {
		Report
		CSS template.CSS
	}{r, template.CSS(css)}); err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

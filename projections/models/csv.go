package models

import (
	"encoding/csv"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/marketledger/ledger/contracts"
)

// WriteCSV writes t as the CSV a person opens in a spreadsheet: every
// amount in minor units is followed by the same amount in major units with
// its currency (price_minor 1500000 IDR gives price "IDR 15000.00"), and a
// text cell a spreadsheet would run as a formula is neutralised. Bundles
// and `ledger replay --model` write their CSVs with it, and verification
// renders them again with it, so it must stay deterministic.
//
// Times (the cells of *_at columns) are written in zone loc with its offset
// (UTC when loc is nil), the zone the reader's jurisdiction keeps.
func WriteCSV(w io.Writer, t Table, loc *time.Location) error {
	cw, err := NewCSVWriter(w, t.Columns, loc)
	if err != nil {
		return err
	}
	if err := cw.Write(t.Rows); err != nil {
		return err
	}
	return cw.Flush()
}

// CSVWriter writes a table's CSV a few rows at a time, so that a bundle
// renders a model of any size in bounded memory: the bytes are exactly
// WriteCSV's for the whole table.
type CSVWriter struct {
	cw      *csv.Writer
	columns []string
	loc     *time.Location
	row     []string
}

// NewCSVWriter writes the header of a table with columns, its times in loc
// (nil: UTC), and returns the writer for its rows.
func NewCSVWriter(w io.Writer, columns []string, loc *time.Location) (*CSVWriter, error) {
	c := &CSVWriter{cw: csv.NewWriter(w), columns: columns, loc: loc}
	if err := c.cw.Write(withMajorUnits(Table{Columns: columns}).Columns); err != nil {
		return nil, err
	}
	return c, nil
}

// Write writes rows, the next rows of the table.
func (c *CSVWriter) Write(rows [][]string) error {
	t := withMajorUnits(InZone(Table{Columns: c.columns, Rows: rows}, c.loc))
	for _, r := range t.Rows {
		c.row = c.row[:0]
		for _, cell := range r {
			c.row = append(c.row, SafeCell(cell))
		}
		if err := c.cw.Write(c.row); err != nil {
			return err
		}
	}
	return nil
}

// Flush writes what is buffered.
func (c *CSVWriter) Flush() error {
	c.cw.Flush()
	return c.cw.Error()
}

// InZone returns t with the instants of its *_at columns in zone loc, RFC
// 3339 with the zone's offset; nil is UTC, the tables' own rendering. Other
// cells are left as they are.
func InZone(t Table, loc *time.Location) Table {
	if loc == nil || loc == time.UTC {
		return t
	}
	var times []int
	for i, c := range t.Columns {
		if strings.HasSuffix(c, "_at") {
			times = append(times, i)
		}
	}
	if len(times) == 0 {
		return t
	}
	out := Table{Columns: t.Columns, Rows: make([][]string, len(t.Rows))}
	for k, r := range t.Rows {
		row := slices.Clone(r)
		for _, i := range times {
			if i < len(row) {
				if at, err := time.Parse(time.RFC3339Nano, row[i]); err == nil {
					row[i] = at.In(loc).Format(time.RFC3339Nano)
				}
			}
		}
		out.Rows[k] = row
	}
	return out
}

// number is a cell a spreadsheet reads as a plain number: it runs nothing.
var number = regexp.MustCompile(`^[+-]?[0-9]+(\.[0-9]+)?$`)

// SafeCell returns c so that no spreadsheet runs it as a formula: a text
// cell starting with =, +, -, @, a tab or a carriage return (a seller's
// listing title, say, "=HYPERLINK(...)") is prefixed with an apostrophe,
// which spreadsheets read as "this is text" (the OWASP CSV injection
// advice). Plain numbers, negative ones included, are left as they are.
func SafeCell(c string) string {
	if c == "" || number.MatchString(c) {
		return c
	}
	switch c[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + c
	}
	return c
}

// withMajorUnits returns t with a column after every <name>_minor column
// when t has a currency column: <name>, the amount in major units with its
// currency code ("IDR 15000.00"); empty where the amount or the currency is
// not one (an unknown currency is never guessed).
func withMajorUnits(t Table) Table {
	cur := slices.Index(t.Columns, "currency")
	if cur < 0 {
		return t
	}
	var minor []int
	out := Table{Columns: make([]string, 0, len(t.Columns)+2)}
	for i, c := range t.Columns {
		out.Columns = append(out.Columns, c)
		if name, ok := strings.CutSuffix(c, "_minor"); ok {
			minor = append(minor, i)
			out.Columns = append(out.Columns, name)
		}
	}
	if len(minor) == 0 {
		return t
	}
	for _, r := range t.Rows {
		row := make([]string, 0, len(out.Columns))
		for i, c := range r {
			row = append(row, c)
			if slices.Contains(minor, i) {
				currency := ""
				if cur < len(r) {
					currency = r[cur]
				}
				row = append(row, MajorUnits(c, currency))
			}
		}
		out.Rows = append(out.Rows, row)
	}
	return out
}

// MajorUnits formats an amount in minor units of an ISO 4217 currency in
// major units after the currency code: MajorUnits("-1500050", "IDR") is
// "IDR -15000.50". It is exact (integer arithmetic, no floats) and returns
// "" for an amount that is not an integer or a currency it does not know.
func MajorUnits(minor, currency string) string {
	v, err := strconv.ParseInt(minor, 10, 64)
	exp, ok := contracts.CurrencyExponent(currency)
	if err != nil || !ok {
		return ""
	}
	sign, digits := "", strconv.FormatUint(uint64(v), 10)
	if v < 0 {
		sign, digits = "-", strconv.FormatUint(-uint64(v), 10) // exact for MinInt64 too
	}
	if exp == 0 {
		return currency + " " + sign + digits
	}
	if len(digits) <= exp {
		digits = strings.Repeat("0", exp-len(digits)+1) + digits
	}
	return currency + " " + sign + digits[:len(digits)-exp] + "." + digits[len(digits)-exp:]
}

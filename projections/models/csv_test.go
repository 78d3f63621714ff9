package models

import (
	"bytes"
	"testing"
	"time"
)

// A cell a spreadsheet would run as a formula is written as text; numbers,
// negative ones included, stay numbers; every minor-unit amount is
// followed by its major units and currency.
func TestWriteCSVIsSafeAndReadable(t *testing.T) {
	tab := Table{Columns: []string{"listing_id", "title", "price_minor", "currency", "note"},
		Rows: [][]string{
			{"l-1", "=HYPERLINK(\"http://x\",\"click\")", "1500050", "IDR", "+62 812"},
			{"l-2", "@SUM(A1:A9)", "-30000000", "IDR", "-2+3"},
			{"l-3", "\tcmd", "7", "JPY", "plain"},
			{"l-4", "-", "5", "KWD", "\rx"},
			{"l-5", "ok", "5", "XXZ", "1.5"},
		}}
	var b bytes.Buffer
	if err := WriteCSV(&b, tab, nil); err != nil {
		t.Fatal(err)
	}
	want := `listing_id,title,price_minor,price,currency,note
l-1,"'=HYPERLINK(""http://x"",""click"")",1500050,IDR 15000.50,IDR,'+62 812
l-2,'@SUM(A1:A9),-30000000,IDR -300000.00,IDR,'-2+3
l-3,'	cmd,7,JPY 7,JPY,plain
l-4,'-,5,KWD 0.005,KWD,"'` + "\r" + `x"
l-5,ok,5,,XXZ,1.5
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestMajorUnitsIsExact(t *testing.T) {
	for _, tc := range []struct{ minor, cur, want string }{
		{"0", "IDR", "IDR 0.00"},
		{"-1", "USD", "USD -0.01"},
		{"-9223372036854775808", "USD", "USD -92233720368547758.08"},
		{"9223372036854775807", "JPY", "JPY 9223372036854775807"},
		{"x", "USD", ""},
	} {
		if got := MajorUnits(tc.minor, tc.cur); got != tc.want {
			t.Errorf("MajorUnits(%s, %s) = %q, want %q", tc.minor, tc.cur, got, tc.want)
		}
	}
}

// Times are written in the zone asked for, with its offset; UTC is the
// tables' own rendering.
func TestWriteCSVTimesInTheZone(t *testing.T) {
	wib, err := time.LoadLocation("Asia/Jakarta")
	if err != nil {
		t.Fatal(err)
	}
	tab := Table{Columns: []string{"id", "placed_at", "note"}, Rows: [][]string{{"o-1", "2023-10-04T09:59:00Z", "2023-10-04T09:59:00Z"}, {"o-2", "", "x"}}}
	for _, tc := range []struct {
		loc  *time.Location
		want string
	}{
		{nil, "id,placed_at,note\no-1,2023-10-04T09:59:00Z,2023-10-04T09:59:00Z\no-2,,x\n"},
		{wib, "id,placed_at,note\no-1,2023-10-04T16:59:00+07:00,2023-10-04T09:59:00Z\no-2,,x\n"},
	} {
		var b bytes.Buffer
		if err := WriteCSV(&b, tab, tc.loc); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("in %v:\n%s\nwant\n%s", tc.loc, b.String(), tc.want)
		}
	}
}

package contracts

import (
	"testing"
	"time"
)

func TestInForceFrom(t *testing.T) {
	rec := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name            string
		effective, want time.Time
		recorded        time.Time
	}{
		{"scheduled ahead stands", rec.Add(time.Hour), rec.Add(time.Hour), rec},
		{"stated a moment before recording takes the recording", rec.Add(-2 * time.Millisecond), rec, rec},
		{"at the tolerance takes the recording", rec.Add(-EffectiveTolerance), rec, rec},
		{"an append slowed by an election takes the recording", rec.Add(-10 * time.Second), rec, rec},
		{"beyond the window stands", rec.Add(-2 * RecordingWindow), rec.Add(-2 * RecordingWindow), rec},
		{"simulated day far in the past stands", time.Date(2023, 10, 4, 17, 0, 0, 0, time.FixedZone("WIB", 7*3600)), time.Date(2023, 10, 4, 17, 0, 0, 0, time.FixedZone("WIB", 7*3600)), rec},
		{"unknown recording stands", rec, rec, time.Time{}},
	}
	for _, tt := range tests {
		if got := InForceFrom(tt.effective, tt.recorded); !got.Equal(tt.want) {
			t.Errorf("%s: InForceFrom = %v, want %v", tt.name, got, tt.want)
		}
	}
}

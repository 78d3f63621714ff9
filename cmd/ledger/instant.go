package main

import (
	"fmt"
	"time"
)

// parseInstant parses an RFC 3339 instant with offset; empty means now.
func parseInstant(s string) (time.Time, error) {
	if s == "" {
		return time.Now(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 instant with offset (for example 2023-10-04T17:00:00+07:00)", s)
	}
	return t, nil
}

package main

import (
	"os"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // zones load the same on every machine, with or without a system zoneinfo
)

// jurisdictionZones is the zone each jurisdiction's regulator keeps its
// clock in, for --tz given as an ISO 3166-1 code. A jurisdiction spanning
// several zones is read in its capital's.
var jurisdictionZones = map[string]string{
	"ID": "Asia/Jakarta", "SG": "Asia/Singapore", "MY": "Asia/Kuala_Lumpur", "TH": "Asia/Bangkok",
	"VN": "Asia/Ho_Chi_Minh", "PH": "Asia/Manila", "JP": "Asia/Tokyo", "KR": "Asia/Seoul", "CN": "Asia/Shanghai",
	"IN": "Asia/Kolkata", "AU": "Australia/Sydney", "GB": "Europe/London", "DE": "Europe/Berlin", "FR": "Europe/Paris",
	"NL": "Europe/Amsterdam", "US": "America/New_York", "BR": "America/Sao_Paulo",
}

// defaultTZ is the zone times are printed in without --tz or LEDGER_TZ:
// Indonesia's (WIB, +07:00), the jurisdiction of the demo's day.
const defaultTZ = "ID"

// tzUsage documents --tz.
const tzUsage = "zone every command prints times in, with its offset: a jurisdiction (ID, SG, ...) or an IANA zone (Asia/Jakarta, UTC); default $LEDGER_TZ, else " + defaultTZ + " (Asia/Jakarta, WIB)"

// parseZone reads --tz: a jurisdiction code or an IANA zone name.
func parseZone(s string) (*time.Location, error) {
	if s == "" {
		s = os.Getenv("LEDGER_TZ")
	}
	if s == "" {
		s = defaultTZ
	}
	name := s
	if z, ok := jurisdictionZones[strings.ToUpper(s)]; ok && len(s) == 2 {
		name = z
	}
	loc, err := time.LoadLocation(name)
	if err != nil || name == "Local" {
		return nil, usagef("--tz %q: want a jurisdiction (%s) or an IANA zone such as Asia/Jakarta or UTC", s, strings.Join(sortedZoneCodes(), ", "))
	}
	return loc, nil
}

// zone is the zone this command line prints times in.
func (g *globals) zone() *time.Location {
	if g.loc != nil {
		return g.loc
	}
	return defaultZone()
}

// defaultZone is the zone without --tz (LEDGER_TZ, else defaultTZ), for
// code that runs outside a command line (the demo's examination).
func defaultZone() *time.Location {
	loc, err := parseZone("")
	if err != nil {
		loc, _ = time.LoadLocation(jurisdictionZones[defaultTZ])
	}
	return loc
}

func sortedZoneCodes() []string {
	out := make([]string, 0, len(jurisdictionZones))
	for c := range jurisdictionZones {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

package checkout

import (
	"slices"
	"strings"
	"testing"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// TestSubjectsSelectTheStepEvents: the manager's subscription filter lets
// through every event type it acts on and no other, so that a step is never
// filtered away on the server and nothing else is sent to it.
func TestSubjectsSelectTheStepEvents(t *testing.T) {
	for _, typ := range contracts.EventTypes() {
		e := events.Event{Type: typ, AggregateID: "o1"}
		_, acts := stepEvents[typ]
		if got := matchesAny(Subjects(), e.Subject()); got != acts {
			t.Errorf("%s (subject %s): passes the filter %t, acted on %t", typ, e.Subject(), got, acts)
		}
	}
	for typ := range stepEvents {
		if !slices.Contains(contracts.EventTypes(), typ) {
			t.Errorf("the manager acts on %s, which is not a contract event type", typ)
		}
	}
}

// matchesAny matches a subject against NATS patterns whose wildcard is a
// whole '*' token, as Subjects writes them.
func matchesAny(patterns []string, subject string) bool {
	for _, p := range patterns {
		pt, st := strings.Split(p, "."), strings.Split(subject, ".")
		if len(pt) != len(st) {
			continue
		}
		ok := true
		for i := range pt {
			ok = ok && (pt[i] == "*" || pt[i] == st[i])
		}
		if ok {
			return true
		}
	}
	return false
}

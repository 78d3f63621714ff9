package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
)

// TestRefusersRecordRefusals: the services that refuse commands by a
// policy rule (listing, order, payment) each append a refusal record to
// the enforcement context; the policy service and the investigator may
// not.
func TestRefusersRecordRefusals(t *testing.T) {
	c := start(t)
	for _, role := range []string{auth.RoleListing, auth.RoleOrder, auth.RolePayment} {
		nc, _ := c.connect(role)
		id := "rf-" + role
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := store(t, nc).Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "enforcement", ID: id},
			Events: []events.Event{ev(id, "enforcement.command_refused")}}); err != nil {
			t.Errorf("%s records a refusal: %v", role, err)
		}
		cancel()
	}
	for _, role := range []string{auth.RolePolicy, auth.RoleInvestigator} {
		nc, v := c.connect(role)
		st := deniedStore(t, nc)
		actx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := st.Append(actx, events.Decision{Aggregate: events.AggregateRef{Context: "enforcement", ID: "rf-x"},
			Events: []events.Event{ev("rf-x", "enforcement.command_refused")}})
		cancel()
		if err == nil {
			t.Errorf("%s recorded a refusal", role)
		}
		v.wait(t, "ledger.enforcement.rf-x")
	}
}

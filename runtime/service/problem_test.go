package service_test

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/service"
)

// A client tells refusals apart by the problem's type and reason alone, and
// gets back the same kind and reason the service's error had.
func TestProblemStatusAndReasonRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		reason events.Reason
	}{
		{&events.Error{Op: "contracts.PlaceOrder", Kind: events.KindInvalid, Reason: events.ReasonMalformed, Field: "/quantity", Rule: "integer"}, 400, events.ReasonMalformed},
		{&events.Error{Op: "order.place", Kind: events.KindInvalid, Field: "/listing_id", Rule: "listing is delisted"}, 422, ""},
		{&events.Error{Kind: events.KindPermission, Field: "/issuer", Rule: "issuer lacks the role"}, 403, ""},
		{&events.Error{Kind: events.KindNotFound, Field: "/order_id"}, 404, ""},
		{&events.Error{Kind: events.KindConflict, Reason: events.ReasonNoStock, Field: "/quantity", Rule: "only 2 units available"}, 409, events.ReasonNoStock},
		{fmt.Errorf("reserve: %w", &events.Error{Kind: events.KindConflict, Reason: events.ReasonContention}), 409, events.ReasonContention},
		{&events.Error{Kind: events.KindConflict, Reason: events.ReasonPolicyMoved, Field: "policy_position"}, 409, events.ReasonPolicyMoved},
		{&events.Error{Kind: events.KindDuplicate}, 409, ""},
		{&events.Error{Kind: events.KindFrozen, Rule: "social commerce is frozen"}, 423, ""},
		{&events.Error{Kind: events.KindUnavailable}, 503, ""},
		{errors.New("boom"), 500, ""},
	} {
		p := service.ProblemOf(tc.err)
		if p.Status != tc.status || p.Reason != string(tc.reason) {
			t.Errorf("%v: status %d reason %q, want %d %q", tc.err, p.Status, p.Reason, tc.status, tc.reason)
		}
		back := p.Err("client")
		if events.KindOf(back) != events.KindOf(tc.err) || events.ReasonOf(back) != tc.reason {
			t.Errorf("%v: came back as %v (kind %v reason %q)", tc.err, back, events.KindOf(back), events.ReasonOf(back))
		}
		rec := httptest.NewRecorder()
		p.Write(rec)
		if rec.Code != tc.status || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%v: written as %d %q", tc.err, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
}

// Matching by reason is what IsPolicyConflict and errors.Is do; the Field
// and Rule are for people and may change.
func TestReasonsAreMatchedNotStrings(t *testing.T) {
	moved := &events.Error{Kind: events.KindConflict, Reason: events.ReasonPolicyMoved, Field: "anything"}
	if !events.IsPolicyConflict(fmt.Errorf("wrapped: %w", moved)) {
		t.Error("a policy_moved conflict is not a policy conflict")
	}
	if events.IsPolicyConflict(&events.Error{Kind: events.KindConflict, Field: "policy_position"}) {
		t.Error("a conflict without the reason is a policy conflict")
	}
	if !errors.Is(moved, &events.Error{Kind: events.KindConflict, Reason: events.ReasonPolicyMoved}) ||
		errors.Is(moved, &events.Error{Kind: events.KindConflict, Reason: events.ReasonContention}) {
		t.Error("errors.Is does not match on the reason")
	}
}

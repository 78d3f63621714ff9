package checkout

import (
	"testing"

	"pgregory.net/rapid"
)

func placedOrder() Order {
	return Order{ID: "o1", Status: StatusPlaced, ListingID: "l1", Quantity: 1}
}

// TestNextGivenWhenThen: given the order and payment as the log has them
// and the outcomes so far, then the next step.
func TestNextGivenWhenThen(t *testing.T) {
	pid := "pay-o1"
	cases := []struct {
		name  string
		s     State
		steps []Step
		want  Kind
	}{
		{"placed: reserve", State{Order: placedOrder(), Trigger: "order.placed"}, nil, Reserve},
		{"reserved: authorize", State{Order: placedOrder(), Trigger: "order.placed"}, []Step{{Kind: Reserve}}, Authorize},
		{"authorized: confirm", State{Order: placedOrder(), Trigger: "order.placed"}, []Step{{Kind: Reserve}, {Kind: Authorize, PaymentID: pid}}, Confirm},
		{"confirmed: capture", State{Order: Order{ID: "o1", Status: StatusConfirmed, PaymentID: pid},
			Payments: []Payment{{ID: pid, Status: "authorized"}}, Trigger: "order.placed"}, nil, Capture},
		{"rejected: void first", State{Order: Order{ID: "o1", Status: StatusRejected}, Payments: []Payment{{ID: pid}}, Trigger: "order.rejected"}, nil, Void},
		{"cancelled and captured: refund", State{Order: Order{ID: "o1", Status: StatusCancelled, PaymentID: pid},
			Payments: []Payment{{ID: pid, Status: "captured", CapturedMinor: 5}}, Trigger: "order.cancelled"}, nil, Refund},
		{"cancelled, closed: release", State{Order: Order{ID: "o1", Status: StatusCancelled},
			Payments: []Payment{{ID: pid, Status: "voided"}}, Trigger: "order.cancelled"}, nil, Release},
		{"live order, late reservation: nothing", State{Order: placedOrder(), Trigger: "listing.stock_reserved"}, nil, ""},
	}
	for _, c := range cases {
		s := c.s
		for _, st := range c.steps {
			s = s.After(st, Outcome{})
		}
		got, ok := Next(s)
		if c.want == "" {
			if ok {
				t.Errorf("%s: got %v, want nothing", c.name, got)
			}
			continue
		}
		if !ok || got.Kind != c.want {
			t.Errorf("%s: got %v (%t), want %s", c.name, got.Kind, ok, c.want)
		}
	}
	refused := State{Order: placedOrder(), Trigger: "order.placed"}.After(Step{Kind: Reserve}, Outcome{Refused: "no stock"})
	if got, _ := Next(refused); got.Kind != Reject {
		t.Errorf("refused reservation: got %s, want reject", got.Kind)
	}
}

// TestEndedOrdersAreCompensated: whatever the payments of an order that
// ended rejected or cancelled, running Next to its end (the steps
// succeeding as the payment service would) leaves every payment voided or
// refunded and the stock released, in a bounded number of steps.
func TestEndedOrdersAreCompensated(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		status := rapid.SampledFrom([]Status{StatusRejected, StatusCancelled}).Draw(t, "status")
		n := rapid.IntRange(1, 2).Draw(t, "payments")
		s := State{Order: Order{ID: "o1", Status: status}, Trigger: "order." + string(status)}
		for i := range n {
			p := Payment{ID: []string{"pay-o1", "other"}[i], Status: rapid.SampledFrom([]string{"", "authorized", "captured", "voided", "cancelled"}).Draw(t, "st")}
			if p.Status == "captured" {
				p.CapturedMinor = rapid.Int64Range(1, 1000).Draw(t, "captured")
			}
			s.Payments = append(s.Payments, p)
		}
		released := false
		for range stepsMax {
			st, ok := Next(s)
			if !ok {
				break
			}
			for i, p := range s.Payments {
				if p.ID != st.PaymentID {
					continue
				}
				switch st.Kind {
				case Void:
					s.Payments[i].Status = "cancelled"
					if p.Status == "authorized" {
						s.Payments[i].Status = "voided"
					}
				case Refund:
					s.Payments[i].RefundedMinor = p.CapturedMinor
				}
			}
			released = released || st.Kind == Release
			s = s.After(st, Outcome{})
		}
		if _, more := Next(s); more {
			t.Fatalf("compensation of %+v did not end", s)
		}
		for _, p := range s.Payments {
			if p.Open() || p.RefundableMinor() > 0 {
				t.Fatalf("payment %+v left open after compensation", p)
			}
		}
		if !released {
			t.Fatal("stock not released")
		}
	})
}

// TestAlongsideSendsTheAuthorizationWithTheReservation: a placed order's
// reservation goes with its authorization; whichever of the two is refused
// ends the order, and the ended order's compensation gives back what the
// other one took.
func TestAlongsideSendsTheAuthorizationWithTheReservation(t *testing.T) {
	pid := "pay-o1"
	s := State{Order: placedOrder(), Trigger: "order.placed"}
	st, _ := Next(s)
	with, ok := Alongside(s, st)
	if st.Kind != Reserve || !ok || with.Kind != Authorize || with.PaymentID != pid || !with.Deadline {
		t.Fatalf("placed order: %v with %v (%t), want a reservation with the authorization of %s", st, with, ok, pid)
	}
	if _, ok := Alongside(s.After(st, Outcome{}), with); ok {
		t.Error("a step alongside the authorization")
	}
	confirmedTo := s.After(st, Outcome{}).After(with, Outcome{})
	if next, _ := Next(confirmedTo); next.Kind != Confirm {
		t.Errorf("both done: %s, want confirm", next.Kind)
	}
	if _, ok := Alongside(confirmedTo, Step{Kind: Confirm, PaymentID: pid}); ok {
		t.Error("a step alongside the confirmation")
	}
	noStock := s.After(st, Outcome{Refused: "no stock"}).After(with, Outcome{})
	if next, _ := Next(noStock); next.Kind != Reject {
		t.Errorf("reservation refused, authorization made: %s, want reject", next.Kind)
	}
	rejected := State{Order: Order{ID: "o1", Status: StatusRejected}, Payments: []Payment{{ID: pid, Status: "authorized"}}, Trigger: "order.rejected"}
	if next, _ := Next(rejected); next.Kind != Void || next.PaymentID != pid {
		t.Errorf("rejected with an authorization: %v, want its void", next)
	}
	declined := s.After(st, Outcome{}).After(with, Outcome{Refused: "declined"})
	if next, _ := Next(declined); next.Kind != Cancel {
		t.Errorf("reservation made, authorization refused: %s, want cancel", next.Kind)
	}
}

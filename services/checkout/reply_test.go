package checkout

import (
	"encoding/json"
	"testing"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/service"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

func problemReply(t *testing.T, err error) *nats.Msg {
	t.Helper()
	p := service.ProblemOf(err)
	body, _ := json.Marshal(p)
	m := nats.NewMsg("reply")
	m.Data = body
	m.Header.Set(micro.ErrorCodeHeader, "409")
	m.Header.Set(micro.ErrorHeader, p.Title)
	return m
}

// A step that lost to other writers of its aggregate is sent again, not
// taken as the checkout's outcome; a refusal for want of stock is the
// outcome, and keeps its kind and reason.
func TestContentionIsRetriedNoStockIsAnOutcome(t *testing.T) {
	for _, r := range []events.Reason{events.ReasonContention, events.ReasonStaleVersion, events.ReasonPolicyMoved} {
		done, err := decodeReply(problemReply(t, &events.Error{Kind: events.KindConflict, Reason: r}), nil)
		if done || err != nil {
			t.Errorf("%s: done %t, %v; want the step sent again", r, done, err)
		}
	}
	done, err := decodeReply(problemReply(t, &events.Error{Kind: events.KindConflict, Reason: events.ReasonNoStock,
		Field: "/quantity", Rule: "only 0 units available"}), nil)
	if !done || events.KindOf(err) != events.KindConflict || events.ReasonOf(err) != events.ReasonNoStock {
		t.Errorf("no stock: done %t, %v (kind %v, reason %q); want a refusal with its reason", done, err, events.KindOf(err), events.ReasonOf(err))
	}
	if _, err := decodeReply(problemReply(t, &events.Error{Kind: events.KindDuplicate}), nil); !permanent(err) {
		t.Errorf("a taken key is not permanent: %v", err)
	}
}

package contracts_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/marketledger/ledger/contracts"
)

// Every command names its aggregate and its idempotency key through its
// spec, so that no service needs a switch over command types to find them.
func TestEveryCommandHasItsTarget(t *testing.T) {
	for _, spec := range contracts.Commands {
		ptr := reflect.New(spec.GoType)
		body, _ := json.Marshal(map[string]string{spec.Aggregate: "agg-1", "idempotency_key": "key-1"})
		if err := json.Unmarshal(body, ptr.Interface()); err != nil {
			t.Fatalf("%s: %v", spec.Name, err)
		}
		tg, ok := contracts.TargetOf(ptr.Elem().Interface())
		if !ok || tg.Spec.Name != spec.Name || tg.AggregateID != "agg-1" || tg.IdempotencyKey != "key-1" {
			t.Errorf("%s: target %+v, %t; want aggregate agg-1 and key key-1", spec.Name, tg, ok)
		}
	}
	if _, ok := contracts.TargetOf(struct{}{}); ok {
		t.Error("an unregistered type has a target")
	}
	for name, fenced := range map[string]bool{"order.place": true, "payment.capture": true, "payment.refund": false, "order.cancel": false, "listing.reserve_stock": false} {
		if spec, _ := contracts.LookupCommand(name); spec.Fenced != fenced {
			t.Errorf("%s fenced = %t, want %t", name, spec.Fenced, fenced)
		}
	}
}

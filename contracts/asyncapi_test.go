package contracts

import (
	"bytes"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/marketledger/ledger/events"
	"gopkg.in/yaml.v3"
)

// TestAsyncAPIFresh keeps asyncapi.yaml equal to what the registry
// generates; -update rewrites it.
func TestAsyncAPIFresh(t *testing.T) {
	want, err := AsyncAPI()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		writeFile(t, AsyncAPIPath, want)
	}
	got, err := os.ReadFile(AsyncAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run go generate (go test -run TestAsyncAPIFresh -update)", AsyncAPIPath)
	}
}

// TestAsyncAPIStructure parses the committed document and checks the
// AsyncAPI 3.0 rules the ledger relies on: the version, info, every $ref
// resolving (inside the document or to an existing file), every registered
// event having a message and a channel whose address is its subject with
// declared parameters, operations that send or receive on an existing
// channel with messages of that channel, and headers covering every
// CloudEvents attribute the log writes.
func TestAsyncAPIStructure(t *testing.T) {
	raw, err := os.ReadFile(AsyncAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s does not parse: %v", AsyncAPIPath, err)
	}
	if got := doc["asyncapi"]; got != "3.0.0" {
		t.Errorf("asyncapi = %v, want 3.0.0", got)
	}
	info, _ := doc["info"].(map[string]any)
	if info["title"] == nil || info["version"] == nil {
		t.Errorf("info needs title and version, got %v", info)
	}
	checkRefs(t, doc, doc, "")
	channels := mapAt(t, doc, "channels")
	messages := mapAt(t, mapAt(t, doc, "components"), "messages")
	idRe := regexp.MustCompile(`^[\w\d\.\-_]+$`)
	for _, s := range Events {
		id := messageID(s)
		if _, ok := messages[id]; !ok {
			t.Errorf("%s v%d has no message %s", s.Type, s.Version, id)
		}
		ch, ok := channels[s.Type].(map[string]any)
		if !ok {
			t.Errorf("%s has no channel", s.Type)
			continue
		}
		if got, want := ch["address"], "ledger."+s.Context+".{aggregate_id}."+s.Name(); got != want {
			t.Errorf("%s address = %v, want %s", s.Type, got, want)
		}
	}
	for id, c := range channels {
		if !idRe.MatchString(id) {
			t.Errorf("channel id %q breaks the component key pattern", id)
		}
		ch := c.(map[string]any)
		params, _ := ch["parameters"].(map[string]any)
		for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(ch["address"].(string), -1) {
			if _, ok := params[m[1]]; !ok {
				t.Errorf("channel %s: address parameter %s is not declared", id, m[1])
			}
		}
	}
	checkOperations(t, doc, channels)
	checkHeaders(t, doc)
}

func checkOperations(t *testing.T, doc, channels map[string]any) {
	senders := map[string]int{}
	for id, o := range mapAt(t, doc, "operations") {
		op := o.(map[string]any)
		action := op["action"]
		if action != "send" && action != "receive" {
			t.Errorf("operation %s: action %v, want send or receive", id, action)
		}
		chRef := op["channel"].(map[string]any)["$ref"].(string)
		chID := strings.TrimPrefix(chRef, "#/channels/")
		if action == "send" {
			senders[chID]++
		}
		for _, m := range op["messages"].([]any) {
			ref := m.(map[string]any)["$ref"].(string)
			if !strings.HasPrefix(ref, chRef+"/messages/") {
				t.Errorf("operation %s: message %s is not one of its channel's", id, ref)
			}
		}
		if op["x-service"] == nil {
			t.Errorf("operation %s names no service", id)
		}
	}
	for id := range channels {
		if senders[id] != 1 {
			t.Errorf("channel %s has %d publishers, want exactly 1", id, senders[id])
		}
	}
}

func checkHeaders(t *testing.T, doc map[string]any) {
	h := mapAt(t, mapAt(t, mapAt(t, doc, "components"), "schemas"), "CloudEventsHeaders")
	props := mapAt(t, h, "properties")
	var got []string
	for k := range props {
		got = append(got, k)
	}
	sort.Strings(got)
	want := []string{events.HeaderAggregateVersion, events.HeaderCausationID, events.HeaderCorrelationID,
		events.HeaderDataSchema, events.HeaderHash, events.HeaderID, events.HeaderPolicyPosition, events.HeaderPrevHash, events.HeaderPrevPosition,
		events.HeaderSource, events.HeaderSpecVersion, events.HeaderSubject, events.HeaderTime, events.HeaderType,
		events.HeaderContentType}
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("header properties = %v, want %v", got, want)
	}
}

func mapAt(t *testing.T, m map[string]any, k string) map[string]any {
	t.Helper()
	v, ok := m[k].(map[string]any)
	if !ok {
		t.Fatalf("%s is not an object", k)
	}
	return v
}

// checkRefs resolves every $ref: "#/..." as a JSON pointer into the
// document, anything else as a file relative to the document.
func checkRefs(t *testing.T, root, node any, at string) {
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			if k == "$ref" {
				ref, _ := v.(string)
				if !refResolves(root, ref) {
					t.Errorf("%s: $ref %q does not resolve", at, ref)
				}
				continue
			}
			checkRefs(t, root, v, at+"/"+k)
		}
	case []any:
		for i, v := range n {
			checkRefs(t, root, v, at+"/"+strconv.Itoa(i))
		}
	}
}

func refResolves(root any, ref string) bool {
	ptr, internal := strings.CutPrefix(ref, "#/")
	if !internal {
		_, err := os.Stat(strings.SplitN(ref, "#", 2)[0])
		return err == nil
	}
	cur := root
	for _, tok := range strings.Split(ptr, "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[tok]; !ok {
			return false
		}
	}
	return true
}

// TestRefResolves checks the $ref check itself, so a green structure test
// means something.
func TestRefResolves(t *testing.T) {
	root := map[string]any{"components": map[string]any{"messages": map[string]any{"a/b": map[string]any{}}}}
	tests := []struct {
		ref  string
		want bool
	}{
		{"#/components/messages/a~1b", true},
		{"#/components/messages/missing", false},
		{"#/components/messages/a~1b/deeper", false},
		{EventSchemaPath("order.placed", 2), true},
		{"schemas/events/order.placed.v9.json", false},
	}
	for _, tt := range tests {
		if got := refResolves(root, tt.ref); got != tt.want {
			t.Errorf("refResolves(%q) = %v, want %v", tt.ref, got, tt.want)
		}
	}
}

// TestAsyncAPIIsWhatGeneratorsNeed: amounts in the examples are integers
// (minor units, never 1.5e+07), the store's control records are declared
// as channels of their own, and the server names its security scheme.
func TestAsyncAPIIsWhatGeneratorsNeed(t *testing.T) {
	raw, err := os.ReadFile(AsyncAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(`\d[eE][+-]\d`).Match(raw) {
		t.Errorf("%s writes a number in exponent form", AsyncAPIPath)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	channels := mapAt(t, doc, "channels")
	for _, id := range []string{"control.idempotency", "control.fence", "control.policy_fence"} {
		if _, ok := channels[id]; !ok {
			t.Errorf("control record %s has no channel", id)
		}
	}
	embedded := mapAt(t, mapAt(t, doc, "servers"), "embedded")
	sec, _ := embedded["security"].([]any)
	if len(sec) != 1 || mapAt(t, mapAt(t, doc, "components"), "securitySchemes")["nkey"] == nil {
		t.Errorf("server security %v: want the nkey scheme", sec)
	}
	var amounts []int
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "amount_minor" {
					n, ok := e.(int)
					if !ok {
						t.Errorf("amount_minor %v (%T) is not an integer", e, e)
					}
					amounts = append(amounts, n)
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(mapAt(t, mapAt(t, doc, "components"), "messages"))
	if len(amounts) == 0 {
		t.Error("no amount in the examples")
	}
}

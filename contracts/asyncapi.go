package contracts

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/marketledger/ledger/events"
	"gopkg.in/yaml.v3"
)

// AsyncAPIPath is where the generated AsyncAPI document lives, relative to
// the module root. Its payload $refs are relative to it.
const AsyncAPIPath = "asyncapi.yaml"

// ContractVersion is the version of the contract as a whole, shown in the
// AsyncAPI document: the number of event versions and commands registered.
// It changes whenever the registry does, never by hand.
func ContractVersion() string {
	return "1." + strconv.Itoa(len(Events)) + "." + strconv.Itoa(len(Commands))
}

// schemaFormat says the payloads are JSON Schema 2020-12, not AsyncAPI's
// default (a draft-07 superset), so tools do not misread them.
const schemaFormat = "application/schema+json;version=draft-2020-12"

// AsyncAPI returns the AsyncAPI 3.0 document of the LEDGER stream, generated
// from the registry: one channel per event type (subject
// ledger.<context>.{aggregate_id}.<name>), one message per version whose
// payload is the version's schema file and whose headers are the CloudEvents
// binary-mode attributes, a send operation for the publisher and a receive
// operation for each subscriber.
func AsyncAPI() ([]byte, error) {
	channels, operations, messages := obj{}, obj{}, obj{}
	byType := map[string][]EventSpec{}
	for _, s := range Events {
		byType[s.Type] = append(byType[s.Type], s)
	}
	for _, typ := range EventTypes() {
		specs := byType[typ]
		cur := specs[len(specs)-1]
		chMsgs := obj{}
		var all []any
		for _, s := range specs {
			id := messageID(s)
			messages[id] = message(s)
			chMsgs[id] = obj{"$ref": "#/components/messages/" + id}
			all = append(all, obj{"$ref": "#/channels/" + typ + "/messages/" + id})
		}
		channels[typ] = obj{
			"address":     events.SubjectPrefix + cur.Context + ".{aggregate_id}." + cur.Name(),
			"title":       typ,
			"description": cur.Description,
			"messages":    chMsgs,
			"parameters": obj{"aggregate_id": obj{
				"description": aggregateDoc(cur)}},
		}
		operations[typ+".send"] = obj{
			"action":               "send",
			"channel":              obj{"$ref": "#/channels/" + typ},
			"title":                cur.Publisher + " publishes " + typ,
			"summary":              "Only the " + cur.Publisher + " service appends " + typ + "; it writes the current version (v" + strconv.Itoa(cur.Version) + ") only.",
			"messages":             []any{obj{"$ref": "#/channels/" + typ + "/messages/" + messageID(cur)}},
			"x-service":            cur.Publisher,
			"x-cloudevents-source": Source(cur.Publisher),
		}
		for _, sub := range cur.Subscribers {
			operations[typ+".receive."+sub] = obj{
				"action":    "receive",
				"channel":   obj{"$ref": "#/channels/" + typ},
				"title":     sub + " may subscribe to " + typ,
				"summary":   "History holds every version; read them through contracts.Decode, which upcasts to the current one.",
				"messages":  all,
				"x-service": sub,
			}
		}
	}
	doc := obj{
		"asyncapi": "3.0.0",
		"info": obj{
			"title":   "Marketplace ledger: the LEDGER stream",
			"version": ContractVersion(),
			"description": "Every fact of the marketplace ledger is one message on the JetStream stream LEDGER, " +
				"in CloudEvents 1.0 binary mode over NATS headers with a JSON body. The stream sequence is the global position. " +
				"Generated from the contracts registry; do not edit.",
		},
		"defaultContentType": events.ContentTypeJSON,
		"servers": obj{"embedded": obj{
			"host":        "127.0.0.1:4222",
			"protocol":    "nats",
			"description": "The in-process nats-server that `ledger serve` starts by default; a NATS cluster URL replaces it in production.",
			"security":    []any{obj{"$ref": "#/components/securitySchemes/nkey"}},
		}},
		"channels":   channels,
		"operations": operations,
		"components": obj{
			"messages": messages,
			"schemas":  obj{"CloudEventsHeaders": cloudEventsHeaders()},
			"securitySchemes": obj{"nkey": obj{
				"type": "asymmetricEncryption",
				"description": "A NATS user with a standard .creds file: its user JWT, signed by the ledger's account and carrying its permissions, " +
					"and its NKey (Ed25519) seed, with which the client signs the server's nonce (operator mode, docs/adr/0022-operator-mode.md). " +
					"Every service has a user of its own whose permissions allow exactly its subjects (docs/operations.md, \"NATS users\"; " +
					"`ledger credentials` makes them).",
			}},
		},
	}
	addControlRecords(channels, operations, messages)
	return marshalYAML(doc)
}

func messageID(s EventSpec) string { return s.Type + ".v" + strconv.Itoa(s.Version) }

func aggregateDoc(s EventSpec) string {
	if s.AggregateField != "" {
		return "the aggregate id, equal to the body's " + s.AggregateField
	}
	return "the aggregate id of the notary's log, always \"" + NotaryAggregateID + "\""
}

func message(s EventSpec) obj {
	m := obj{
		"name":        s.Type,
		"title":       s.Type + " v" + strconv.Itoa(s.Version),
		"summary":     s.Description,
		"contentType": events.ContentTypeJSON,
		"headers":     obj{"$ref": "#/components/schemas/CloudEventsHeaders"},
		"payload": obj{
			"schemaFormat": schemaFormat,
			"schema":       obj{"$ref": EventSchemaPath(s.Type, s.Version)},
		},
		"correlationId": obj{
			"description": "every event of one business flow shares it",
			"location":    "$message.header#/" + events.HeaderCorrelationID,
		},
		"x-schema-version": s.Version,
		"x-dataschema":     events.SchemaURN(s.Type, s.Version),
	}
	if ex, ok := eventExamples[eventKey{s.Type, s.Version}]; ok {
		var payload any
		b, _ := json.Marshal(ex)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber() // minor units stay integers, never 1.5e+07
		_ = dec.Decode(&payload)
		payload = integers(payload)
		m["examples"] = []any{obj{"name": strings.ReplaceAll(s.Type, ".", "_"), "payload": payload}}
	}
	return m
}

// cloudEventsHeaders is the header schema of every message: the CloudEvents
// binary-mode attributes and the ledger's extensions, as events.Encode
// writes them.
func cloudEventsHeaders() obj {
	str := func(d string) obj { return obj{"type": "string", "description": d} }
	uintStr := func(d string) obj { return obj{"type": "string", "pattern": `^(0|[1-9][0-9]*)$`, "description": d} }
	hex := func(d string) obj { return obj{"type": "string", "pattern": Hex64Pattern, "description": d} }
	props := obj{
		events.HeaderSpecVersion:      obj{"type": "string", "const": events.SpecVersion, "description": "CloudEvents version"},
		events.HeaderID:               obj{"type": "string", "format": "uuid", "description": "event id, a UUIDv7; also Nats-Msg-Id"},
		events.HeaderType:             str("event type, <context>.<name>"),
		events.HeaderSource:           str("producing service, /ledger/<service>"),
		events.HeaderSubject:          obj{"type": "string", "pattern": IDPattern, "description": "aggregate id"},
		events.HeaderTime:             obj{"type": "string", "format": "date-time", "description": "business time of the fact, RFC 3339 with offset"},
		events.HeaderDataSchema:       obj{"type": "string", "pattern": `^urn:marketledger:schema:[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*:v[1-9][0-9]*$`, "description": "the $id of the body's schema: type and version"},
		events.HeaderContentType:      obj{"type": "string", "const": events.ContentTypeJSON, "description": "body encoding"},
		events.HeaderCorrelationID:    str("business flow id (optional)"),
		events.HeaderCausationID:      str("id of the command or event that caused this one (optional)"),
		events.HeaderPolicyPosition:   uintStr("global position of the newest policy event the decision was made under (0: none)"),
		events.HeaderAggregateVersion: uintStr("1-based index of the event in its aggregate"),
		events.HeaderPrevHash:         hex("hex SHA-256 of the aggregate's previous event (the genesis hash for the first)"),
		events.HeaderHash:             hex("hex SHA-256 of this event's canonical encoding"),
		events.HeaderPrevPosition:     uintStr("position of the aggregate's previous event when an earlier decision stored it; 0 within a decision or for the first"),
	}
	required := []string{}
	for k := range props {
		if k != events.HeaderCorrelationID && k != events.HeaderCausationID && k != events.HeaderPrevPosition {
			required = append(required, k)
		}
	}
	sort.Strings(required)
	return obj{"type": "object", "required": required, "properties": props,
		"description": "CloudEvents 1.0 binary mode over NATS headers, with the ledger's extensions"}
}

func marshalYAML(doc obj) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# Generated from the contracts registry by `go generate`; do not edit.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// addControlRecords declares the store's own records, which share the
// stream and the atomic batches with the events (docs/events.md, "Control
// records"): readers skip them, but they hold positions.
func addControlRecords(channels, operations, messages obj) {
	u := func(d string) obj { return obj{"type": "integer", "minimum": 0, "description": d} }
	str := func(d string) obj { return obj{"type": "string", "description": d} }
	records := []struct {
		id, address, title, doc string
		params                  obj
		payload                 obj
	}{
		{"control.idempotency", events.SubjectPrefix + "{context}._idem.{key_hash}", "idempotency record",
			"Stored after a keyed decision's events in the same atomic batch; its subject may hold one message only, so a key decides once (ADR 0005).",
			obj{"context": obj{"description": "the bounded context of the decision"},
				"key_hash": obj{"description": "hex SHA-256 of the idempotency key"}},
			obj{"type": "object", "required": []any{"key", "command_digest", "aggregate", "version", "events"}, "properties": obj{
				"key": str("the idempotency key"), "command_digest": str("hex SHA-256 of the command's JSON"),
				"aggregate": str("context/id of the aggregate decided on"), "version": u("the aggregate's version after the command"),
				"events": u("how many events the command appended"),
				"after":  u("messages between the command's last event and this record (absent: 0)")}}},
		{"control.fence", events.SubjectPrefix + "{context}._fence", "fence of fenced decisions",
			"The last message of a batch with fenced decisions; it carries the check that the last message on ledger.policy.> is at policy_position (ADR 0004).",
			obj{"context": obj{"description": "the bounded context of the batch's fenced decisions"}},
			obj{"type": "object", "required": []any{"policy_position", "decisions"}, "properties": obj{
				"policy_position": u("the policy position the decisions were made under"), "decisions": u("fenced decisions in the batch")}}},
		{"control.policy_fence", PolicyFenceRecordSubject, "fence of a policy batch",
			"The last message of every batch of policy decisions: a policy view checks from it that it missed no policy message (ADR 0004).",
			obj{},
			obj{"type": "object", "required": []any{"policy_position", "decisions"}, "properties": obj{
				"policy_position":          u("the newest position on ledger.policy.> before the batch (0 if none), which its check requires"),
				"previous_policy_position": u("the same, repeated for the continuity check"),
				"decisions":                u("policy decisions in the batch"),
				"policy_messages":          u("the batch's messages on ledger.policy.>")}}},
	}
	for _, r := range records {
		messages[r.id] = obj{"name": r.id, "title": r.title, "summary": r.doc, "contentType": events.ContentTypeJSON,
			"payload": obj{"schemaFormat": schemaFormat, "schema": r.payload}}
		ch := obj{"address": r.address, "title": r.title, "description": r.doc,
			"messages": obj{r.id: obj{"$ref": "#/components/messages/" + r.id}}}
		if len(r.params) > 0 {
			ch["parameters"] = r.params
		}
		channels[r.id] = ch
		operations[r.id+".send"] = obj{"action": "send", "channel": obj{"$ref": "#/channels/" + r.id},
			"title": "the store writes " + r.title + "s", "summary": "Written by the event store of whichever service decides, never by hand.",
			"messages": []any{obj{"$ref": "#/channels/" + r.id + "/messages/" + r.id}}, "x-service": "store"}
	}
}

// integers turns the json.Numbers of a decoded value into int64 where they
// are whole, so that YAML writes 15000000 rather than 1.5e+07 or a string.
func integers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = integers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = integers(e)
		}
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

package contracts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// CataloguePath is where the generated event catalogue lives, relative to
// the contracts module root.
const CataloguePath = "../docs/events.md"

// Catalogue returns docs/events.md: every event type and version with its
// publisher, subscribers, subject and fields, and every command, generated
// from the registry and the schemas so that it cannot go stale unnoticed.
func Catalogue() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(catalogueIntro)
	b.WriteString("\n## Events\n\n| type | version | publisher | subscribers | description |\n|---|---|---|---|---|\n")
	for _, s := range Events {
		cur := ""
		if s.Current() {
			cur = " (current)"
		}
		fmt.Fprintf(&b, "| [`%s`](#%s) | %d%s | %s | %s | %s |\n", s.Type, anchor(s), s.Version, cur, s.Publisher,
			strings.Join(s.Subscribers, ", "), s.Description)
	}
	for _, s := range Events {
		if err := eventSection(&b, s); err != nil {
			return nil, err
		}
	}
	b.WriteString("\n## Commands\n\nCommand bodies are validated with `contracts.ValidateCommand(name, body)` before any decision. " +
		"Their schemas are `contracts/" + "schemas/commands/<name>.json`.\n\n| command | service | callers | emits | description |\n|---|---|---|---|---|\n")
	for _, c := range Commands {
		fmt.Fprintf(&b, "| [`%s`](#command-%s) | %s | %s | %s | %s |\n", c.Name, strings.ReplaceAll(c.Name, ".", ""), c.Service,
			strings.Join(c.Callers, ", "), "`"+strings.Join(c.Emits, "`, `")+"`", c.Description)
	}
	for _, c := range Commands {
		sch, err := CommandSchema(c)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "\n### Command %s\n\n%s Decided by the %s service; schema [`%s`](../contracts/%s).\n\n",
			c.Name, c.Description, c.Service, CommandSchemaPath(c.Name), CommandSchemaPath(c.Name))
		if err := fieldTable(&b, sch); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

const catalogueIntro = `# Event catalogue

Generated from the registry in ` + "`contracts`" + ` and its JSON Schemas by ` + "`go generate`" + ` in ` + "`contracts/`" + `
(or ` + "`go test ./... -run TestCatalogue -update`" + `); do not edit by hand. ` + "`make test`" + ` fails when it is stale.

## Conventions

- **Subjects**: every event is one message on the JetStream stream ` + "`LEDGER`" + `, subject
  ` + "`ledger.<context>.<aggregate_id>.<name>`" + ` for type ` + "`<context>.<name>`" + `. The AsyncAPI document is
  ` + "[`contracts/asyncapi.yaml`](../contracts/asyncapi.yaml)" + `.
- **Envelope**: CloudEvents 1.0 in binary mode over NATS headers (` + "`ce-id`, `ce-type`, `ce-source`, `ce-subject`, `ce-time`, `ce-dataschema`" + `,
  ` + "`ce-correlationid`, `ce-causationid`, `ce-policyposition`, `ce-aggregateversion`, `ce-prevhash`, `ce-prevposition`, `ce-hash`" + `) and a JSON body.
  ` + "`ce-dataschema`" + ` is ` + "`urn:marketledger:schema:<type>:v<N>`" + `, the ` + "`$id`" + ` of the body's schema.
- **Money**: ` + "`{\"amount_minor\": int, \"currency\": \"ISO 4217\"}`" + `, integer minor units (cents, sen), never floats;
  a price is at least 1 and every amount at most 2^53-1. IDR uses its ISO 4217 exponent 2: Rp 150.000 is 15000000.
- **Instants**: RFC 3339 with an offset (` + "`2023-10-04T17:00:00+07:00`" + `).
- **Policy activation**: a policy change takes effect at a position of the log, never at a bare instant
  (ADR 0004). ` + "`\"activation\": \"on_recording\"`" + `: the change event is its own activation, its
  ` + "`effective_at`" + ` (the policy service's decision instant) is for information only. ` + "`\"scheduled\"`" + `: the
  change waits for its ` + "`policy.rule_activated`" + `, appended by the policy service when its clock reaches
  ` + "`effective_at`" + `; from that event's position (and its recorded time) the change is in force. A rule is in
  force for an event at position p when its activation is before p and its lift's activation is not; a lift
  counts only from its activation.
- **Versions**: each event carries its type and schema version. Old versions are read-only: producers write the
  current version, and ` + "`contracts.Decode`" + ` upcasts stored old versions, so deciders and projections only see
  current types. ` + "`order.placed`" + ` v1 (before sales channels) is read as v2 with ` + "`channel: marketplace`" + `, because
  every order placed before the channel existed was a marketplace order.
- **Compatibility**: published schemas are frozen in ` + "`contracts/schemas/published/`" + `; removing or retyping a
  field, adding a required one or removing an enum value fails ` + "`make test`" + `. Add a version with an upcaster instead.
- **Validation**: ` + "`contracts.Checker`" + ` (an ` + "`events.TypeChecker`" + `) refuses a body that breaks its schema before
  it is appended; errors name the JSON pointer and the rule (` + "`/price/amount_minor: minimum 1`" + `).

## Control records

The store's own records sit in the same atomic batches as events, on subjects whose third token starts
with ` + "`_`" + ` (no aggregate id can); readers and views skip them, but their positions count.

- **Idempotency** ` + "`ledger.<context>._idem.<sha256(key)>`" + `: ` + "`{\"key\", \"command_digest\", \"aggregate\", \"version\", \"events\", \"after\"}`" + `,
  after the decision's events ([ADR 0005](adr/0005-idempotency-in-the-log.md)); ` + "`after`" + ` (absent: 0) counts the messages
  between the command's last event and its record, for a decision that answers several commands of one aggregate.
- **Fence of fenced decisions** ` + "`ledger.<context>._fence`" + `, the last message of a batch with fenced decisions:
  ` + "`{\"policy_position\": P, \"decisions\": N}`" + `; it carries the check "the last message on ` + "`ledger.policy.>`" + ` is at P",
  the position the N decisions were made under ([ADR 0004](adr/0004-policy-fence.md)).
- **Fence of a policy batch** ` + "`ledger.policy._fence`" + `, the last message of every batch of policy decisions:
  ` + "`{\"policy_position\": H, \"previous_policy_position\": H, \"decisions\": N, \"policy_messages\": K}`" + `. H is the newest
  position on ` + "`ledger.policy.>`" + ` before the batch (0 if none), which its check requires; K counts the batch's
  messages on ` + "`ledger.policy.>`" + ` before the record (events and idempotency records). The record is then the
  policy head, so each policy batch's record names the previous batch's record (or the last policy message
  before the first such record): a follower of ` + "`ledger.policy.>`" + ` that saw, before this record, a last message
  other than H or a count of messages after H other than K has missed a policy message.

## Chart of accounts

Payment events carry double-entry postings ` + "`{account, amount_minor, currency}`" + `: signed minor units, a
positive amount adds to the account, every amount non-zero, the legs of a movement sum to zero per currency.

| account | meaning |
|---|---|
| ` + "`buyer:<buyer_id>`" + ` | the buyer's funding source; goes negative by what the buyer paid |
| ` + "`escrow:<order_id>`" + ` | money held for an order between capture and settlement |
| ` + "`seller_payable:<seller_id>`" + ` | what the platform owes a seller after settlement |
| ` + "`platform_fee_revenue`" + ` | the platform's fee income, credited at settlement |
| ` + "`refunds`" + ` | money returned to buyers through the payment rail |

| event | postings (amount X) |
|---|---|
| ` + "`payment.authorized`" + ` | pending, not on balances: buyer -X, escrow +X |
| ` + "`payment.captured`" + ` | buyer -X, escrow +X |
| ` + "`payment.voided`" + ` | none: the pending transfer is released |
| ` + "`payment.refunded`" + ` | escrow -X (or seller_payable -X after settlement), refunds +X |
| ` + "`payment.settled`" + ` | escrow -gross, seller_payable +net, platform_fee_revenue +fee (left out when 0) |
`

func anchor(s EventSpec) string {
	return strings.ReplaceAll(s.Type, ".", "") + "-v" + strconv.Itoa(s.Version)
}

func eventSection(b *bytes.Buffer, s EventSpec) error {
	sch, err := EventSchema(s)
	if err != nil {
		return err
	}
	status := "current"
	if !s.Current() {
		status = fmt.Sprintf("read-only, upcast to v%d", s.Version+1)
	}
	agg := "`" + s.AggregateField + "`"
	if s.AggregateField == "" {
		agg = "the notary log (`checkpoints`)"
	}
	fmt.Fprintf(b, "\n### %s v%d\n\n%s\n\n- status: %s\n- publisher: %s (source `%s`); subscribers: %s\n- subject: `ledger.%s.<%s>.%s`; aggregate id: %s\n- schema: [`%s`](../contracts/%s)\n\n",
		s.Type, s.Version, s.Description, status, s.Publisher, Source(s.Publisher), strings.Join(s.Subscribers, ", "),
		s.Context, "aggregate_id", s.Name(), agg, EventSchemaPath(s.Type, s.Version), EventSchemaPath(s.Type, s.Version))
	if err := fieldTable(b, sch); err != nil {
		return err
	}
	if ex, ok := eventExamples[eventKey{s.Type, s.Version}]; ok {
		j, err := json.MarshalIndent(ex, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(b, "\nExample:\n\n```json\n%s\n```\n", j)
	}
	return nil
}

// fieldTable flattens a schema into one row per leaf field, nested fields
// as a.b and array items as a[].b, read from the generated schema itself.
func fieldTable(b *bytes.Buffer, schema []byte) error {
	var root map[string]any
	if err := json.Unmarshal(schema, &root); err != nil {
		return err
	}
	b.WriteString("| field | type | required | description |\n|---|---|---|---|\n")
	var rows []string
	flatten(root, root, "", true, &rows, 0)
	for _, r := range rows {
		b.WriteString(r)
	}
	return nil
}

func flatten(root, node map[string]any, prefix string, parentRequired bool, rows *[]string, depth int) {
	if depth > 8 {
		return
	}
	node = resolve(root, node)
	props, _ := node["properties"].(map[string]any)
	req := stringSet(node["required"])
	names := make([]string, 0, len(props))
	for n := range props {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p, _ := props[n].(map[string]any)
		path := prefix + n
		desc, _ := p["description"].(string)
		r := resolve(root, p)
		required := "no"
		if req[n] && parentRequired {
			required = "yes"
		} else if req[n] {
			required = "yes, when the parent is present"
		}
		switch r["type"] {
		case "object":
			*rows = append(*rows, fmt.Sprintf("| `%s` | object | %s | %s |\n", path, required, desc))
			flatten(root, r, path+".", req[n] && parentRequired, rows, depth+1)
		case "array":
			items, _ := r["items"].(map[string]any)
			ri := resolve(root, items)
			if ri["type"] == "object" {
				*rows = append(*rows, fmt.Sprintf("| `%s` | array of object%s | %s | %s |\n", path, arrayBounds(r), required, desc))
				flatten(root, ri, path+"[].", req[n] && parentRequired, rows, depth+1)
				continue
			}
			*rows = append(*rows, fmt.Sprintf("| `%s` | array of %s%s | %s | %s |\n", path, typeText(ri), arrayBounds(r), required, desc))
		default:
			*rows = append(*rows, fmt.Sprintf("| `%s` | %s | %s | %s |\n", path, typeText(r), required, desc))
		}
	}
}

func arrayBounds(a map[string]any) string {
	var parts []string
	if v, ok := a["minItems"]; ok {
		parts = append(parts, fmt.Sprintf("at least %v", v))
	}
	if v, ok := a["maxItems"]; ok {
		parts = append(parts, fmt.Sprintf("at most %v", v))
	}
	if a["uniqueItems"] == true {
		parts = append(parts, "unique")
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// typeText renders a scalar schema for people: the ISO lists by name, short
// enums in full, bounds and patterns as written.
func typeText(s map[string]any) string {
	t, _ := s["type"].(string)
	if e, ok := s["enum"].([]any); ok {
		if len(e) > 12 {
			d, _ := s["description"].(string)
			return "string: " + d
		}
		vals := make([]string, len(e))
		for i, v := range e {
			vals[i] = fmt.Sprintf("`%v`", v)
		}
		return "one of " + strings.Join(vals, ", ")
	}
	var parts []string
	if f, ok := s["format"]; ok {
		parts = append(parts, fmt.Sprintf("%v", f))
	}
	if p, ok := s["pattern"]; ok {
		parts = append(parts, fmt.Sprintf("pattern `%v`", strings.ReplaceAll(fmt.Sprint(p), "|", `\|`)))
	}
	if v, ok := s["minLength"]; ok {
		parts = append(parts, fmt.Sprintf("%v..%v characters", v, s["maxLength"]))
	}
	if v, ok := s["minimum"]; ok {
		parts = append(parts, fmt.Sprintf("%s..%s", jsonNumber(v), jsonNumber(s["maximum"])))
	}
	if _, ok := s["not"]; ok {
		parts = append(parts, "not 0")
	}
	if len(parts) == 0 {
		return t
	}
	return t + " (" + strings.Join(parts, ", ") + ")"
}

func jsonNumber(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

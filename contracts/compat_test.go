package contracts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCompatibility compares every published (frozen) schema with the
// schema the current Go type of that version generates. A breaking change
// to a published version fails here, naming the type, version and change:
// make a new version with an upcaster instead.
func TestCompatibility(t *testing.T) {
	files, err := filepath.Glob("schemas/published/events/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no published schemas: run go generate")
	}
	published := map[eventKey]bool{}
	for _, f := range files {
		typ, version, ok := parseSchemaFile(filepath.Base(f))
		if !ok {
			t.Errorf("%s: not <type>.v<N>.json", f)
			continue
		}
		published[eventKey{typ, version}] = true
		spec, ok := LookupEvent(typ, version)
		if !ok {
			t.Errorf("%s v%d: published but no longer registered; a published version is never removed", typ, version)
			continue
		}
		old, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cur, err := EventSchema(spec)
		if err != nil {
			t.Fatal(err)
		}
		breaks, err := CompareSchemas(old, cur)
		if err != nil {
			t.Fatalf("%s v%d: %v", typ, version, err)
		}
		for _, b := range breaks {
			t.Errorf("%s v%d: incompatible change to a published schema: %s (add v%d with an upcaster instead)", typ, version, b, version+1)
		}
	}
	for _, s := range Events {
		if !published[eventKey{s.Type, s.Version}] {
			t.Errorf("%s v%d is not published: run go generate", s.Type, s.Version)
		}
	}
}

func parseSchemaFile(name string) (string, int, bool) {
	base, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndex(base, ".v")
	if i < 0 {
		return "", 0, false
	}
	v := 0
	for _, r := range base[i+2:] {
		if r < '0' || r > '9' {
			return "", 0, false
		}
		v = v*10 + int(r-'0')
	}
	return base[:i], v, v > 0
}

// TestCompareSchemas checks the checker itself on synthetic pairs.
func TestCompareSchemas(t *testing.T) {
	const base = `{"type":"object","additionalProperties":false,"required":["id","price"],
		"properties":{"id":{"type":"string","pattern":"^a$"},"price":{"$ref":"#/$defs/money"},
		"channel":{"type":"string","enum":["marketplace","social_commerce"]},"tags":{"type":"array","items":{"type":"string","maxLength":10}}},
		"$defs":{"money":{"type":"object","required":["amount_minor"],"properties":{"amount_minor":{"type":"integer","minimum":1}}}}}`
	tests := []struct {
		name string
		old  string
		new  string
		want []Break
	}{
		{"identical", base, base, nil},
		{"optional field added", base,
			strings.Replace(base, `"tags":`, `"note":{"type":"string"},"tags":`, 1), nil},
		{"enum value added", base,
			strings.Replace(base, `"social_commerce"]`, `"social_commerce","live"]`, 1), nil},
		{"field removed", base,
			strings.Replace(base, `"channel":{"type":"string","enum":["marketplace","social_commerce"]},`, ``, 1),
			[]Break{{"/channel", "field removed"}}},
		{"type changed", base,
			strings.Replace(base, `"id":{"type":"string","pattern":"^a$"}`, `"id":{"type":"integer"}`, 1),
			[]Break{{"/id", "type changed from string to integer"}}},
		{"type changed behind a $ref", base,
			strings.Replace(base, `"amount_minor":{"type":"integer","minimum":1}`, `"amount_minor":{"type":"string"}`, 1),
			[]Break{{"/price/amount_minor", "type changed from integer to string"}}},
		{"new required field", base,
			strings.Replace(strings.Replace(base, `"required":["id","price"]`, `"required":["id","price","seller"]`, 1),
				`"tags":`, `"seller":{"type":"string"},"tags":`, 1),
			[]Break{{"/seller", "new required field"}}},
		{"optional became required", base,
			strings.Replace(base, `"required":["id","price"]`, `"required":["id","price","channel"]`, 1),
			[]Break{{"/channel", "optional field became required"}}},
		{"enum value removed", base,
			strings.Replace(base, `["marketplace","social_commerce"]`, `["marketplace"]`, 1),
			[]Break{{"/channel", "enum value social_commerce removed"}}},
		{"bound tightened in items", base,
			strings.Replace(base, `"maxLength":10`, `"maxLength":5`, 1),
			[]Break{{"/tags/*", "maxLength tightened to 5"}}},
		{"bound loosened", base,
			strings.Replace(base, `"maxLength":10`, `"maxLength":50`, 1), nil},
		{"pattern changed", base,
			strings.Replace(base, `"^a$"`, `"^b$"`, 1),
			[]Break{{"/id", "pattern changed from ^a$ to ^b$"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CompareSchemas([]byte(tt.old), []byte(tt.new))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("breaks (-want +got):\n%s", diff)
			}
		})
	}
}

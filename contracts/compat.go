package contracts

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Break is one incompatible difference between a published schema and its
// current form, at a JSON pointer into the instance ("/price/amount_minor").
type Break struct {
	Path   string
	Change string
}

func (b Break) String() string {
	p := b.Path
	if p == "" {
		p = "/"
	}
	return p + ": " + b.Change
}

// CompareSchemas lists what the new schema breaks for data and consumers
// written against the old one: a field removed, a type changed, a new
// required field (or an optional one made required), an enum value
// removed, a pattern or format changed, a bound tightened. Adding an
// optional field or an enum value is compatible. Both schemas are
// self-contained documents whose $refs point into their own $defs.
func CompareSchemas(old, new []byte) ([]Break, error) {
	var o, n map[string]any
	if err := json.Unmarshal(old, &o); err != nil {
		return nil, fmt.Errorf("old schema: %w", err)
	}
	if err := json.Unmarshal(new, &n); err != nil {
		return nil, fmt.Errorf("new schema: %w", err)
	}
	c := &comparer{oldRoot: o, newRoot: n}
	c.compare("", o, n, 0)
	sort.Slice(c.breaks, func(i, j int) bool {
		if c.breaks[i].Path != c.breaks[j].Path {
			return c.breaks[i].Path < c.breaks[j].Path
		}
		return c.breaks[i].Change < c.breaks[j].Change
	})
	return c.breaks, nil
}

type comparer struct {
	oldRoot, newRoot map[string]any
	breaks           []Break
}

func (c *comparer) add(path, format string, args ...any) {
	c.breaks = append(c.breaks, Break{Path: path, Change: fmt.Sprintf(format, args...)})
}

// resolve follows local $refs ("#/$defs/money"); depth bounds a cycle.
func resolve(root, node map[string]any) map[string]any {
	for i := 0; i < 16; i++ {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		defs, _ := root["$defs"].(map[string]any)
		next, _ := defs[name].(map[string]any)
		if !ok || next == nil {
			return node
		}
		node = next
	}
	return node
}

func (c *comparer) compare(path string, o, n map[string]any, depth int) {
	if depth > 32 {
		return
	}
	o, n = resolve(c.oldRoot, o), resolve(c.newRoot, n)
	if ot, nt := fmt.Sprint(o["type"]), fmt.Sprint(n["type"]); ot != nt {
		c.add(path, "type changed from %s to %s", ot, nt)
		return
	}
	c.compareObject(path, o, n, depth)
	c.compareEnum(path, o, n)
	c.compareConstraints(path, o, n)
	if oi, ok := o["items"].(map[string]any); ok {
		if ni, ok := n["items"].(map[string]any); ok {
			c.compare(path+"/*", oi, ni, depth+1)
		}
	}
}

func (c *comparer) compareObject(path string, o, n map[string]any, depth int) {
	op, _ := o["properties"].(map[string]any)
	np, _ := n["properties"].(map[string]any)
	for name, ov := range op {
		nv, ok := np[name]
		if !ok {
			c.add(path+"/"+name, "field removed")
			continue
		}
		om, _ := ov.(map[string]any)
		nm, _ := nv.(map[string]any)
		if om != nil && nm != nil {
			c.compare(path+"/"+name, om, nm, depth+1)
		}
	}
	oldReq := stringSet(o["required"])
	for name := range stringSet(n["required"]) {
		if oldReq[name] {
			continue
		}
		if _, existed := op[name]; existed {
			c.add(path+"/"+name, "optional field became required")
		} else {
			c.add(path+"/"+name, "new required field")
		}
	}
}

func (c *comparer) compareEnum(path string, o, n map[string]any) {
	oe, ok := o["enum"].([]any)
	if !ok {
		return
	}
	ne, ok := n["enum"].([]any)
	if !ok {
		return // the enum was dropped: more values are accepted
	}
	have := map[string]bool{}
	for _, v := range ne {
		have[fmt.Sprint(v)] = true
	}
	for _, v := range oe {
		if !have[fmt.Sprint(v)] {
			c.add(path, "enum value %v removed", v)
		}
	}
}

// compareConstraints flags any tightening of a bound and any change of a
// pattern or format: checking whether one regular expression's language
// includes another's is not worth it, so any change counts as breaking.
func (c *comparer) compareConstraints(path string, o, n map[string]any) {
	for _, k := range []string{"pattern", "format", "const"} {
		if ov, ok := o[k]; ok || n[k] != nil {
			if !reflect.DeepEqual(ov, n[k]) {
				c.add(path, "%s changed from %v to %v", k, ov, n[k])
			}
		}
	}
	lower := func(k string) { // a larger lower bound is tighter
		if nv, ok := n[k].(float64); ok {
			if ov, ok := o[k].(float64); !ok || nv > ov {
				c.add(path, "%s tightened to %v", k, nv)
			}
		}
	}
	upper := func(k string) { // a smaller upper bound is tighter
		if nv, ok := n[k].(float64); ok {
			if ov, ok := o[k].(float64); !ok || nv < ov {
				c.add(path, "%s tightened to %v", k, nv)
			}
		}
	}
	for _, k := range []string{"minimum", "minLength", "minItems"} {
		lower(k)
	}
	for _, k := range []string{"maximum", "maxLength", "maxItems"} {
		upper(k)
	}
	if o["uniqueItems"] != true && n["uniqueItems"] == true {
		c.add(path, "uniqueItems added")
	}
	if o["additionalProperties"] != false && n["additionalProperties"] == false {
		c.add(path, "additionalProperties closed")
	}
}

func stringSet(v any) map[string]bool {
	out := map[string]bool{}
	list, _ := v.([]any)
	for _, s := range list {
		if str, ok := s.(string); ok {
			out[str] = true
		}
	}
	return out
}

package contracts

import (
	"strings"

	"github.com/marketledger/ledger/events"
)

// invalidAt builds the package's one error shape: KindInvalid for a
// command that breaks its contract (ReasonMalformed), with the JSON pointer
// of the offending value and the rule it broke.
func invalidAt(op, pointer, rule string) *events.Error {
	return &events.Error{Op: op, Kind: events.KindInvalid, Reason: events.ReasonMalformed, Field: pointer, Rule: rule}
}

// under prefixes the Field of an *events.Error with a JSON pointer, so that
// a nested value's validation reports its full path ("/price" +
// "/amount_minor"). Other errors pass through.
func under(prefix string, err error) error {
	e, ok := err.(*events.Error)
	if !ok || err == nil {
		return err
	}
	c := *e
	c.Field = prefix + c.Field
	return &c
}

// pointerEscape escapes one JSON pointer token (RFC 6901).
func pointerEscape(tok string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(tok)
}

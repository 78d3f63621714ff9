package events

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies an error so that callers (the HTTP edge, the CLI, retry
// loops) can react without parsing messages.
type Kind uint8

// The kinds of error the ledger reports.
const (
	KindOther       Kind = iota // an unclassified failure
	KindInvalid                 // the input breaks a rule; never retried
	KindConflict                // optimistic concurrency lost; reload and retry
	KindNotFound                // the named thing does not exist
	KindFrozen                  // a policy rule blocks the operation
	KindUnavailable             // the log could not be reached; outcome unknown or nothing stored
	KindIntegrity               // stored data failed its hash or chain check
	KindDuplicate               // an idempotency key was reused for a different command
)

func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindConflict:
		return "conflict"
	case KindNotFound:
		return "not_found"
	case KindFrozen:
		return "frozen"
	case KindUnavailable:
		return "unavailable"
	case KindIntegrity:
		return "integrity"
	case KindDuplicate:
		return "duplicate"
	default:
		return "other"
	}
}

// Error is the one error type of the ledger. Op names the operation
// ("events.Append"), Field the offending input as a JSON pointer or header
// name, and Rule the rule it broke, so that one line tells both the user and
// the operator what happened.
type Error struct {
	Op    string
	Kind  Kind
	Field string
	Rule  string
	Err   error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	b.WriteString(e.Kind.String())
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, ": %s", e.Rule)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, &Error{Kind: k}) match any *Error of kind k.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Kind == e.Kind && (t.Op == "" || t.Op == e.Op) && (t.Field == "" || t.Field == e.Field)
}

// Sentinel errors for errors.Is checks by kind.
var (
	ErrInvalid     = &Error{Kind: KindInvalid}
	ErrConflict    = &Error{Kind: KindConflict}
	ErrNotFound    = &Error{Kind: KindNotFound}
	ErrFrozen      = &Error{Kind: KindFrozen}
	ErrUnavailable = &Error{Kind: KindUnavailable}
	ErrIntegrity   = &Error{Kind: KindIntegrity}
	ErrDuplicate   = &Error{Kind: KindDuplicate}
)

// KindOf returns the Kind of the first *Error in err's chain, or KindOther.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindOther
}

func invalid(op, field, rule string) error {
	return &Error{Op: op, Kind: KindInvalid, Field: field, Rule: rule}
}

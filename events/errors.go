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
	KindPermission              // the caller's identity may not do this
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
	case KindPermission:
		return "permission"
	default:
		return "other"
	}
}

// Reason refines a Kind where a caller must tell cases apart: which
// conflict, which invalid input. Callers match the Reason, never the Field,
// the Rule or the Op, which are for people. The zero Reason says nothing
// more than the Kind.
type Reason string

// The reasons the ledger gives. Each is stable: it is part of the problem
// body a client receives ("reason").
const (
	// ReasonMalformed: the command breaks its contract (a missing or
	// ill-typed field, a value outside the contract's schema), as opposed to
	// a business rule on the state it meets (KindInvalid without a reason).
	ReasonMalformed Reason = "malformed"
	// ReasonStaleVersion: the aggregate moved since it was loaded.
	ReasonStaleVersion Reason = "stale_version"
	// ReasonPolicyMoved: a policy event was appended after the one the
	// decision was made under; decide again on the newer policy.
	ReasonPolicyMoved Reason = "policy_moved"
	// ReasonContention: the command lost every attempt to other writers of
	// the same aggregate. Nothing is wrong with it: send it again.
	ReasonContention Reason = "contention"
	// ReasonNoStock: the listing has fewer units left than asked for.
	ReasonNoStock Reason = "no_stock"
)

// Error is the one error type of the ledger. Op names the operation
// ("events.Append"), Field the offending input as a JSON pointer or header
// name, and Rule the rule it broke, so that one line tells both the user and
// the operator what happened; Kind and Reason say it to a program.
type Error struct {
	Op     string
	Kind   Kind
	Reason Reason
	Field  string
	Rule   string
	Err    error
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

// Is makes errors.Is(err, &Error{Kind: k}) match any *Error of kind k (and
// of the target's Reason, Op and Field where the target sets them).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Kind == e.Kind && (t.Reason == "" || t.Reason == e.Reason) && (t.Op == "" || t.Op == e.Op) &&
		(t.Field == "" || t.Field == e.Field)
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
	ErrPermission  = &Error{Kind: KindPermission}
)

// KindOf returns the Kind of the first *Error in err's chain, or KindOther.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindOther
}

// ReasonOf returns the Reason of the first *Error in err's chain, or the
// zero Reason.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func invalid(op, field, rule string) error {
	return &Error{Op: op, Kind: KindInvalid, Field: field, Rule: rule}
}

package service

import "github.com/marketledger/ledger/runtime/command"

// Reply is what a command answers: the aggregate after it, and where its
// events went.
type Reply[S any] struct {
	AggregateID string `json:"aggregate_id"`
	// Version is the aggregate's version after the command.
	Version uint64 `json:"version"`
	// Replayed is true when the idempotency key had been used by the same
	// command: nothing new was appended.
	Replayed bool `json:"replayed,omitempty"`
	// Events are the types of the events appended, in order.
	Events []string `json:"events,omitempty"`
	// FirstPosition and LastPosition are the global positions of the
	// appended events (0 when none were appended).
	FirstPosition uint64 `json:"first_position,omitempty"`
	LastPosition  uint64 `json:"last_position,omitempty"`
	State         S      `json:"state"`
}

// NewReply builds the reply of a command on aggregate id.
func NewReply[S any](id string, r command.Result[S]) Reply[S] {
	out := Reply[S]{AggregateID: id, Version: r.Version, Replayed: r.Replayed, State: r.State,
		FirstPosition: r.Appended.FirstPosition, LastPosition: r.Appended.LastPosition}
	for _, e := range r.Events {
		out.Events = append(out.Events, e.Type)
	}
	return out
}

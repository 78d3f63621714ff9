package contracts

import "github.com/marketledger/ledger/events"

// PolicySubject is the subject filter of every policy event: what a fenced
// decision is checked against (the store's fence subject, with the policy
// context as its source) and what a service's policy view follows.
const PolicySubject = events.SubjectPrefix + ServicePolicy + ".>"

// PolicyFenceRecordSubject is the subject of the record that ends every
// batch of policy decisions (events.PolicyFence).
var PolicyFenceRecordSubject = events.FenceRecordSubjectOf(ServicePolicy)

// Fence is the store option every ledger process opens its store with: the
// policy context is the source of the fence, so a decision made under a
// policy view is stored only if no policy event came after it (ADR 0004).
func Fence() events.Option { return events.WithFence(ServicePolicy) }

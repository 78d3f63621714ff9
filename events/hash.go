package events

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
)

// GenesisHash is the PrevHash of the first event of every aggregate.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// hashDomain separates this encoding from any other use of SHA-256.
const hashDomain = "marketledger/event/v1"

// ComputeHash returns the hex SHA-256 of the event's canonical encoding: a
// domain tag, then every attribute that carries meaning (including PrevHash,
// which links the chain) as a length-prefixed field in a fixed order, then the
// body bytes as stored. Store-assigned Position and RecordedAt are excluded:
// they are the log's own record, covered by the notary's Merkle tree.
func (e *Event) ComputeHash() string {
	var tbuf [64]byte
	return e.computeHash(e.OccurredAt.AppendFormat(tbuf[:0], timeLayout))
}

// computeHash hashes with the already formatted occurred-at, so that the
// read path hashes the header bytes it checked instead of formatting again.
// The preimage is built in one buffer and hashed in one call.
func (e *Event) computeHash(occurredAt []byte) string {
	var stack [2048]byte
	b := stack[:0]
	b = appendString(b, hashDomain)
	b = appendString(b, e.PrevHash)
	b = appendString(b, e.ID)
	b = appendString(b, e.Type)
	var num [20]byte
	b = appendField(b, strconv.AppendInt(num[:0], int64(e.SchemaVersion), 10))
	b = appendString(b, e.Source)
	b = appendString(b, e.AggregateID)
	b = appendField(b, occurredAt)
	b = appendString(b, e.CorrelationID)
	b = appendString(b, e.CausationID)
	b = appendField(b, strconv.AppendUint(num[:0], e.PolicyPosition, 10))
	b = appendField(b, strconv.AppendUint(num[:0], e.AggregateVersion, 10))
	if e.PrevPosition != 0 {
		// Only when set, so that events of stores that do not keep it hash
		// as they always did.
		b = appendField(b, strconv.AppendUint(num[:0], e.PrevPosition, 10))
	}
	b = appendString(b, ContentTypeJSON)
	b = appendField(b, e.Data)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendField(b, f []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(f)))
	return append(b, f...)
}

// Seal sets the aggregate version and chain link of events appended after an
// aggregate whose last event had version lastVersion and hash lastHash, and
// computes each event's hash. It returns the hash of the last event.
func Seal(evs []Event, lastVersion uint64, lastHash string) string {
	return SealAt(evs, lastVersion, lastHash, 0)
}

// SealAt is Seal for a store that knows the position of the aggregate's last
// event (lastPosition): the decision's first event records it.
func SealAt(evs []Event, lastVersion uint64, lastHash string, lastPosition uint64) string {
	if len(evs) > 0 {
		evs[0].PrevPosition = lastPosition
	}
	prev := lastHash
	for i := range evs {
		evs[i].AggregateVersion = lastVersion + uint64(i) + 1
		evs[i].PrevHash = prev
		evs[i].Hash = evs[i].ComputeHash()
		prev = evs[i].Hash
	}
	return prev
}

// VerifyChain checks that evs are the consecutive events of one aggregate
// starting after (lastVersion, lastHash): versions without gaps, each
// PrevHash equal to the previous Hash, each Hash equal to its content's hash.
// The error names the first event that breaks the chain.
func VerifyChain(evs []Event, lastVersion uint64, lastHash string) error {
	prev, ver := lastHash, lastVersion
	for i := range evs {
		e := &evs[i]
		ver++
		if e.AggregateVersion != ver {
			return integrity(e, "aggregate version %d where %d was expected", e.AggregateVersion, ver)
		}
		if e.PrevHash != prev {
			return integrity(e, "chain broken: prevhash %s does not match the previous event's hash %s", e.PrevHash, prev)
		}
		if got := e.ComputeHash(); got != e.Hash {
			return integrity(e, "content does not match its hash (stored %s, computed %s)", e.Hash, got)
		}
		prev = e.Hash
	}
	return nil
}

func integrity(e *Event, format string, args ...any) error {
	return &Error{Op: "events.VerifyChain", Kind: KindIntegrity,
		Field: "event " + e.ID + " at position " + strconv.FormatUint(e.Position, 10),
		Rule:  fmt.Sprintf(format, args...)}
}

func isHexHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

package events

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
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
	h := sha256.New()
	fields := []string{
		hashDomain, e.PrevHash, e.ID, e.Type, strconv.Itoa(e.SchemaVersion), e.Source,
		e.AggregateID, e.OccurredAt.Format(timeLayout), e.CorrelationID, e.CausationID,
		strconv.FormatUint(e.PolicyPosition, 10), strconv.FormatUint(e.AggregateVersion, 10),
		ContentTypeJSON,
	}
	for _, f := range fields {
		writeField(h, []byte(f))
	}
	writeField(h, e.Data)
	return hex.EncodeToString(h.Sum(nil))
}

func writeField(h hash.Hash, b []byte) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
	h.Write(b)
}

// Seal sets the aggregate version and chain link of events appended after an
// aggregate whose last event had version lastVersion and hash lastHash, and
// computes each event's hash. It returns the hash of the last event.
func Seal(evs []Event, lastVersion uint64, lastHash string) string {
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

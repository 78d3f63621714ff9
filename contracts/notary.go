package contracts

import (
	"strconv"
	"time"
)

// NotaryCheckpointed records a signed checkpoint of the global log: the
// Merkle tree (RFC 6962 / 9162 hashing) over every event up to Position has
// RootHash, signed with the notary's Ed25519 key. The aggregate is the
// notary's log, id "checkpoints" by convention.
type NotaryCheckpointed struct {
	Position   uint64    `json:"position" schema:"min=1" doc:"the last global position covered"`
	TreeSize   uint64    `json:"tree_size" schema:"min=1" doc:"number of leaves of the Merkle tree"`
	RootHash   string    `json:"root_hash" schema:"hex64" doc:"hex SHA-256 Merkle tree root"`
	RecordedAt time.Time `json:"recorded_at" doc:"RFC 3339 server time of the event at position"`
	KeyID      string    `json:"key_id" schema:"hex64" doc:"hex SHA-256 of the Ed25519 public key"`
	PublicKey  string    `json:"public_key" schema:"ed25519key" doc:"standard base64 Ed25519 public key (32 bytes)"`
	Signature  string    `json:"signature" schema:"ed25519sig" doc:"standard base64 Ed25519 signature (64 bytes) over SignedMessage"`
}

// SignedMessage returns the exact bytes the checkpoint's signature covers:
// a versioned, line-based text in the manner of a transparency-log signed
// note, so that a regulator can verify it with any Ed25519 tool.
func (c NotaryCheckpointed) SignedMessage() []byte {
	s := "marketledger-checkpoint/v1\n" +
		strconv.FormatUint(c.Position, 10) + "\n" +
		strconv.FormatUint(c.TreeSize, 10) + "\n" +
		c.RootHash + "\n" +
		c.RecordedAt.UTC().Format(time.RFC3339Nano) + "\n"
	return []byte(s)
}

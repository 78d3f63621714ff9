package notary

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// The notary's aggregate: its checkpoints are events of context "notary",
// aggregate "log", type notary.checkpointed.
var NotaryAggregate = events.AggregateRef{Context: contracts.ServiceNotary, ID: contracts.NotaryAggregateID}

// Key files under the data directory.
const (
	notaryKeyFile = "ed25519.key"
	notaryPubFile = "ed25519.pub"
)

// LoadOrCreateKey returns the notary's Ed25519 key kept in
// dataDir/notary/ed25519.key (the 64-byte private key, mode 0600), creating
// it and dataDir/notary/ed25519.pub (the 32-byte public key) on first start.
// A key file with another size or looser permissions is refused: a notary
// whose key others could read proves nothing.
func LoadOrCreateKey(dataDir string) (ed25519.PrivateKey, error) {
	const op = "projections.LoadOrCreateKey"
	dir := filepath.Join(dataDir, "notary")
	path := filepath.Join(dir, notaryKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, &events.Error{Op: op, Kind: events.KindOther, Err: gerr}
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Field: dir, Err: err}
		}
		// O_EXCL: two processes starting at once must not both write a key.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return LoadOrCreateKey(dataDir)
		}
		_, werr := f.Write(priv)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Field: path, Err: werr}
		}
		pub := priv.Public().(ed25519.PublicKey)
		if err := os.WriteFile(filepath.Join(dir, notaryPubFile), pub, 0o644); err != nil {
			return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Field: notaryPubFile, Err: err}
		}
		return priv, nil
	}
	if err != nil {
		return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Field: path, Err: err}
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, &events.Error{Op: op, Kind: events.KindInvalid, Field: path, Rule: fmt.Sprintf("mode %o: the key must be readable by its owner only (0600)", fi.Mode().Perm())}
	}
	if len(b) != ed25519.PrivateKeySize {
		return nil, &events.Error{Op: op, Kind: events.KindIntegrity, Field: path, Rule: fmt.Sprintf("%d bytes, an Ed25519 private key has %d", len(b), ed25519.PrivateKeySize)}
	}
	return ed25519.PrivateKey(b), nil
}

// KeyID is the hex SHA-256 of a public key.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:])
}

// Notary folds the global log into a Merkle tree, one leaf per event in
// position order (EventLeaf), and appends signed checkpoints of it. It is
// safe for concurrent use.
type Notary struct {
	store Store
	key   ed25519.PrivateKey

	mu        sync.Mutex
	tree      Tree
	positions []uint64 // leaf index -> position
	lastRec   time.Time
	read      uint64 // every position up to read is folded
	version   uint64 // the notary aggregate's version, once loaded
	loaded    bool

	onCheckpoint func(contracts.NotaryCheckpointed, events.Appended)
}

// Store is what the notary reads and appends to: the log and its head.
// *events.JetStreamStore is one.
type Store interface {
	events.Store
	// LastPosition returns the position of the newest event in the log.
	LastPosition(ctx context.Context) (uint64, error)
}

// New returns a notary on store signing with key.
func New(store Store, key ed25519.PrivateKey) *Notary {
	return &Notary{store: store, key: key}
}

// OnCheckpoint has Run call fn after each checkpoint it appends, with the
// checkpoint and where it was appended: `ledger serve` keeps the last one
// in the data directory, as evidence of how long the log was should the
// log itself be shortened or replaced. Call it before Run.
func (n *Notary) OnCheckpoint(fn func(contracts.NotaryCheckpointed, events.Appended)) {
	n.onCheckpoint = fn
}

// PublicKey returns the notary's public key.
func (n *Notary) PublicKey() ed25519.PublicKey { return n.key.Public().(ed25519.PublicKey) }

// Sync folds every event appended since the last Sync and returns the tree
// size and the last position folded.
func (n *Notary) Sync(ctx context.Context) (size, position uint64, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sync(ctx)
}

func (n *Notary) sync(ctx context.Context) (uint64, uint64, error) {
	head, err := n.store.LastPosition(ctx)
	if err != nil {
		return 0, 0, err
	}
	if head > n.read {
		for e, err := range n.store.Read(ctx, events.Query{From: n.read + 1, To: head}) {
			if err != nil {
				return 0, 0, err
			}
			leaf, err := EventLeaf(&e)
			if err != nil {
				return 0, 0, err
			}
			n.tree.Append(LeafHash(leaf))
			n.positions = append(n.positions, e.Position)
			n.lastRec = e.RecordedAt
		}
		n.read = head
	}
	last := uint64(0)
	if k := len(n.positions); k > 0 {
		last = n.positions[k-1]
	}
	return n.tree.Size(), last, nil
}

// Checkpoint folds the log up to its head, signs the tree, and appends the
// checkpoint as a notary.checkpointed event. It returns the checkpoint and
// where it was appended.
func (n *Notary) Checkpoint(ctx context.Context) (contracts.NotaryCheckpointed, events.Appended, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	size, pos, err := n.sync(ctx)
	if err != nil {
		return contracts.NotaryCheckpointed{}, events.Appended{}, err
	}
	if size == 0 {
		return contracts.NotaryCheckpointed{}, events.Appended{}, &events.Error{Op: "projections.Checkpoint", Kind: events.KindNotFound, Rule: "the log holds no event to checkpoint"}
	}
	c, err := n.sign(size, pos, n.lastRec)
	if err != nil {
		return c, events.Appended{}, err
	}
	a, err := n.appendCheckpoint(ctx, c)
	return c, a, err
}

func (n *Notary) sign(size, pos uint64, rec time.Time) (contracts.NotaryCheckpointed, error) {
	root, err := n.tree.Root(size)
	if err != nil {
		return contracts.NotaryCheckpointed{}, err
	}
	pub := n.PublicKey()
	c := contracts.NotaryCheckpointed{Position: pos, TreeSize: size, RootHash: root.String(), RecordedAt: rec.UTC(),
		KeyID: KeyID(pub), PublicKey: base64.StdEncoding.EncodeToString(pub)}
	c.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(n.key, c.SignedMessage()))
	return c, nil
}

// appendCheckpoint appends c after the notary's last checkpoint; another
// notary instance appending first is a conflict it reloads and retries once.
func (n *Notary) appendCheckpoint(ctx context.Context, c contracts.NotaryCheckpointed) (events.Appended, error) {
	typ, ver, data, err := contracts.Encode(c)
	if err != nil {
		return events.Appended{}, err
	}
	for attempt := 0; ; attempt++ {
		if !n.loaded {
			evs, err := n.store.Load(ctx, NotaryAggregate, 0)
			if err != nil {
				return events.Appended{}, err
			}
			n.version, n.loaded = uint64(len(evs)), true
		}
		e := events.Event{ID: events.NewID(), Type: typ, SchemaVersion: ver, Source: contracts.Source(contracts.ServiceNotary),
			AggregateID: NotaryAggregate.ID, OccurredAt: c.RecordedAt, Data: data}
		a, err := n.store.Append(ctx, events.Decision{Aggregate: NotaryAggregate, ExpectedVersion: n.version, Events: []events.Event{e}})
		if err == nil {
			n.version = a.Version
			return a, nil
		}
		n.loaded = false
		if events.KindOf(err) != events.KindConflict || attempt > 0 {
			return events.Appended{}, err
		}
	}
}

// Run appends a checkpoint every interval while the log grows, until ctx
// ends.
func (n *Notary) Run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		head, err := n.store.LastPosition(ctx)
		if err != nil || head == last {
			continue // the log is away or idle: nothing new to sign
		}
		if c, a, err := n.Checkpoint(ctx); err == nil {
			last = a.LastPosition
			if fn := n.onCheckpoint; fn != nil {
				fn(c, a)
			}
		} else if ctx.Err() == nil {
			return err
		}
	}
}

// TreeAt returns the tree size and root covering every event up to
// position pos (folding the log first if needed).
func (n *Notary) TreeAt(ctx context.Context, pos uint64) (uint64, Hash, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if pos > n.read {
		if _, _, err := n.sync(ctx); err != nil {
			return 0, Hash{}, err
		}
	}
	size := uint64(sort.Search(len(n.positions), func(i int) bool { return n.positions[i] > pos }))
	if size == 0 {
		return 0, Hash{}, &events.Error{Op: "projections.TreeAt", Kind: events.KindInvalid, Field: "position", Rule: fmt.Sprintf("no event at or before position %d", pos)}
	}
	root, err := n.tree.Root(size)
	return size, root, err
}

// InclusionProof proves the event at position is in the tree of treeSize
// leaves.
type InclusionProof struct {
	Position  uint64 `json:"position"`
	LeafIndex uint64 `json:"leaf_index"`
	TreeSize  uint64 `json:"tree_size"`
	LeafHash  string `json:"leaf_hash"`
	Path      []Hash `json:"path"`
	Root      string `json:"root"`
}

// Verify checks the proof against a root (from a verified checkpoint) and
// the event itself: its leaf must hash to the proof's leaf.
func (p InclusionProof) Verify(e *events.Event, root Hash) error {
	leaf, err := EventLeaf(e)
	if err != nil {
		return err
	}
	if e.Position != p.Position {
		return fmt.Errorf("%w: event at position %d, proof for %d", ErrProof, e.Position, p.Position)
	}
	return VerifyInclusion(LeafHash(leaf), p.LeafIndex, p.TreeSize, p.Path, root)
}

// Inclusion returns the proof that the event at position is in the tree of
// treeSize leaves.
func (n *Notary) Inclusion(ctx context.Context, position, treeSize uint64) (InclusionProof, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, _, err := n.sync(ctx); err != nil {
		return InclusionProof{}, err
	}
	i := sort.Search(len(n.positions), func(i int) bool { return n.positions[i] >= position })
	if i == len(n.positions) || n.positions[i] != position {
		return InclusionProof{}, &events.Error{Op: "projections.Inclusion", Kind: events.KindNotFound, Field: "position", Rule: fmt.Sprintf("no event at position %d", position)}
	}
	path, err := n.tree.InclusionProof(uint64(i), treeSize)
	if err != nil {
		return InclusionProof{}, &events.Error{Op: "projections.Inclusion", Kind: events.KindInvalid, Field: "tree_size", Rule: err.Error()}
	}
	root, _ := n.tree.Root(treeSize)
	return InclusionProof{Position: position, LeafIndex: uint64(i), TreeSize: treeSize,
		LeafHash: n.tree.levels[0][i].String(), Path: path, Root: root.String()}, nil
}

// Consistency returns the proof that the tree of oldSize leaves is a prefix
// of the tree of newSize leaves.
func (n *Notary) Consistency(ctx context.Context, oldSize, newSize uint64) ([]Hash, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, _, err := n.sync(ctx); err != nil {
		return nil, err
	}
	p, err := n.tree.ConsistencyProof(oldSize, newSize)
	if err != nil {
		return nil, &events.Error{Op: "projections.Consistency", Kind: events.KindInvalid, Field: "tree_size", Rule: err.Error()}
	}
	return p, nil
}

// VerifyCheckpoint checks a checkpoint's signature with the key it names,
// that the key is trusted when trusted is not nil, and returns its root.
func VerifyCheckpoint(c contracts.NotaryCheckpointed, trusted ed25519.PublicKey) (Hash, error) {
	const op = "projections.VerifyCheckpoint"
	bad := func(field, rule string) error {
		return &events.Error{Op: op, Kind: events.KindIntegrity, Field: field, Rule: rule}
	}
	pub, err := base64.StdEncoding.DecodeString(c.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return Hash{}, bad("public_key", "not a base64 Ed25519 public key")
	}
	if KeyID(pub) != c.KeyID {
		return Hash{}, bad("key_id", "does not match the public key")
	}
	if trusted != nil && !trusted.Equal(ed25519.PublicKey(pub)) {
		return Hash{}, bad("public_key", "signed by key "+c.KeyID+", not by the trusted key "+KeyID(trusted))
	}
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	if err != nil || !ed25519.Verify(pub, c.SignedMessage(), sig) {
		return Hash{}, bad("signature", "does not verify over the checkpoint")
	}
	root, err := ParseHash(c.RootHash)
	if err != nil {
		return Hash{}, bad("root_hash", err.Error())
	}
	return root, nil
}

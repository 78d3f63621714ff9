package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/notary"
)

// The log cannot shrink (docs/adr/0012-the-log-cannot-shrink.md): the
// stream denies deletes and purges, and no credential in the data directory
// may change or delete it. What remains is a log shortened by whoever holds
// more (a break-glass administrator, a cluster's own administrator, someone
// with the files): `ledger serve`, /readyz and `ledger stream` compare the
// stream with what the ledger itself recorded of it, and refuse a stream
// that holds less.

// watermarkFile, in the data directory, is the ledger's own record of how
// long its log was: the highest position it saw in the stream and the
// notary's last signed checkpoint. It lives outside the stream so that it
// survives a stream that is deleted and created again empty (which takes
// the notary's checkpoints with it), and outside the read models' bucket
// so that it survives that bucket too.
const watermarkFile = "ledger-watermark.json"

// watermark is the layout of watermarkFile. It only ever grows.
type watermark struct {
	Stream string `json:"stream"`
	// Position is the highest position this ledger saw in the stream.
	Position uint64 `json:"position"`
	// Notary is the last checkpoint the notary signed, NotaryPosition
	// where it was appended and NotaryEventID the event's id, so that a
	// stream filled again past that position is told from the original.
	Notary         *contracts.NotaryCheckpointed `json:"notary,omitempty"`
	NotaryPosition uint64                        `json:"notary_position,omitempty"`
	NotaryEventID  string                        `json:"notary_event_id,omitempty"`
}

// watermarkMu serialises the process's writers of the watermark file (the
// notary's hook, serve's start and stop).
var watermarkMu sync.Mutex

func readWatermark(dataDir string) (watermark, error) {
	var w watermark
	path := filepath.Join(dataDir, watermarkFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return w, nil
	}
	if err != nil {
		return w, fmt.Errorf("%s: %w", path, err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return w, fmt.Errorf("%s: not a watermark record (%v): restore it from a backup; deleting it throws away the evidence of how long the log was", path, err)
	}
	return w, nil
}

// raiseWatermark records that the log held position (and, when c is not
// nil, the notary's checkpoint c appended at notaryAt as event id). It
// never lowers what is recorded, and replaces the file atomically after an
// fsync, so a crash leaves the old record or the new one.
func raiseWatermark(dataDir string, position uint64, c *contracts.NotaryCheckpointed, notaryAt uint64, id string) error {
	watermarkMu.Lock()
	defer watermarkMu.Unlock()
	w, err := readWatermark(dataDir)
	if err != nil {
		return err
	}
	changed := false
	if w.Stream != events.StreamName {
		w.Stream, changed = events.StreamName, true
	}
	if position > w.Position {
		w.Position, changed = position, true
	}
	if c != nil && notaryAt > w.NotaryPosition {
		w.Notary, w.NotaryPosition, w.NotaryEventID, changed = c, notaryAt, id, true
		w.Position = max(w.Position, notaryAt)
	}
	if !changed {
		return nil
	}
	b, err := json.MarshalIndent(w, "", "  ")
	if err != nil {
		return err
	}
	return writeFileSynced(filepath.Join(dataDir, watermarkFile), append(b, '\n'))
}

// writeFileSynced replaces path with b: a temporary file, fsynced, renamed
// over path, and the directory fsynced so that the rename is durable too.
func writeFileSynced(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(b)
	if err := tmp.Sync(); werr == nil {
		werr = err
	}
	if err := tmp.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		return fmt.Errorf("write %s: %w", path, werr)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// recordCheckpoint raises the watermark to the notary's checkpoint c,
// appended as a; it reads the appended event's id back from the stream.
func recordCheckpoint(ctx context.Context, js jetstream.JetStream, dataDir string, c contracts.NotaryCheckpointed, a events.Appended) error {
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return err
	}
	m, err := s.GetMsg(ctx, a.LastPosition)
	if err != nil {
		return err
	}
	return raiseWatermark(dataDir, a.LastPosition, &c, a.LastPosition, m.Header.Get(nats.MsgIdHdr))
}

// raiseWatermarkToHead records the stream's current last position.
func raiseWatermarkToHead(ctx context.Context, js jetstream.JetStream, dataDir string) error {
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return err
	}
	return raiseWatermark(dataDir, s.CachedInfo().State.LastSeq, nil, 0, "")
}

// claim is one record saying the log once reached a position.
type claim struct {
	position uint64
	what     string // says who recorded it, to name in a refusal
}

// historyError says how the stream falls short of what the ledger
// recorded of it.
type historyError struct {
	held     string   // "stream LEDGER holds positions 1..3"
	problems []string // each a missing part, named by who knew of it
}

func (e *historyError) Error() string {
	return e.held + " but " + strings.Join(e.problems, "; ") + ": history is missing"
}

// evidence is what the ledger recorded of its log's length: every
// committed read-model checkpoint and the watermark file.
type evidence struct {
	claims []claim
	w      watermark
	// forged says why the watermark's notary checkpoint does not verify
	// ("" when it does or there is none).
	forged string
}

func gatherEvidence(ctx context.Context, js jetstream.JetStream, dataDir string) (evidence, error) {
	var ev evidence
	ckpts, err := projections.CommittedCheckpoints(ctx, js)
	if err != nil {
		return ev, fmt.Errorf("read the read models' checkpoints: %w", err)
	}
	for _, c := range ckpts {
		ev.claims = append(ev.claims, claim{c.Position, fmt.Sprintf("projection '%s' (v%d) has applied up to position %d", c.Model, c.Version, c.Position)})
	}
	if ev.w, err = readWatermark(dataDir); err != nil {
		return ev, err
	}
	if w := ev.w; w.Notary != nil {
		ev.claims = append(ev.claims, claim{w.NotaryPosition, fmt.Sprintf("the notary signed a tree of %d events up to position %d (its checkpoint is at position %d, %s)",
			w.Notary.TreeSize, w.Notary.Position, w.NotaryPosition, watermarkFile)})
		if err := verifyWatermark(dataDir, w); err != nil {
			ev.forged = err.Error()
		}
	}
	if ev.w.Position > 0 {
		ev.claims = append(ev.claims, claim{ev.w.Position, fmt.Sprintf("this ledger saw position %d (%s)", ev.w.Position, watermarkFile)})
	}
	return ev, nil
}

// checkHistory compares the LEDGER stream with what the ledger recorded of
// it (judge). A data directory with nothing recorded and no stream is
// fine: a new ledger.
func checkHistory(ctx context.Context, js jetstream.JetStream, dataDir string) error {
	ev, err := gatherEvidence(ctx, js, dataDir)
	if err != nil {
		return err
	}
	return judge(ctx, js, ev)
}

// judge reports, in one error, every way the stream holds less than ev
// says it held: no stream at all, settings that drop messages, a first
// position other than 1, deleted positions, a last position before a
// checkpoint or the watermark, or a notary checkpoint that is not where it
// was appended.
func judge(ctx context.Context, js jetstream.JetStream, ev evidence) error {
	// On a cluster the stream may have been created by another process a
	// moment ago and have no leader yet: wait for it (bounded).
	wctx, cancel := context.WithTimeout(ctx, events.LeaderWaitMax)
	defer cancel()
	s, err := events.WaitStreamLeader(wctx, js, events.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if len(ev.claims) == 0 {
			return nil
		}
		return &historyError{held: "stream " + events.StreamName + " does not exist", problems: whats(ev.claims)}
	}
	if err != nil {
		return fmt.Errorf("read stream %s: %w", events.StreamName, err)
	}
	st := s.CachedInfo().State
	e := &historyError{held: held(st)}
	if err := events.CheckStreamConfig(s.CachedInfo().Config); err != nil {
		e.problems = append(e.problems, err.Error())
	}
	if st.LastSeq > 0 && st.FirstSeq != 1 {
		e.problems = append(e.problems, fmt.Sprintf("positions 1..%d are gone (the stream denies deletes: only a limit or a break-glass change removes them)", st.FirstSeq-1))
	}
	if st.NumDeleted > 0 {
		e.problems = append(e.problems, fmt.Sprintf("%d positions inside it were deleted", st.NumDeleted))
	}
	for _, c := range ev.claims {
		if c.position > st.LastSeq {
			e.problems = append(e.problems, c.what)
		}
	}
	if len(e.problems) == 0 {
		if p := notaryReplaced(ctx, s, ev.w); p != "" {
			e.problems = append(e.problems, p)
		}
	}
	if ev.forged != "" {
		e.problems = append(e.problems, ev.forged)
	}
	if len(e.problems) > 0 {
		return e
	}
	return nil
}

func held(st jetstream.StreamState) string {
	if st.LastSeq == 0 || st.Msgs == 0 {
		return fmt.Sprintf("stream %s holds no events", events.StreamName)
	}
	return fmt.Sprintf("stream %s holds positions %d..%d", events.StreamName, st.FirstSeq, st.LastSeq)
}

func whats(cl []claim) []string {
	out := make([]string, len(cl))
	for i, c := range cl {
		out[i] = c.what
	}
	return out
}

// notaryReplaced reports a stream that reaches the notary's last recorded
// checkpoint but holds another message there: a log deleted and filled
// again, not the one the notary signed.
func notaryReplaced(ctx context.Context, s jetstream.Stream, w watermark) string {
	if w.NotaryPosition == 0 || w.NotaryEventID == "" {
		return ""
	}
	m, err := s.GetMsg(ctx, w.NotaryPosition)
	if err != nil {
		return fmt.Sprintf("position %d, where the notary's checkpoint was appended (%s), cannot be read: %v", w.NotaryPosition, watermarkFile, err)
	}
	if got := m.Header.Get(nats.MsgIdHdr); got != w.NotaryEventID {
		return fmt.Sprintf("position %d holds event %q, not the notary's checkpoint %q recorded in %s: the stream was replaced", w.NotaryPosition, got, w.NotaryEventID, watermarkFile)
	}
	return ""
}

// verifyWatermark checks the recorded notary checkpoint's signature, with
// the data directory's notary key when it is there.
func verifyWatermark(dataDir string, w watermark) error {
	if w.Notary == nil {
		return nil
	}
	var trusted ed25519.PublicKey
	if b, err := os.ReadFile(filepath.Join(dataDir, "notary", "ed25519.pub")); err == nil && len(b) == ed25519.PublicKeySize {
		trusted = b
	}
	if _, err := notary.VerifyCheckpoint(*w.Notary, trusted); err != nil {
		return fmt.Errorf("the notary checkpoint recorded in %s does not verify (%v)", watermarkFile, err)
	}
	return nil
}

// watermarkEvery is how often `ledger serve` records the log's last
// position in the watermark file (tests shorten it).
var watermarkEvery = 10 * time.Second

// keepWatermark records the log's last position every watermarkEvery, and
// once more when ctx ends (a clean stop), so that the record is at most
// that far behind the log even when the process is killed.
func keepWatermark(ctx context.Context, js jetstream.JetStream, dataDir string, log *zap.Logger) {
	t := time.NewTicker(watermarkEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := raiseWatermarkToHead(sctx, js, dataDir); err != nil {
				log.Warn("could not record the log's length", zap.String("file", watermarkFile), zap.Error(err))
			}
			return
		case <-t.C:
		}
		if err := raiseWatermarkToHead(ctx, js, dataDir); err != nil && ctx.Err() == nil {
			log.Warn("could not record the log's length", zap.String("file", watermarkFile), zap.Error(err))
		}
	}
}

// historyGuard judges the stream on every /readyz, but gathers the
// evidence (listing the read models' checkpoints, reading the watermark
// file) at most once per historyEvery, so that probes, which need no
// token, cannot make the server do that without bound.
type historyGuard struct {
	js      jetstream.JetStream
	dataDir string

	mu sync.Mutex
	at time.Time
	ev evidence
}

const historyEvery = time.Second

func (h *historyGuard) check(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.at.IsZero() || time.Since(h.at) >= historyEvery {
		ev, err := gatherEvidence(ctx, h.js, h.dataDir)
		if err != nil {
			return err
		}
		h.ev, h.at = ev, time.Now()
	}
	return judge(ctx, h.js, h.ev)
}

package scenario

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/testkit"
	"github.com/nats-io/nats.go/jetstream"
)

// faultRunDefault is how long the fault bench loads the cluster; the
// LEDGER_FAULT_SECONDS variable sets another length for a longer bench.
const faultRunDefault = 30 * time.Second

// stepdownEvery is the pause between two stream leader stepdowns.
const stepdownEvery = 3 * time.Second

// faultClients is how many clients the bench runs: checkout loops, two of
// them out of the freezes' scope, and freeze loops.
const (
	faultCheckouts = 60
	faultControls  = 2
	faultFreezers  = 2
	faultLoads     = 6 // each with its own ten listings
)

// stepdownStallMax bounds the longest command issued around a stepdown,
// stepdownP99Max the p99 of those commands, and recoveryMax how long any
// command issued around a fault still takes once the new leader leads (or
// the restarted node caught up). A SIGKILL's election itself is the
// servers' Raft election time-out, 4 to 9 s, which the ledger cannot
// shorten: it is printed, not bounded. The bounds are loose on purpose (the
// target is 2 s; the bench prints the figures): a loaded machine or the
// race detector must not make the test flaky, while a batch lost in a
// leader change used to wait out the 10 s batch time-out, and a policy view
// that lost its consumer with a killed node used to come back up to 11 s
// after the new leader (docs/performance.md, "Leader changes").
const (
	stepdownStallMax = 8 * time.Second
	stepdownP99Max   = 8 * time.Second
	recoveryMax      = 6 * time.Second
)

// aroundChange is how far before and after a leader change a command counts
// as issued during it.
const aroundChange = 500 * time.Millisecond

// leaderChange is one fault: from the moment it was injected until the
// cluster had a new stream leader that clients could reach, or, for a
// restart (not a leader change), until the restarted node caught up.
type leaderChange struct {
	Kind       string    `json:"kind"` // stepdown, kill, restart
	Start, End time.Time `json:"-"`
	ElectionMs int64     `json:"election_ms"` // restart: until caught up
	StallMs    int64     `json:"stall_ms"`    // the longest command issued around it
	// RecoveryMs is the longest that a command issued around the change
	// still took once the new leader led (restart: once the node caught
	// up): what the ledger adds to the cluster's own election.
	RecoveryMs int64 `json:"recovery_ms"`
	Commands   int   `json:"commands"` // commands issued around it
}

// sentCommand is one command as its client saw it, retries included.
type sentCommand struct {
	what           string // the step or freeze command, and the instance that took it
	key            string // idempotency key; "" for a command that failed
	issued, done   time.Time
	failed, frozen bool
}

// faultReport is the BENCH_JSON line of the fault bench.
type faultReport struct {
	Nodes             int            `json:"nodes"`
	Clients           int            `json:"clients"`
	Seconds           float64        `json:"seconds"`
	Commands          int            `json:"commands"`
	CommandsPerSecond float64        `json:"commands_per_s"`
	Refused           int            `json:"refused"`
	P50Ms             float64        `json:"p50_ms"`
	P99Ms             float64        `json:"p99_ms"`
	MaxMs             float64        `json:"max_ms"`
	ChangeCommands    int            `json:"change_commands"`
	ChangeP99Ms       float64        `json:"change_p99_ms"`
	ChangeMaxMs       float64        `json:"change_max_ms"`
	StepdownP99Ms     float64        `json:"stepdown_p99_ms"` // commands issued around a stepdown
	StepdownMaxMs     float64        `json:"stepdown_max_ms"`
	KillP99Ms         float64        `json:"kill_p99_ms"` // commands issued around the SIGKILL or caught in it
	KillMaxMs         float64        `json:"kill_max_ms"`
	RestartP99Ms      float64        `json:"restart_p99_ms"` // commands issued around the restart
	RestartMaxMs      float64        `json:"restart_max_ms"`
	Failed            int            `json:"failed"`
	Changes           []leaderChange `json:"changes"`
}

// TestLeaderChangesUnderLoad is the fault bench: three nats-server
// processes (fsync always), 64 clients (checkouts and freezes) across three
// service instances, the stream leader asked to step down every few
// seconds, and once the leader's process killed with SIGKILL and restarted
// on its store. It prints the figures as a BENCH_JSON line and asserts from
// the raw log that no acknowledged command is missing, nothing was stored
// twice and the freezes held (the independent judge), that no command
// failed, and, loosely, how long commands issued around a change took.
func TestLeaderChangesUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster under load")
	}
	run := faultRunDefault
	if s, err := strconv.Atoi(os.Getenv("LEDGER_FAULT_SECONDS")); err == nil && s > 0 {
		run = time.Duration(s) * time.Second
	}
	seed := Seeds(1)[0]
	t.Logf("seed %d (LEDGER_SCENARIO_SEED replays it)", seed)
	c := testkit.StartProcCluster(t, 3)
	ins := clusterInstances(t, c, 3)
	ctx, cancel := context.WithTimeout(t.Context(), run+60*time.Second)
	defer cancel()

	// Several loads, each on its own listings and category, so that 62
	// buyers contend on 60 listings as a marketplace's do, not on eight.
	var loads []*Load
	var stops []func()
	var categories []string
	for i := range faultLoads {
		id := fmt.Sprintf("%s%d", runID(seed), i)
		l := &Load{RunID: id, Category: "cat-" + id, Instances: ins, Loops: faultCheckouts / faultLoads, Seed: seed + uint64(i)}
		if i == 0 {
			l.Control = faultControls
		}
		if err := CreateListings(ctx, ins[i%len(ins)], l.Listings()...); err != nil {
			t.Fatal(err)
		}
		loads = append(loads, l)
		categories = append(categories, l.Category)
	}
	began := time.Now()
	for _, l := range loads {
		stops = append(stops, l.Run(ctx))
	}
	fz := &freezers{instances: ins, categories: categories, runID: runID(seed)}
	stopFreezers := fz.run(ctx, seed)
	var changes []leaderChange
	var err error
	if os.Getenv("LEDGER_FAULT_NONE") != "" {
		pause(ctx, run) // the same load without faults: the baseline
	} else {
		changes, err = injectFaults(ctx, t, c, run)
	}
	stopFreezers()
	for _, stop := range stops {
		stop()
	}
	elapsed := time.Since(began)
	if err != nil {
		t.Fatalf("fault injection: %v", err)
	}
	cmds := fz.commands()
	checkouts := 0
	for _, l := range loads {
		cmds = append(cmds, loadCommands(l)...)
		checkouts += len(l.Checkouts)
		for _, err := range l.Errs {
			t.Errorf("command failed: %v", err)
		}
	}
	rep := summarize(cmds, changes, elapsed)
	line, _ := json.Marshal(rep)
	fmt.Printf("BENCH_JSON %s\n", line)
	t.Logf("BENCH_JSON %s", line)

	logSlowest(t, cmds, changes, 8)
	for _, err := range fz.errs {
		t.Errorf("command failed: %v", err)
	}
	if rep.StepdownMaxMs > float64(stepdownStallMax.Milliseconds()) {
		t.Errorf("a command issued around a stepdown took %.0f ms, want at most %s", rep.StepdownMaxMs, stepdownStallMax)
	}
	if rep.StepdownP99Ms > float64(stepdownP99Max.Milliseconds()) {
		t.Errorf("p99 of the commands issued around a stepdown is %.0f ms, want at most %s", rep.StepdownP99Ms, stepdownP99Max)
	}
	for _, ch := range rep.Changes {
		if ch.RecoveryMs > recoveryMax.Milliseconds() {
			t.Errorf("a command issued around a %s took %d ms more once the cluster had recovered (%d ms after the fault), want at most %s",
				ch.Kind, ch.RecoveryMs, ch.ElectionMs, recoveryMax)
		}
	}
	if os.Getenv("LEDGER_FAULT_NONE") == "" {
		kinds := map[string]int{}
		for _, ch := range changes {
			kinds[ch.Kind]++
		}
		if kinds["stepdown"] < 2 || kinds["kill"] != 1 || kinds["restart"] != 1 {
			t.Errorf("faults injected: %v, want stepdowns, one kill and one restart", kinds)
		}
	}
	if checkouts == 0 || len(fz.cmds) == 0 {
		t.Fatalf("%d checkouts and %d freeze commands completed: the run proves nothing", checkouts, len(fz.cmds))
	}
	// The last stepdown may be a moment old: read once the stream leads.
	if err := c.WaitStreamReady(ctx); err != nil {
		t.Fatal(err)
	}
	judgeStored(t, ctx, ins[0].Store, cmds)
}

// injectFaults steps the stream leader down a beat (stepdownEvery) after
// the previous fault settled; from half the run on, it kills the leader's
// node with SIGKILL instead, steps down once more with that node down, then
// restarts it on its store, and goes on stepping down. A beat is left
// between a fault and the next, and after the last one before the load
// stops, so that each has its own commands around it. It returns when the
// run is over and every fault has been injected, whichever is later.
func injectFaults(ctx context.Context, t *testing.T, c *testkit.ProcCluster, run time.Duration) ([]leaderChange, error) {
	var out []leaderChange
	began := time.Now()
	end, killAt := began.Add(run), began.Add(run/2)
	killed, restarted := -1, false
	for last := began; ; {
		next := last.Add(stepdownEvery)
		if next.After(end.Add(-stepdownEvery/2)) && (killed < 0 || restarted) {
			break // the killed node, if any, is back
		}
		pause(ctx, time.Until(next))
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		var ch leaderChange
		var err error
		switch {
		case killed < 0 && !next.Before(killAt):
			ch, killed, err = killLeader(ctx, t, c)
		case killed >= 0 && !restarted && out[len(out)-1].Kind != "kill":
			ch, err = restartNode(ctx, t, c, killed)
			restarted = true
		default:
			ch, err = stepDown(ctx, t, c)
		}
		if err != nil {
			return out, err
		}
		out = append(out, ch)
		last = ch.End
	}
	if len(out) > 0 {
		end = later(end, out[len(out)-1].End.Add(stepdownEvery))
	}
	pause(ctx, time.Until(end))
	return out, ctx.Err()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// faultWaitMax bounds the wait for one fault's effect: an election, a
// restarted node's catch-up.
const faultWaitMax = 30 * time.Second

// stepDown asks the stream leader to step down and waits until another node
// leads.
func stepDown(ctx context.Context, t *testing.T, c *testkit.ProcCluster) (leaderChange, error) {
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, faultWaitMax)
	defer cancel()
	leader, err := c.StepDownStreamLeader(sctx)
	if err != nil {
		return leaderChange{}, err
	}
	ch := leaderChange{Kind: "stepdown", Start: start, End: time.Now()}
	ch.ElectionMs = ch.End.Sub(start).Milliseconds()
	t.Logf("stepdown at %s: %s leads after %s", start.Format("15:04:05.000"), leader, ch.End.Sub(start))
	return ch, nil
}

// killLeader sends SIGKILL to the process of the stream leader's node and
// waits until another node leads. It returns the killed node's index.
func killLeader(ctx context.Context, t *testing.T, c *testkit.ProcCluster) (leaderChange, int, error) {
	wctx, cancel := context.WithTimeout(ctx, faultWaitMax)
	defer cancel()
	start := time.Now()
	i, leader, err := c.KillStreamLeader(wctx)
	if err != nil {
		return leaderChange{}, -1, err
	}
	ch := leaderChange{Kind: "kill", Start: start, End: time.Now()}
	ch.ElectionMs = ch.End.Sub(start).Milliseconds()
	t.Logf("SIGKILL of %s at %s: %s leads after %s", c.Nodes[i].Name, start.Format("15:04:05.000"), leader, ch.End.Sub(start))
	return ch, i, nil
}

// restartNode starts the killed node again on its store and waits until it
// has caught up with the stream.
func restartNode(ctx context.Context, t *testing.T, c *testkit.ProcCluster, i int) (leaderChange, error) {
	wctx, cancel := context.WithTimeout(ctx, faultWaitMax)
	defer cancel()
	start := time.Now()
	if err := c.RestartNode(wctx, i); err != nil {
		return leaderChange{}, fmt.Errorf("restart %s: %w", c.Nodes[i].Name, err)
	}
	ch := leaderChange{Kind: "restart", Start: start, End: time.Now()}
	ch.ElectionMs = ch.End.Sub(start).Milliseconds()
	t.Logf("%s restarted on its store (pid %d) at %s, caught up after %s", c.Nodes[i].Name, c.Nodes[i].Pid(),
		start.Format("15:04:05.000"), ch.End.Sub(start))
	return ch, nil
}

// freezers impose and lift freezes of one category in loops, as a
// regulator's bursts would, each command with its idempotency key.
type freezers struct {
	instances  []*Instance
	categories []string
	runID      string

	mu   sync.Mutex
	cmds []sentCommand
	errs []error
}

func (f *freezers) run(ctx context.Context, seed uint64) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range faultFreezers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(1000+w)))
			for n := 0; ctx.Err() == nil; n++ {
				rule := fmt.Sprintf("fz-%s-%d-%04d", f.runID, w, n)
				in := f.instances[rng.IntN(len(f.instances))]
				issued := time.Now()
				category := f.categories[rng.IntN(len(f.categories))]
				_, _, err := ImposeFreeze(ctx, in, Freeze(rule, category, time.Time{}))
				if !f.record("impose:"+rule, issued, err, ctx) {
					return
				}
				pause(ctx, time.Duration(100+rng.IntN(200))*time.Millisecond)
				issued = time.Now()
				_, _, err = LiftFreeze(ctx, f.instances[rng.IntN(len(f.instances))], rule, time.Time{})
				if !f.record("lift:"+rule, issued, err, ctx) {
					return
				}
				pause(ctx, time.Duration(1000+rng.IntN(1000))*time.Millisecond)
			}
		})
	}
	return func() { cancel(); wg.Wait() }
}

// pause paces a freeze loop (a regulator does not freeze back to back).
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// record keeps a freeze command's outcome and reports whether the loop goes
// on. A command cut short by the end of the run says nothing.
func (f *freezers) record(key string, issued time.Time, err error, ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.errs = append(f.errs, fmt.Errorf("%s: %w", key, err))
		f.cmds = append(f.cmds, sentCommand{what: key, issued: issued, done: time.Now(), failed: true})
		return false
	}
	f.cmds = append(f.cmds, sentCommand{what: key, key: key, issued: issued, done: time.Now()})
	return true
}

func (f *freezers) commands() []sentCommand {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cmds)
}

// loadCommands returns every step of the load's finished checkouts.
func loadCommands(l *Load) []sentCommand {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []sentCommand
	for _, c := range append(slices.Clone(l.Checkouts), l.Controls...) {
		for _, s := range c.Steps {
			cmd := sentCommand{what: s.Name + "@" + s.Instance, issued: s.Issued, done: s.Done, frozen: events.KindOf(s.Err) == events.KindFrozen}
			switch {
			case s.Err == nil:
				cmd.key = checkout.StepKey(c.OrderID, stepKeys[s.Name])
			case !cmd.frozen && !IsNoStock(s.Err):
				cmd.failed = true
			}
			out = append(out, cmd)
		}
	}
	return out
}

// stepKeys names each checkout step as its idempotency key does (Run).
var stepKeys = map[string]string{StepPlace: "place", StepReserve: "reserve", StepAuthorize: "authorize",
	StepCapture: "capture", StepConfirm: "confirm", StepVoid: "void", StepRelease: "release",
	StepCancel: "cancel", StepReject: "reject"}

// summarize computes the bench's figures over the commands that went to the
// log (acknowledged or failed): latency is from a command's first send to
// its final answer, retries included, as its caller waits.
func summarize(cmds []sentCommand, changes []leaderChange, elapsed time.Duration) faultReport {
	rep := faultReport{Nodes: 3, Clients: faultCheckouts + faultControls + faultFreezers, Seconds: elapsed.Seconds()}
	var all, around []time.Duration
	byKind := map[string][]time.Duration{}
	for _, c := range cmds {
		if c.failed {
			rep.Failed++
		}
		if c.key == "" && !c.failed {
			// A refusal (frozen, out of stock) appends nothing and is
			// answered from the service's view at once: it would only
			// dilute the latency of the commands that go to the log.
			rep.Refused++
			continue
		}
		d := c.done.Sub(c.issued)
		all = append(all, d)
		near := map[string]bool{}
		for _, i := range changesAround(c, changes) {
			ch := &changes[i]
			near[ch.Kind] = true
			ch.Commands++
			ch.StallMs = max(ch.StallMs, d.Milliseconds())
			ch.RecoveryMs = max(ch.RecoveryMs, c.done.Sub(later(c.issued, ch.End)).Milliseconds())
		}
		if near["stepdown"] || near["kill"] {
			around = append(around, d)
		}
		for kind := range near {
			byKind[kind] = append(byKind[kind], d)
		}
	}
	rep.Commands = len(all)
	rep.CommandsPerSecond = float64(len(all)) / elapsed.Seconds()
	rep.P50Ms, rep.P99Ms, rep.MaxMs = quantileMs(all, 0.50), quantileMs(all, 0.99), quantileMs(all, 1)
	rep.ChangeCommands = len(around)
	rep.ChangeP99Ms, rep.ChangeMaxMs = quantileMs(around, 0.99), quantileMs(around, 1)
	rep.StepdownP99Ms, rep.StepdownMaxMs = quantileMs(byKind["stepdown"], 0.99), quantileMs(byKind["stepdown"], 1)
	rep.KillP99Ms, rep.KillMaxMs = quantileMs(byKind["kill"], 0.99), quantileMs(byKind["kill"], 1)
	rep.RestartP99Ms, rep.RestartMaxMs = quantileMs(byKind["restart"], 0.99), quantileMs(byKind["restart"], 1)
	rep.Changes = changes
	return rep
}

// changesAround returns the indexes of the changes c counts for: those it
// was issued around, or a kill it was still waiting for when the node died.
// A kill's election is the longest wait of all; a command caught in it
// counts for the kill alone, not for a stepdown it was issued around.
func changesAround(c sentCommand, changes []leaderChange) []int {
	var out, kills []int
	for i, ch := range changes {
		issuedNear := !c.issued.Before(ch.Start.Add(-aroundChange)) && !c.issued.After(ch.End.Add(aroundChange))
		caught := ch.Kind == "kill" && c.issued.Before(ch.Start) && c.done.After(ch.Start)
		switch {
		case ch.Kind == "kill" && (issuedNear || caught):
			kills = append(kills, i)
		case issuedNear:
			out = append(out, i)
		}
	}
	if len(kills) > 0 {
		return kills
	}
	return out
}

// logSlowest logs, for each change other than a stepdown, the n slowest
// commands issued around it: when each was issued and answered, relative to
// the fault's injection and to the new leader's (or the catch-up's) moment.
func logSlowest(t *testing.T, cmds []sentCommand, changes []leaderChange, n int) {
	for _, ch := range changes {
		if ch.Kind == "stepdown" {
			continue
		}
		var near []sentCommand
		for _, c := range cmds {
			if (c.key != "" || c.failed) && slices.ContainsFunc(changesAround(c, changes), func(i int) bool { return changes[i].Start.Equal(ch.Start) }) {
				near = append(near, c)
			}
		}
		slices.SortFunc(near, func(a, b sentCommand) int { return cmp.Compare(b.done.Sub(b.issued), a.done.Sub(a.issued)) })
		for _, c := range near[:min(n, len(near))] {
			t.Logf("%s: %s issued at %+.3fs from the fault, took %s, answered %+.3fs after it settled",
				ch.Kind, c.what, c.issued.Sub(ch.Start).Seconds(), c.done.Sub(c.issued).Round(time.Millisecond), c.done.Sub(ch.End).Seconds())
		}
	}
}

// quantileMs returns the q-quantile of ds in milliseconds (nearest rank).
func quantileMs(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := min(len(s)-1, max(0, int(q*float64(len(s))+0.5)-1))
	return float64(s[i].Microseconds()) / 1000
}

// judgeStored reads the raw log and fails t for an acknowledged command
// whose idempotency record is missing (its decision was lost: the record is
// stored in the same atomic batch as the events), for a record stored twice,
// and for everything the independent judge finds: an event id stored twice,
// a freeze violation, a broken chain or a gap.
func judgeStored(t *testing.T, ctx context.Context, st *events.JetStreamStore, cmds []sentCommand) {
	t.Helper()
	// Right after the last stepdown a request may meet no responders for a
	// moment: read again, bounded.
	var keys map[string]int
	var err error
	for range 20 {
		if keys, err = idempotencyKeys(ctx, st.JetStream()); err == nil {
			break
		}
		t.Logf("read idempotency records: %v; again", err)
		pause(ctx, 500*time.Millisecond)
	}
	if err != nil {
		t.Fatalf("read idempotency records: %v", err)
	}
	lost, doubled, acked := 0, 0, 0
	for _, c := range cmds {
		if c.key == "" {
			continue
		}
		acked++
		if keys[c.key] == 0 {
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged command %s is not in the log", c.key)
			}
		}
	}
	for k, n := range keys {
		if n > 1 {
			doubled++
			t.Errorf("command %s stored %d times", k, n)
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged commands are not in the log", lost, acked)
	}
	r := judgeRaw(t, ctx, st)
	t.Logf("raw log: %d acknowledged commands all stored: %v, %d stored twice, judge: %s", acked, lost == 0, doubled, r.Summary())
}

// idempotencyKeys counts the idempotency records of the log by key, read
// from the raw stream.
func idempotencyKeys(ctx context.Context, js jetstream.JetStream) (map[string]int, error) {
	c, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectPrefix + "*._idem.*"}})
	if err != nil {
		return nil, err
	}
	keys := map[string]int{}
	for {
		msgs, err := c.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		n, pending := 0, uint64(0)
		for m := range msgs.Messages() {
			n++
			var rec struct {
				Key string `json:"key"`
			}
			if err := json.Unmarshal(m.Data(), &rec); err != nil {
				return nil, fmt.Errorf("%s: %w", m.Subject(), err)
			}
			keys[rec.Key]++
			if md, err := m.Metadata(); err == nil {
				pending = md.NumPending
			}
		}
		if msgs.Error() != nil {
			return nil, msgs.Error()
		}
		if n == 0 || pending == 0 {
			return keys, nil
		}
	}
}

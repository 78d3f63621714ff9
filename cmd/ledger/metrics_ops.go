package main

import (
	"context"
	"errors"
	"maps"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/subscriber"
	"github.com/marketledger/ledger/services/checkout"
)

// storeMetrics are the append path's histograms, fed by every store the
// node opens (events.Observer).
type storeMetrics struct {
	appends       *prometheus.HistogramVec
	batchDuration prometheus.Histogram
	batchSize     prometheus.Histogram
}

// Batch sizes from one decision to the committer's most (events.MaxBatchMsgs
// messages): powers of two.
var batchBuckets = prometheus.ExponentialBuckets(1, 2, 10)

func newStoreMetrics() *storeMetrics {
	return &storeMetrics{
		appends: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ledger_append_duration_seconds",
			Help: "Appends of one decision, from the call to the log's answer, by outcome (ok, or the error's kind)", Buckets: latencyBuckets},
			[]string{"outcome"}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ledger_append_batch_duration_seconds",
			Help: "Group-commit batches, from sending to settling every decision in them", Buckets: latencyBuckets}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ledger_append_batch_decisions",
			Help: "Decisions per group-commit batch: above 1 under load is the group commit at work", Buckets: batchBuckets}),
	}
}

// Appended implements events.Observer.
func (m *storeMetrics) Appended(d time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = events.KindOf(err).String()
	}
	m.appends.WithLabelValues(outcome).Observe(d.Seconds())
}

// Committed implements events.Observer.
func (m *storeMetrics) Committed(decisions, _ int, d time.Duration) {
	m.batchSize.Observe(float64(decisions))
	m.batchDuration.Observe(d.Seconds())
}

func (m *storeMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.appends, m.batchDuration, m.batchSize)
}

// watchCheckout exports what the checkout process manager is doing.
func (a *api) watchCheckout(c *checkout.Runner) {
	a.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_checkouts_in_flight",
			Help: "Orders whose checkout step this process is handling now"},
			func() float64 { return float64(c.Progress().InFlight) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_checkouts_stuck",
			Help: "Orders whose checkout step has been handled for longer than the checkout deadline (a service not answering)"},
			func() float64 { return float64(c.Progress().Stuck) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_follower_lag_seconds",
			Help: "How long after the log recorded it the follower's last event was delivered", ConstLabels: prometheus.Labels{"follower": "checkout"}},
			func() float64 { return c.Progress().Lag.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_follower_lag_events",
			Help: "How many events the follower's subscription still had to deliver after its last one, when that one was delivered", ConstLabels: prometheus.Labels{"follower": "checkout"}},
			func() float64 { return float64(c.Progress().Behind) }),
	)
}

// notaryWatch remembers the notary's last checkpoint for its age.
type notaryWatch struct {
	mu      sync.Mutex
	started time.Time
	at      time.Time // when the last checkpoint was appended
	covered uint64    // the log position it covers (its own)
	head    func(context.Context) (uint64, error)
}

func (w *notaryWatch) checkpointed(_ contracts.NotaryCheckpointed, a events.Appended) {
	w.mu.Lock()
	w.at, w.covered = time.Now(), a.LastPosition
	w.mu.Unlock()
}

// age is how long the log has held events no checkpoint covers: 0 while
// the last checkpoint covers the head (an idle log needs none).
func (w *notaryWatch) age() float64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	head, err := w.head(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil && head <= w.covered {
		return 0
	}
	since := w.at
	if since.IsZero() {
		since = w.started
	}
	return time.Since(since).Seconds()
}

func (a *api) watchNotary(w *notaryWatch) {
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_notary_checkpoint_age_seconds",
		Help: "Since the last signed checkpoint while the log holds events it does not cover (0 when it covers the head)"}, w.age))
}

// namedRegistry is the API's registry. It remembers the name of every
// metric family registered, so that a test can hold the dashboard and the
// alert rules in deploy/ to what the ledger exports.
type namedRegistry struct {
	*prometheus.Registry
	mu    sync.Mutex
	names map[string]bool
}

func newNamedRegistry() *namedRegistry {
	return &namedRegistry{Registry: prometheus.NewRegistry(), names: map[string]bool{}}
}

// Register registers c and records the names it describes.
func (r *namedRegistry) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range ch {
		// A Desc shows its name only in its string form: Desc{fqName: "x", ...}.
		if _, rest, ok := strings.Cut(d.String(), `fqName: "`); ok {
			if name, _, ok := strings.Cut(rest, `"`); ok {
				r.names[name] = true
			}
		}
	}
	return nil
}

// MustRegister registers every collector, and panics on the first failure.
func (r *namedRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// Names returns the names of the metric families registered.
func (r *namedRegistry) Names() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.names)
}

// watchParked exports how many messages the subscribers' parking stream
// holds (parked poison events and their replay records): NaN when it
// cannot be read, 0 when no subscriber has ever parked one.
func (a *api) watchParked(js jetstream.JetStream) {
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_parked_stream_messages",
		Help: "Messages in the subscribers' parking stream: poison events set aside, and their replay records"},
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			st, err := js.Stream(ctx, subscriber.ParkedStreamName)
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return 0
			}
			if err != nil {
				return math.NaN()
			}
			return float64(st.CachedInfo().State.Msgs)
		}))
}

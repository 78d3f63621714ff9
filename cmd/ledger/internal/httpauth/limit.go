package httpauth

import (
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/service"
)

// Default bounds of the Limiter.
const (
	DefaultPerClient = 16
	DefaultTotal     = 256
)

// Limiter bounds the requests in flight, per client and in all. A client is
// its token when it presented a valid one (several addresses behind one
// token share its bound) and its remote address otherwise. A request over a
// bound is refused at once, not queued, so a flood costs the server no
// waiting goroutines and the other clients keep the remaining capacity:
// with perClient below total, one client can never hold every slot.
//
// Forwarded-for headers are not trusted: behind a proxy every anonymous
// client shares the proxy's address, so authenticate callers there.
type Limiter struct {
	perClient, total int
	log              *zap.Logger

	mu       sync.Mutex
	inFlight map[string]int
	all      int
}

// NewLimiter returns a limiter admitting perClient requests in flight per
// client and total in all (0 for the defaults).
func NewLimiter(perClient, total int, log *zap.Logger) *Limiter {
	if perClient <= 0 {
		perClient = DefaultPerClient
	}
	if total <= 0 {
		total = DefaultTotal
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Limiter{perClient: perClient, total: total, log: log, inFlight: map[string]int{}}
}

// Middleware applies the bounds. Install it inside Authenticator.Middleware
// so that it knows the caller's token.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := clientKey(r)
		status := l.acquire(key)
		if status != 0 {
			// Debug only: a flood would otherwise flood the log too.
			l.log.Debug("http request over limit", zap.Int("status", status), zap.String("client", safeKey(key)),
				zap.String("path", r.URL.Path))
			w.Header().Set("Retry-After", "1")
			detail := "more than " + strconv.Itoa(l.perClient) + " requests in flight from this client"
			name, title := "rate_limited", "too many requests"
			if status == http.StatusServiceUnavailable {
				name, title, detail = events.KindUnavailable.String(), "overloaded", "the server has "+strconv.Itoa(l.total)+" requests in flight"
			}
			service.HTTPProblem(status, name, title, detail).Write(w)
			return
		}
		defer l.release(key)
		next.ServeHTTP(w, r)
	})
}

// InFlight returns the requests in flight of all clients.
func (l *Limiter) InFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all
}

// acquire takes a slot for key, or returns the status that refuses it.
func (l *Limiter) acquire(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.inFlight[key] >= l.perClient:
		return http.StatusTooManyRequests
	case l.all >= l.total:
		return http.StatusServiceUnavailable
	}
	l.inFlight[key]++
	l.all++
	return 0
}

func (l *Limiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all--
	if l.inFlight[key]--; l.inFlight[key] <= 0 {
		delete(l.inFlight, key) // the map holds only clients with requests in flight
	}
}

func clientKey(r *http.Request) string {
	if p, ok := PrincipalFrom(r.Context()); ok {
		return "token:" + string(p.hash[:])
	}
	return "addr:" + remoteHost(r)
}

// safeKey is a client key fit for a log: a token's hash prefix, or the
// address.
func safeKey(key string) string {
	if rest, ok := strings.CutPrefix(key, "token:"); ok && len(rest) >= 4 {
		return "token " + hex.EncodeToString([]byte(rest[:4]))
	}
	return key
}

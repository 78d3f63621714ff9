// Package console is the web console `ledger serve` serves at /console for
// regulators and investigators: the day as a chart with every policy event
// on it, the policy timeline, one flow as a causation tree, the read models
// as of an instant, and the signed bundles with their verification.
//
// Pages are HTML rendered by Go templates with inline SVG, readable
// without scripts; a little plain JavaScript adds live updates over the
// API's server-sent events. Everything is embedded in the binary.
//
// It only reads: it must never append to the log. A caller signs in with a
// bearer token of the API (kept in an HttpOnly cookie scoped to /console);
// bad input is answered with a page naming the parameter and its rule,
// never a stack trace.
package console

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
)

//go:embed assets
var assets embed.FS

// CookieName is the cookie that holds the signed-in token.
const CookieName = "ledger_console"

// requestTimeout bounds the work of one page.
const requestTimeout = 60 * time.Second

// Config is what the console reads and who it admits.
type Config struct {
	// Store is the log (and the JetStream of its snapshots).
	Store projections.LogStore
	// Tokens finds the principal of a bearer token (the API's tokens).
	Tokens httpauth.TokenLookup
	// Live serves the API's server-sent events (GET /v1/subscribe); the
	// console forwards /console/live to it once the caller is admitted.
	Live http.Handler
	// EventTypes are the event types the live list listens for.
	EventTypes []string
	// BundleDir holds the bundles the console lists ("" for none).
	BundleDir string
	// TrustedKey is the notary's public key the bundles are verified with.
	TrustedKey ed25519.PublicKey
	// Zone is the display zone of every instant (UTC when nil).
	Zone *time.Location
	// Log reports what a page could not do (nil: not reported).
	Log *zap.Logger
}

// Console serves /console.
type Console struct {
	cfg     Config
	day     *Day
	querier *projections.Querier
	bundles *bundleCache
	pages   map[string]*template.Template
	mux     *http.ServeMux
}

// ReadRoles may open every view; PolicyRoles may open the policy timeline
// (a rule binds everyone, so everyone may read it).
var (
	ReadRoles   = httpauth.ReadRoles
	PolicyRoles = httpauth.PolicyRulesRoles
)

// New returns the console over cfg.
func New(ctx context.Context, cfg Config) (*Console, error) {
	if cfg.Zone == nil {
		cfg.Zone = time.UTC
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, day: NewDay(cfg.Store), querier: projections.NewQuerier(ctx, cfg.Store),
		bundles: newBundleCache(), pages: pages, mux: http.NewServeMux()}
	static, _ := fs.Sub(assets, "assets/static")
	c.mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	c.mux.HandleFunc("GET /console/signin", c.signinPage)
	c.mux.HandleFunc("POST /console/signin", c.signin)
	c.mux.HandleFunc("POST /console/signout", c.signout)
	c.mux.Handle("GET /console/{$}", c.admit(ReadRoles, c.dayPage))
	c.mux.Handle("GET /console/policy", c.admit(PolicyRoles, c.policyPage))
	c.mux.Handle("GET /console/trace", c.admit(ReadRoles, c.tracePage))
	c.mux.Handle("GET /console/asof", c.admit(ReadRoles, c.asOfPage))
	c.mux.Handle("GET /console/bundles", c.admit(ReadRoles, c.bundlesPage))
	c.mux.Handle("GET /console/bundles/{name}", c.admit(ReadRoles, c.bundleDownload))
	c.mux.Handle("GET /console/live", c.admit(ReadRoles, c.live))
	c.mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, http.StatusNotFound, "path", "no console page at "+r.URL.Path)
	})
	return c, nil
}

// ServeHTTP serves every path under /console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Pages come from this server only: no inline script, no framing.
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	if r.URL.Path == "/console" {
		http.Redirect(w, r, "/console/", http.StatusFound)
		return
	}
	c.mux.ServeHTTP(w, r)
}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"join": strings.Join,
		"pct":  func(a, b float64) float64 { return a / b * 100 },
	}
	names, err := fs.Glob(assets, "assets/pages/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		t, err := template.New("").Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/chart.html", n)
		if err != nil {
			return nil, err
		}
		pages[strings.TrimSuffix(n[len("assets/pages/"):], ".html")] = t
	}
	return pages, nil
}

// page is what the layout shows around every page.
type page struct {
	Title     string
	Nav       string // the current view
	Principal *httpauth.Principal
	ReadOnly  bool
	Zone      string
	Data      any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	if pr, ok := principalFrom(r.Context()); ok {
		p.Principal = &pr
		p.ReadOnly = true // every view only reads; said on the page for the regulator
	}
	p.Zone = c.cfg.Zone.String()
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		c.cfg.Log.Error("console page failed to render", zap.String("page", name), zap.Error(err))
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// problem is what the error page shows: the parameter and the rule it
// broke, or what is missing.
type problem struct {
	Status  int
	Param   string
	Message string
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, param, msg string) {
	c.render(w, r, status, "error", page{Title: http.StatusText(status), Data: problem{Status: status, Param: param, Message: msg}})
}

// failErr answers err: bad input names its field, a missing thing is 404,
// anything else is logged and answered without its internals.
func (c *Console) failErr(w http.ResponseWriter, r *http.Request, param string, err error) {
	var le *events.Error
	switch {
	case errors.As(err, &le) && (le.Kind == events.KindInvalid || le.Kind == events.KindNotFound):
		status := http.StatusBadRequest
		if le.Kind == events.KindNotFound {
			status = http.StatusNotFound
		}
		if le.Field != "" {
			param = le.Field
		}
		msg := le.Rule
		if msg == "" {
			msg = le.Error()
		}
		c.fail(w, r, status, param, msg)
	case errors.Is(err, context.DeadlineExceeded):
		c.fail(w, r, http.StatusServiceUnavailable, "", "the log did not answer in time; try again or narrow the question")
	default:
		c.cfg.Log.Warn("console page failed", zap.String("path", r.URL.Path), zap.Error(err))
		c.fail(w, r, http.StatusInternalServerError, "", "the ledger could not answer: "+oneLine(err.Error()))
	}
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// principalKey carries the signed-in caller in a request's context.
type principalKey struct{}

func principalFrom(ctx context.Context) (httpauth.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(httpauth.Principal)
	return p, ok
}

// admit serves h to a caller signed in with one of roles; others get the
// sign-in page (no or an unknown token) or a page saying which roles may
// (a known token of another role).
func (c *Console) admit(roles []string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(CookieName)
		if err != nil || ck.Value == "" {
			http.Redirect(w, r, "/console/signin?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		p, ok := c.cfg.Tokens.Lookup(ck.Value)
		if !ok {
			clearCookie(w, r)
			c.render(w, r, http.StatusUnauthorized, "signin", page{Title: "Sign in", Data: signinData{
				Error: "token: this token is not known to the ledger (wrong, revoked or expired); sign in with another", Next: r.URL.RequestURI()}})
			return
		}
		ctx := context.WithValue(r.Context(), principalKey{}, p)
		r = r.WithContext(ctx)
		if !slices.Contains(roles, p.Role) {
			c.fail(w, r, http.StatusForbidden, "role", "role "+p.Role+" may not open this view; allowed: "+strings.Join(roles, ", "))
			return
		}
		if r.URL.Path != "/console/live" {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, requestTimeout)
			defer cancel()
			r = r.WithContext(ctx)
		}
		h(w, r)
	})
}

// live forwards to the API's server-sent events.
func (c *Console) live(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Live == nil {
		c.fail(w, r, http.StatusNotFound, "", "live updates are not served here")
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/v1/subscribe"
	r2.URL.RawPath = ""
	c.cfg.Live.ServeHTTP(w, r2)
}

package httpauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/service"
)

// Endpoint groups and the roles each admits. Commands are grouped by the
// context their name starts with (POST /v1/commands/<context>.<verb>).
var (
	// ReadRoles may read the log and the read models: /v1/events,
	// /v1/snapshots and their server-sent-events stream.
	ReadRoles = []string{RoleRegulator, RoleOperator, RoleInvestigator}
	// MetricsRoles may scrape /metrics.
	MetricsRoles = []string{RoleOperator}
	// PolicyRulesRoles may list the policy timeline (GET /v1/policy/rules):
	// every authenticated caller, since a rule binds all of them.
	PolicyRulesRoles = Roles()
	// commandRoles admits callers to commands by context. Policy commands
	// are the policy issuer's alone: not even the operator may freeze or
	// lift, so that running the marketplace and regulating it stay apart.
	// Payments are moved by the checkout process manager (and refunds by
	// the operator), never by a buyer's own request. Which listings and
	// orders a buyer or seller may touch is checked against the token's
	// subject where the command is decided (cmd/ledger checkOwner).
	commandRoles = map[string][]string{
		"listing": {RoleSeller, RoleOperator},
		"order":   {RoleBuyer, RoleSeller, RoleOperator},
		"payment": {RoleOperator},
		"policy":  {RolePolicyIssuer},
	}
)

// CommandRoles returns the roles that may send the command name
// ("order.place"). A name of no known context is left to the operator, who
// then gets the API's own answer (unknown command).
func CommandRoles(name string) []string {
	ctx, _, _ := strings.Cut(name, ".")
	if roles, ok := commandRoles[ctx]; ok {
		return slices.Clone(roles)
	}
	return []string{RoleOperator}
}

// authState is what Authenticator learnt about a request.
type authState struct {
	principal Principal
	ok        bool
	reason    string // why there is no principal: missing, malformed or unknown token
	tokenID   string // hash prefix of a presented but unknown token
	log       *zap.Logger
}

type stateKey struct{}

// PrincipalFrom returns the authenticated caller of a request that went
// through Authenticator.Middleware.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	s, _ := ctx.Value(stateKey{}).(*authState)
	if s == nil || !s.ok {
		return Principal{}, false
	}
	return s.principal, true
}

// TokenLookup finds the principal of a token: *Tokens, or a TokenFile that
// follows its file.
type TokenLookup interface {
	Lookup(token string) (Principal, bool)
}

// Authenticator identifies callers by bearer token.
type Authenticator struct {
	tokens TokenLookup
	log    *zap.Logger
}

// NewAuthenticator returns an authenticator over tokens; refusals are
// logged on log (nil: not logged).
func NewAuthenticator(tokens TokenLookup, log *zap.Logger) *Authenticator {
	if log == nil {
		log = zap.NewNop()
	}
	return &Authenticator{tokens: tokens, log: log}
}

// b64token is RFC 6750's token syntax.
var b64token = regexp.MustCompile(`^[A-Za-z0-9\-._~+/]+=*$`)

// Middleware identifies the caller and passes every request on: endpoints
// without Require (health, readiness, the OpenAPI document) stay open, and
// Require refuses what it must. Wrap the whole mux with it.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := &authState{log: a.log}
		token, reason := bearer(r)
		switch {
		case reason != "":
			s.reason = reason
		default:
			if p, ok := a.tokens.Lookup(token); ok {
				s.principal, s.ok = p, true
			} else {
				sum := sha256.Sum256([]byte(token))
				s.reason, s.tokenID = "unknown token", hex.EncodeToString(sum[:4])
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, s)))
	})
}

// bearer extracts the token of "Authorization: Bearer <token>", or says why
// there is none.
func bearer(r *http.Request) (token, reason string) {
	vals := r.Header.Values("Authorization")
	switch {
	case len(vals) == 0:
		return "", "missing bearer token"
	case len(vals) > 1:
		return "", "malformed Authorization header: more than one"
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	tok = strings.TrimSpace(tok)
	switch {
	case !ok || !strings.EqualFold(scheme, "Bearer"):
		return "", "malformed Authorization header: want Bearer <token>"
	case tok == "" || len(tok) > maxTokenLen || !b64token.MatchString(tok):
		return "", "malformed bearer token"
	}
	return tok, ""
}

// Require admits callers with one of roles: 401 without a valid token, 403
// with a valid token of another role. Use it per endpoint group, inside
// Authenticator.Middleware; without it every request is refused.
func Require(roles ...string) func(http.Handler) http.Handler {
	allowed := slices.Clone(roles)
	return RequireFunc(func(*http.Request) []string { return allowed })
}

// RequireCommand admits callers to POST /v1/commands/{name} by the command's
// context (CommandRoles); register it on the pattern with {name}.
func RequireCommand() func(http.Handler) http.Handler {
	return RequireFunc(func(r *http.Request) []string { return CommandRoles(r.PathValue("name")) })
}

// RequireFunc admits callers with one of the roles rolesOf returns for the
// request.
func RequireFunc(rolesOf func(*http.Request) []string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, _ := r.Context().Value(stateKey{}).(*authState)
			if s == nil {
				// Fail closed: the authenticator was not installed.
				s = &authState{reason: "no authenticator", log: zap.NewNop()}
			}
			if !s.ok {
				s.log.Warn("http request refused", zap.Int("status", http.StatusUnauthorized), zap.String("reason", s.reason),
					zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.String("remote", remoteHost(r)),
					zap.String("token_id", s.tokenID))
				errParam := ""
				if s.reason != "missing bearer token" {
					errParam = `, error="invalid_token"`
				}
				w.Header().Set("WWW-Authenticate", `Bearer realm="ledger"`+errParam)
				service.HTTPProblem(http.StatusUnauthorized, "unauthenticated", "unauthorized",
					s.reason+": send Authorization: Bearer <token>").Write(w)
				return
			}
			roles := rolesOf(r)
			if !slices.Contains(roles, s.principal.Role) {
				s.log.Warn("http request refused", zap.Int("status", http.StatusForbidden), zap.String("reason", "role not allowed"),
					zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.String("remote", remoteHost(r)),
					zap.String("subject", s.principal.Subject), zap.String("role", s.principal.Role),
					zap.String("token_id", s.principal.TokenID()))
				service.HTTPProblem(http.StatusForbidden, events.KindPermission.String(), "forbidden",
					"role "+s.principal.Role+" may not do this; allowed: "+strings.Join(roles, ", ")).Write(w)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

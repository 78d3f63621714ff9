package console

import (
	"net/http"
	"net/url"
	"strings"
)

// signinData is what the sign-in page shows.
type signinData struct {
	Error string
	Next  string
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// localNext returns next when it is a console path, else the console's
// front page: a sign-in link must not send anyone elsewhere.
func localNext(next string) string {
	if !strings.HasPrefix(next, "/console") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/console/"
	}
	return next
}

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "signin", page{Title: "Sign in", Data: signinData{Next: localNext(r.URL.Query().Get("next"))}})
}

// signin checks the token a person pasted and keeps it in a cookie only
// this console reads: HttpOnly (no script reads it), SameSite=Strict (no
// other site sends it) and scoped to /console (the API still wants its
// Authorization header).
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, http.StatusBadRequest, "token", "the sign-in form could not be read")
		return
	}
	next := localNext(r.PostForm.Get("next"))
	token := strings.TrimSpace(r.PostForm.Get("token"))
	again := func(msg string) {
		c.render(w, r, http.StatusUnauthorized, "signin", page{Title: "Sign in", Data: signinData{Error: msg, Next: next}})
	}
	switch {
	case token == "":
		again("token: paste a bearer token issued with 'ledger token issue'")
		return
	case len(token) > 512:
		again("token: too long to be a ledger token (at most 512 characters)")
		return
	}
	p, ok := c.cfg.Tokens.Lookup(token)
	if !ok {
		again("token: this token is not known to the ledger (wrong, revoked or expired)")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: token, Path: "/console", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	c.cfg.Log.Sugar().Infow("console sign-in", "subject", p.Subject, "role", p.Role, "token_id", p.TokenID())
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request) {
	clearCookie(w, r)
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
}

func clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/console", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

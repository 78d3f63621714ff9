package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/marketledger/ledger/cmd/ledger/internal/market"
)

// chromiumPath finds the browser the console's tests drive. It is not
// optional: CI installs it (.ci/run), and a missing one fails the test
// with the way to install it rather than skipping it unseen.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LEDGER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: the console's browser tests need it. Install it with `sudo apt-get install -y chromium` " +
		"(Debian's package; .ci/run installs it when missing), or set LEDGER_CHROMIUM to a Chromium or Chrome binary")
	return ""
}

// artefactDir is where the browser tests leave their screenshots:
// LEDGER_TEST_ARTEFACTS when set (CI keeps it), else the test's temporary
// directory.
func artefactDir(t *testing.T) string {
	dir := os.Getenv("LEDGER_TEST_ARTEFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browserErrors collects what the page reports as an error: uncaught
// exceptions, console.error and the browser's own error log (a blocked
// script or style, a failed request).
type browserErrors struct {
	mu   sync.Mutex
	list []string
}

func (b *browserErrors) add(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.list = append(b.list, s)
}

// take returns the errors so far and forgets them.
func (b *browserErrors) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.list
	b.list = nil
	return l
}

// TestConsoleInBrowser plays a demo day once, serves it, and drives the
// console in headless Chromium: sign in by keyboard, the day (the freeze
// at 17:00 WIB, social commerce at zero after it, the same totals as the
// demo's report), the zoom around the freeze, the policy timeline, the
// trace of a known order against `ledger trace`, the read models as of
// 16:59:59 and 17:00:00 against the demo's bundles, the bundles verified,
// live updates, and bad input. No page may log an error.
func TestConsoleInBrowser(t *testing.T) {
	chrome := chromiumPath(t)
	shots := artefactDir(t)
	t.Logf("screenshots in %s", shots)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if err := runDemo(ctx, &out, &errOut, dir, 7, testScale, true); err != nil {
		t.Fatalf("demo: %v\n%s", err, errOut.String())
	}
	var rep demoReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("demo report: %v", err)
	}
	g := &globals{dataDir: dir, json: true}
	// The CLI's answer for a known order, before serve takes the data
	// directory.
	const order = "ord-0000001"
	var cliTrace bytes.Buffer
	if err := runTrace(ctx, g, order, &cliTrace, io.Discard); err != nil {
		t.Fatalf("ledger trace %s: %v", order, err)
	}
	regulator := issueTestToken(t, dir, "regulator")
	buyer := issueTestToken(t, dir, "buyer")
	s := startServed(t, &globals{dataDir: dir}, &serveOpts{services: " "}, http.DefaultClient)

	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(chrome), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.Flag("no-default-browser-check", true)}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	errs := &browserErrors{}
	go func() {
		for m, err := range chromedp.Console(bctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				errs.add(m.Source + ": " + m.String())
			}
		}
	}()
	run := func(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatal(err)
		}
	}
	shot := func(t *testing.T, name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Error(err)
		}
	}
	noErrors := func(t *testing.T) {
		t.Helper()
		for _, e := range errs.take() {
			t.Errorf("browser error: %s", e)
		}
	}
	text := func(t *testing.T, sel string) string {
		t.Helper()
		// One evaluation in the page: a node the page replaces between a
		// query and a read of it (the navigation after a sign-in, a live
		// update) cannot go stale under it ("No node with given id found").
		// The element may still be on its way: ask again, bounded.
		expr := `(() => { const e = document.querySelector(` + strconv.Quote(sel) + `); return e ? e.innerText : null })()`
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, err := chromedp.Run(bctx, chromedp.Evaluate[*string](expr))
			if err == nil && v != nil {
				return *v
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not in the page (%v)", sel, err)
			}
			time.Sleep(50 * time.Millisecond) // the page announces nothing to the test
		}
	}
	attr := func(t *testing.T, sel, name string) string {
		t.Helper()
		expr := `(() => { const e = document.querySelector(` + strconv.Quote(sel) + `); return e ? e.getAttribute(` + strconv.Quote(name) + `) : null })()`
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, err := chromedp.Run(bctx, chromedp.Evaluate[*string](expr))
			if err == nil && v != nil {
				return *v
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has no attribute %s (%v)", sel, name, err)
			}
			time.Sleep(50 * time.Millisecond) // the page announces nothing to the test
		}
	}
	base := s.base

	t.Run("sign in by keyboard", func(t *testing.T) {
		run(t, chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.ID("token")),
			chromedp.SendKeys(chromedp.ID("token"), regulator+"\r"), chromedp.WaitVisible(chromedp.ID("day-chart")))
		if who := text(t, "#who"); !strings.Contains(who, "regulator") || !strings.Contains(who, "read only") {
			t.Errorf("signed in as %q, want a read-only regulator", who)
		}
		noErrors(t)
	})

	t.Run("the day", func(t *testing.T) {
		run(t, chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.ID("day-chart")))
		shot(t, "day")
		var markers []struct{ Type, Time, X, Effective string }
		markers = evalJS[[]struct{ Type, Time, X, Effective string }](t, bctx, `[...document.querySelectorAll("g.policy-marker")].map(g => ({Type: g.dataset.type, Time: g.dataset.time, X: g.dataset.x, Effective: g.dataset.effective}))`)
		var tickX string
		tickX = evalJS[string](t, bctx, `(([...document.querySelectorAll("#day-chart text.tick")].find(e => e.textContent === "17:00")) || {getAttribute: () => ""}).getAttribute("x")`)
		i := slices.IndexFunc(markers, func(m struct{ Type, Time, X, Effective string }) bool { return m.Effective == "true" })
		if i < 0 {
			t.Fatalf("no marker of a rule in force among %+v", markers)
		}
		if m := markers[i]; m.Time != "2023-10-04T17:00:00+07:00" || m.X != tickX || tickX == "" {
			t.Errorf("freeze in force at %s, x=%s; want 2023-10-04T17:00:00+07:00 on the 17:00 tick (x=%s)", m.Time, m.X, tickX)
		}
		var rows []struct {
			Start  string
			Social string
		}
		rows = evalJS[[]struct {
			Start  string
			Social string
		}](t, bctx, `[...document.querySelectorAll("#buckets tbody tr")].map(r => ({Start: r.dataset.start, Social: (r.querySelector('td[data-channel="social_commerce"]') || {textContent: ""}).textContent}))`)
		before, after := 0, 0
		freeze := market.FreezeStarts
		for _, r := range rows {
			at, err := time.Parse(time.RFC3339, r.Start)
			if err != nil || r.Social == "" {
				t.Fatalf("bucket %+v unreadable", r)
			}
			n := 0
			fmt.Sscan(r.Social, &n)
			if at.Before(freeze) {
				before += n
			} else {
				after += n
			}
		}
		if before == 0 || after != 0 {
			t.Errorf("social-commerce checkouts: %d before 17:00, %d after; want some, then none", before, after)
		}
		// The same numbers as the demo's report: every order placed is
		// accepted or cancelled; refunds are the buyers' and the
		// cancellations'.
		for ch, c := range rep.Checkouts {
			want := fmt.Sprint(c.AcceptedBefore + c.AcceptedAfter + c.Cancelled)
			if got := text(t, `#totals tr[data-channel="`+ch+`"] td`); got != want {
				t.Errorf("checkouts %s = %s, want %s as the demo's report", ch, got, want)
			}
		}
		cancelled := 0
		for _, c := range rep.Checkouts {
			cancelled += c.Cancelled
		}
		if got, want := text(t, `#totals tr[data-series="refunds"] td`), fmt.Sprint(rep.RefundsBeforeFreeze+rep.RefundsDuringFreeze+cancelled); got != want {
			t.Errorf("refunds = %s, want %s as the demo's report", got, want)
		}
		// Every checkout the freeze refused is on record (ADR 0020), under
		// its rule, as many as the report counts.
		refused := 0
		for _, c := range rep.Checkouts {
			refused += c.RefusedBefore + c.RefusedAfter
		}
		byRule := evalJS[string](t, bctx, `((([...document.querySelectorAll("#refusals tr")].find(r => (r.querySelector("th") || {}).textContent === "rule `+market.FreezeRuleID+`")) || {querySelector: () => ({textContent: ""})}).querySelector("td") || {textContent: ""}).textContent`)
		if want := fmt.Sprint(refused); byRule != want {
			t.Errorf("refusals by rule %s = %q, want %s as the demo's report", market.FreezeRuleID, byRule, want)
		}
		noErrors(t)
	})

	t.Run("zoom to seconds around the freeze", func(t *testing.T) {
		run(t, chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.ID("day-chart")))
		href := attr(t, `#markers tr.effective a`, "href")
		run(t, chromedp.Navigate(base+href), chromedp.WaitVisible(chromedp.ID("day-chart")))
		shot(t, "day-zoom")
		if step := attr(t, "#step", "value"); step != "1s" {
			t.Errorf("zoom step = %s, want 1s", step)
		}
		if got := attr(t, `g.policy-marker[data-effective="true"]`, "data-time"); got != "2023-10-04T17:00:00+07:00" {
			t.Errorf("zoomed freeze at %s", got)
		}
		run(t, chromedp.Navigate(base+"/console/?clock=recorded"), chromedp.WaitVisible(chromedp.ID("day-chart")))
		shot(t, "day-recorded")
		noErrors(t)
	})

	t.Run("live updates", func(t *testing.T) {
		run(t, chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.ID("live-status")))
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`document.getElementById("live-status").textContent.startsWith("Following the log")`,
			chromedp.WithPollingTimeout(10*time.Second))); err != nil {
			t.Errorf("live updates did not start: %v", err)
		}
		noErrors(t)
	})

	t.Run("policy timeline", func(t *testing.T) {
		run(t, chromedp.Navigate(base+"/console/policy"), chromedp.WaitVisible(chromedp.ID("rules")))
		shot(t, "policy")
		rules := text(t, "#rules")
		for _, want := range []string{market.FreezeRuleID, market.LegalBasis, market.Issuer, "social_commerce", "2023-10-04T17:00:00+07:00"} {
			if !strings.Contains(rules, want) {
				t.Errorf("policy timeline lacks %q:\n%s", want, rules)
			}
		}
		noErrors(t)
	})

	t.Run("trace of a known order", func(t *testing.T) {
		run(t, chromedp.Navigate(base+"/console/trace"), chromedp.WaitVisible(chromedp.ID("id")),
			chromedp.SendKeys(chromedp.ID("id"), order+"\r"), chromedp.WaitVisible(chromedp.ID("tree")))
		shot(t, "trace")
		var got []string
		got = evalJS[[]string](t, bctx, `[...document.querySelectorAll("#tree li")].map(li => { let d = 0; for (let p = li.parentElement; p.id !== "tree"; p = p.parentElement) { if (p.tagName === "UL") d++; } return li.dataset.position + "@" + d + " " + li.dataset.type; })`)
		var want []string
		sc := bufio.NewScanner(&cliTrace)
		for sc.Scan() {
			var l struct {
				Position uint64 `json:"position"`
				Depth    int    `json:"depth"`
				Type     string `json:"type"`
			}
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("ledger trace --json: %v", err)
			}
			want = append(want, fmt.Sprintf("%d@%d %s", l.Position, l.Depth, l.Type))
		}
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("console tree (position@depth type):\n%v\nledger trace:\n%v", got, want)
		}
		noErrors(t)
	})

	t.Run("as of 16:59:59 and 17:00:00", func(t *testing.T) {
		for i, at := range []string{"2023-10-04T16:59:59+07:00", "2023-10-04T17:00:00+07:00"} {
			run(t, chromedp.Navigate(base+"/console/asof"), chromedp.WaitVisible(chromedp.ID("as_of")),
				chromedp.SendKeys(chromedp.ID("as_of"), at), chromedp.SetValue(chromedp.ID("model"), "orders"),
				chromedp.Submit(chromedp.ID("as_of")), chromedp.WaitVisible(chromedp.ID("point")))
			shot(t, fmt.Sprintf("asof-%d", i))
			if got, want := attr(t, "#point", "data-position"), fmt.Sprint(rep.Snapshots[i].Position); got != want {
				t.Errorf("as of %s: position %s, want %s as the demo's bundle", at, got, want)
			}
		}
		noErrors(t)
	})

	t.Run("bundles", func(t *testing.T) {
		run(t, chromedp.Navigate(base+"/console/bundles"), chromedp.WaitVisible(chromedp.ID("bundles")))
		shot(t, "bundles")
		var verified []string
		verified = evalJS[[]string](t, bctx, `[...document.querySelectorAll("#bundles tr[data-name]")].map(r => r.dataset.verified)`)
		if len(verified) != len(rep.Snapshots) || slices.Contains(verified, "false") {
			t.Errorf("bundles verified: %v, want %d all true", verified, len(rep.Snapshots))
		}
		noErrors(t)
	})

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct{ path, param, status string }{
			{"/console/asof?as_of=2023-10-04T16:59:59&model=orders", "as_of", "400"},
			{"/console/trace?id=ord-nobody", "id", "404"},
			{"/console/?clock=wall", "clock", "400"},
			{"/console/asof?as_of=1&clock=position&model=nothing", "model", "404"},
		} {
			run(t, chromedp.Navigate(base+tc.path), chromedp.WaitVisible(chromedp.ID("problem")))
			if p, st := attr(t, "#problem", "data-param"), attr(t, "#problem", "data-status"); p != tc.param || st != tc.status {
				t.Errorf("%s: parameter %q status %s, want %q %s", tc.path, p, st, tc.param, tc.status)
			}
		}
		shot(t, "error")
		// A role that may not read: the page says which may.
		run(t, chromedp.Navigate(base+"/console/signin"), chromedp.WaitVisible(chromedp.ID("token")),
			chromedp.SendKeys(chromedp.ID("token"), buyer+"\r"), chromedp.WaitVisible(chromedp.ID("problem")))
		if msg := text(t, "#problem"); !strings.Contains(msg, "role buyer may not") || !strings.Contains(msg, "regulator") {
			t.Errorf("buyer on the console: %q", msg)
		}
		run(t, chromedp.Navigate(base+"/console/signin"), chromedp.WaitVisible(chromedp.ID("token")),
			chromedp.SendKeys(chromedp.ID("token"), "mlt_not-a-token\r"), chromedp.WaitVisible(chromedp.ID("problem")))
		if msg := text(t, "#problem"); !strings.Contains(msg, "token") || !strings.Contains(msg, "not known") {
			t.Errorf("unknown token: %q", msg)
		}
		// The error pages answer 4xx, which the browser logs as failed
		// loads; nothing else may be logged.
		for _, e := range errs.take() {
			if !strings.Contains(e, "Failed to load resource: the server responded with a status of 4") {
				t.Errorf("browser error: %s", e)
			}
		}
	})
}

// evalJS evaluates expr in the page and returns its value.
func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

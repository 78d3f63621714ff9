package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/oapi-codegen/oapi-codegen/v2/pkg/codegen"
	_ "github.com/oapi-codegen/runtime" // the generated client's one dependency: kept in go.sum for the offline build
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"

	"github.com/marketledger/ledger/contracts"
)

// newOpenAPIValidator loads the served document with libopenapi, an
// OpenAPI 3.1 implementation independent of the code that writes it.
func newOpenAPIValidator(t *testing.T) validator.Validator {
	t.Helper()
	doc, err := libopenapi.NewDocument(openAPIDoc)
	if err != nil {
		t.Fatalf("libopenapi cannot read the document: %v", err)
	}
	// Building the model resolves every reference: one that points
	// nowhere (a $defs pointer left inside an operation) fails here.
	if _, err := doc.BuildV3Model(); err != nil {
		t.Fatalf("libopenapi cannot build the model: %v", err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("libopenapi-validator cannot build a validator: %v", errs)
	}
	return v
}

// TestOpenAPIDocValidates checks the document against the OpenAPI 3.1
// specification's schema (libopenapi-validator), and what tools need
// beyond it: an operationId on every operation, unique; typed answers by
// reference to components/schemas; no $defs or URN $ids inside operations
// that generators cannot resolve.
func TestOpenAPIDocValidates(t *testing.T) {
	v := newOpenAPIValidator(t)
	if ok, errs := v.ValidateDocument(); !ok {
		for _, e := range errs {
			t.Errorf("not OpenAPI 3.1: %s: %s", e.Message, e.Reason)
			for _, s := range e.SchemaValidationErrors {
				t.Errorf("  at %s (%s): %s", s.FieldPath, s.KeywordLocation, s.Reason)
			}
		}
	}
	for _, bad := range []string{`"$defs"`, `"$id"`, `#/$defs/`, `urn:marketledger:command:`} {
		if bytes.Contains(openAPIDoc, []byte(bad)) {
			t.Errorf("the document holds %s: schemas belong under components/schemas", bad)
		}
	}
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string                     `json:"operationId"`
			Security    []map[string][]string      `json:"security"`
			Responses   map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for path, item := range doc.Paths {
		for method, o := range item {
			where := strings.ToUpper(method) + " " + path
			if o.OperationID == "" {
				t.Errorf("%s has no operationId", where)
			} else if other, dup := seen[o.OperationID]; dup {
				t.Errorf("%s and %s share operationId %s", where, other, o.OperationID)
			}
			seen[o.OperationID] = where
			if o.Security == nil {
				t.Errorf("%s does not say what security it needs", where)
			}
			ok := string(o.Responses["200"])
			if strings.Contains(ok, "application/json") && !strings.Contains(ok, "#/components/schemas/") && path != "/healthz" &&
				path != "/readyz" && path != "/openapi.json" {
				t.Errorf("%s answers an untyped 200: %s", where, ok)
			}
		}
	}
	for _, c := range contracts.Commands {
		if _, ok := doc.Paths["/v1/commands/"+c.Name]; !ok {
			t.Errorf("command %s has no operation", c.Name)
		}
	}
}

// TestOpenAPIClientGenerates generates a Go client from the document with
// oapi-codegen (as a library, offline) into a module of its own and builds
// it: what a team integrating the API would do first.
func TestOpenAPIClientGenerates(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a generated module")
	}
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = false // offline: the document is self-contained
	spec, err := loader.LoadFromData(openAPIDoc)
	if err != nil {
		t.Fatalf("kin-openapi (oapi-codegen's loader) cannot load the document: %v", err)
	}
	code, err := codegen.Generate(spec, codegen.Configuration{PackageName: "ledgerclient",
		Generate:      codegen.GenerateOptions{Client: true, Models: true},
		OutputOptions: codegen.OutputOptions{SkipPrune: true}})
	if err != nil {
		t.Fatalf("oapi-codegen: %v", err)
	}
	dir := t.TempDir()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/oapi-codegen/runtime").Output()
	if err != nil {
		t.Fatalf("the version of github.com/oapi-codegen/runtime this module requires: %v", err)
	}
	runtimeVersion := strings.TrimSpace(string(out))
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"go.mod":    "module example.com/ledgerclient\n\ngo 1.26\n\nrequire github.com/oapi-codegen/runtime " + runtimeVersion + "\n",
		"go.sum":    string(sum),
		"client.go": code,
		// A use of the generated names a client writes first: place an
		// order, read a page of events.
		"use.go": `package ledgerclient

import "context"

func use(ctx context.Context, c *ClientWithResponses) error {
	key := "k-1"
	placed, err := c.OrderPlaceWithResponse(ctx, &OrderPlaceParams{IdempotencyKey: &key}, OrderPlace{OrderId: "o-1", BuyerId: "b-1", ListingId: "l-1", Quantity: 1})
	if err != nil {
		return err
	}
	if placed.JSON200 != nil {
		_ = placed.JSON200.State.Total.AmountMinor
	}
	limit := 10
	page, err := c.ListEventsWithResponse(ctx, &ListEventsParams{Type: &[]string{"order.placed"}, Limit: &limit})
	if err != nil {
		return err
	}
	if page.JSON200 != nil {
		for _, e := range page.JSON200.Events {
			if e.PrevPosition != nil {
				_ = e.Position - *e.PrevPosition
			}
		}
	}
	if page.ApplicationproblemJSON400 != nil {
		_ = page.ApplicationproblemJSON400.Rule
	}
	return nil
}
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "build", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOPROXY=off", "GOFLAGS=-mod=mod")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the generated client does not build: %v\n%s", err, out)
	}
	t.Logf("generated %d bytes of client, built in %v", len(code), time.Since(start).Round(time.Millisecond))
}

// TestOpenAPIAnswersMatchTheDoc checks live answers of `ledger serve`
// against the document with libopenapi-validator's response validation: a
// command's reply, an aggregate's state, a page of events, the policy
// rules, a read model's row, and problems (a refused command, an unknown
// order, a bad parameter).
func TestOpenAPIAnswersMatchTheDoc(t *testing.T) {
	v := newOpenAPIValidator(t)
	g := &globals{dataDir: t.TempDir()}
	token := issueTestToken(t, g.dataDir, "operator")
	issuer := issueTestToken(t, g.dataDir, "policy_issuer")
	s := startServed(t, g, &serveOpts{}, http.DefaultClient)
	check := func(method, path string, body any, wantStatus int) {
		t.Helper()
		var r io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			r = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, s.base+path, r)
		req.Header.Set("Authorization", "Bearer "+token)
		if strings.HasPrefix(path, "/v1/commands/policy.") {
			req.Header.Set("Authorization", "Bearer "+issuer)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantStatus {
			t.Errorf("%s %s = %d %s; want %d", method, path, resp.StatusCode, got, wantStatus)
			return
		}
		resp.Body = io.NopCloser(bytes.NewReader(got))
		// The validator matches the request's path against the document's
		// paths; the request it is given carries no body to re-read.
		vreq, _ := http.NewRequest(method, s.base+path, nil)
		vreq.Header = req.Header
		if ok, errs := v.ValidateHttpResponse(vreq, resp); !ok {
			for _, e := range errs {
				t.Errorf("%s %s answered %d outside the document: %s: %s", method, path, resp.StatusCode, e.Message, e.Reason)
				for _, f := range e.SchemaValidationErrors {
					t.Errorf("  at %s (%s): %s", f.FieldPath, f.KeywordLocation, f.Reason)
				}
			}
			t.Logf("the answer: %s", got)
		}
	}
	idr := contracts.Money{AmountMinor: 100_000_00, Currency: "IDR"}
	check("POST", "/v1/commands/listing.create", contracts.CreateListing{ListingID: "oa-1", SellerID: "seller-oa", Title: "Lamp",
		Category: "home", Channel: contracts.ChannelMarketplace, Jurisdiction: "ID", Origin: contracts.OriginDomestic,
		Price: idr, Stock: 5}, http.StatusOK)
	check("POST", "/v1/commands/order.place", contracts.PlaceOrder{OrderID: "oa-o1", BuyerID: "buyer-oa", ListingID: "oa-1", Quantity: 1}, http.StatusOK)
	check("POST", "/v1/commands/payment.authorize", map[string]any{"payment_id": "oa-p1", "order_id": "oa-o1", "amount": idr}, http.StatusOK)
	check("POST", "/v1/commands/policy.impose_freeze", contracts.ImposeFreeze{RuleID: "oa-r1",
		Scope:      contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{contracts.ChannelSocialCommerce}},
		LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}, http.StatusOK)
	check("POST", "/v1/commands/order.place", map[string]any{"order_id": "oa-o2"}, http.StatusBadRequest)
	check("GET", "/v1/orders/oa-o1", nil, http.StatusOK)
	check("GET", "/v1/listings/oa-1", nil, http.StatusOK)
	check("GET", "/v1/payments/oa-p1", nil, http.StatusOK)
	check("GET", "/v1/orders/nobody", nil, http.StatusNotFound)
	check("GET", "/v1/events?from=1&type=listing.created&type=order.placed&limit=10", nil, http.StatusOK)
	check("GET", "/v1/events?from=1", nil, http.StatusOK)
	check("GET", "/v1/events?limit=0", nil, http.StatusBadRequest)
	check("GET", "/v1/policy/rules", nil, http.StatusOK)
	check("GET", "/v1/models/orders/oa-o1", nil, http.StatusOK)
	check("GET", "/v1/models/orders", nil, http.StatusOK)

	// The validator does look at bodies: a page whose next is not a
	// position, or a problem without its status, is refused.
	for _, tc := range []struct{ path, contentType, body string }{
		{"/v1/events", "application/json", `{"events":[],"next":"one","more":false}`},
		{"/v1/orders/x", "application/problem+json", `{"type":"urn:marketledger:problem:not_found","title":"not found","detail":"no order x"}`},
	} {
		status := http.StatusOK
		if strings.Contains(tc.contentType, "problem") {
			status = http.StatusNotFound
		}
		req, _ := http.NewRequest("GET", s.base+tc.path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp := &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {tc.contentType}},
			Body: io.NopCloser(strings.NewReader(tc.body)), Request: req}
		if ok, _ := v.ValidateHttpResponse(req, resp); ok {
			t.Errorf("GET %s answering %s passed the validator; want it refused", tc.path, tc.body)
		}
	}
}

package frontend

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestOpenAPI checks /openapi.json against the route table the server
// matches requests with: every route has an operation and every operation
// a route; then it calls every operation on a live server and wants a
// status the document lists for it (so no route is missing behind it).
func TestOpenAPI(t *testing.T) {
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	served := map[string]bool{}
	for _, r := range routes {
		key := r.method + " " + r.pattern
		served[key] = true
		if _, ok := doc.Paths[r.pattern][strings.ToLower(r.method)]; !ok {
			t.Errorf("route %s has no operation in openapi.json", key)
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if key := strings.ToUpper(method) + " " + path; !served[key] {
				t.Errorf("openapi.json documents %s, which is not served", key)
			}
		}
	}

	r := startRedis(t)
	ts := newTestServer(t, r, -1, nil)
	code, _, body := call(t, "GET", ts.url+"/openapi.json", "", nil)
	want(t, 200, code, body, nil)
	if string(body) != string(openapiDoc) {
		t.Fatal("/openapi.json is not the embedded document")
	}
	for _, rt := range routes {
		path := strings.ReplaceAll(rt.pattern, "{id}", strings.Repeat("0", 32))
		code, _, body := call(t, rt.method, ts.url+path, tokenA, strings.NewReader("{}"))
		op := doc.Paths[rt.pattern][strings.ToLower(rt.method)]
		if _, ok := op.Responses[strconv.Itoa(code)]; !ok {
			t.Errorf("%s %s: status %d is not documented: %s", rt.method, path, code, body)
		}
		if strings.Contains(string(body), `"no_route"`) || code == 405 {
			t.Errorf("%s %s: not served: %d %s", rt.method, path, code, body)
		}
	}
	// And the router does refuse what is not in the table.
	code, _, body = call(t, "GET", ts.url+"/api/v1/nothing", tokenA, nil)
	want(t, 404, code, body, nil)
	code, hdr, body := call(t, "PUT", ts.url+"/api/v1/jobs", tokenA, nil)
	want(t, 405, code, body, nil)
	if allow := strings.Split(hdr.Get("Allow"), ", "); !slices.Contains(allow, "POST") || !slices.Contains(allow, "GET") {
		t.Fatalf("Allow %q", hdr.Get("Allow"))
	}
}

package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
)

// SpecOperations returns "METHOD /path" for every operation of an OpenAPI
// document, sorted.
func specOperations(t *testing.T, doc []byte) []string {
	t.Helper()
	var d struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil || !strings.HasPrefix(d.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document: %v", err)
	}
	var ops []string
	for p, m := range d.Paths {
		for method := range m {
			if method != "parameters" {
				ops = append(ops, strings.ToUpper(method)+" "+p)
			}
		}
	}
	sort.Strings(ops)
	return ops
}

func routeOperations(rs []Route) []string {
	var ops []string
	for _, r := range rs {
		ops = append(ops, r.Method+" "+r.Path)
	}
	sort.Strings(ops)
	return ops
}

// /openapi.json describes exactly the routes the server answers, and each
// of them is really served: requesting it never reaches the router's "no
// route" or "method not allowed".
func TestOpenAPIMatchesRoutes(t *testing.T) {
	s, base := startServer(t, &fakeSource{}, "tok")
	resp, err := http.Get(base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	served, routes := specOperations(t, doc), routeOperations(s.Routes())
	if strings.Join(served, "\n") != strings.Join(routes, "\n") {
		t.Fatalf("/openapi.json:\n%s\nroutes:\n%s", strings.Join(served, "\n"), strings.Join(routes, "\n"))
	}
	for _, r := range s.Routes() {
		req, _ := http.NewRequest(r.Method, base+r.Path, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), `"no_route"`) || resp.StatusCode == http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d %s", r.Method, r.Path, resp.StatusCode, body)
		}
	}
	// The whole document holds every route of the shared path set.
	all := map[string]bool{}
	for _, op := range specOperations(t, Spec()) {
		all[op] = true
	}
	for _, op := range routes {
		if !all[op] {
			t.Errorf("%s is not in openapi.json", op)
		}
	}
}

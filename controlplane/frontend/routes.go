package frontend

import (
	"strings"

	"github.com/valyala/fasthttp"
)

// route is one API route. The table below is the one the server matches
// requests against and the one the OpenAPI test checks the document with.
type route struct {
	method  string
	pattern string // segments; "{id}" matches one id, "{name}" one name
	auth    bool
	h       func(s *Server, c *fasthttp.RequestCtx, tenant, id string)
}

var routes = []route{
	{"GET", "/healthz", false, (*Server).healthz},
	{"GET", "/readyz", false, (*Server).readyz},
	{"GET", "/metrics", false, (*Server).metrics},
	{"GET", "/openapi.json", false, (*Server).openapi},
	{"POST", "/api/v1/files", true, (*Server).uploadFile},
	{"GET", "/api/v1/files", true, (*Server).listFiles},
	{"GET", "/api/v1/files/{id}", true, (*Server).getFile},
	{"DELETE", "/api/v1/files/{id}", true, (*Server).deleteFile},
	{"POST", "/api/v1/jobs", true, (*Server).postJob},
	{"GET", "/api/v1/jobs", true, (*Server).listJobs},
	{"GET", "/api/v1/jobs/{id}", true, (*Server).getJob},
	{"DELETE", "/api/v1/jobs/{id}", true, (*Server).cancelJob},
	{"GET", "/api/v1/jobs/{id}/result", true, (*Server).getResult},
	{"GET", "/", true, (*Server).statusPage},
	{"GET", "/api/v1/collectors", true, (*Server).listCollectors},
	{"PUT", "/api/v1/collectors/scale", true, (*Server).scaleCollectors},
	{"GET", "/api/v1/collectors/{name}/exporters", true, (*Server).collectorExporters},
	{"GET", "/api/v1/collectors/{name}/templates", true, (*Server).collectorTemplates},
	{"GET", "/api/v1/collectors/{name}/metrics", true, (*Server).collectorMetrics},
	{"GET", "/api/v1/pipelines/{name}", true, (*Server).getPipeline},
	{"PUT", "/api/v1/pipelines/{name}", true, (*Server).putPipeline},
	{"POST", "/api/v1/pipelines/{name}/rollback", true, (*Server).rollbackPipeline},
	{"POST", "/api/v1/listeners", true, (*Server).addListener},
}

// publicRoutes answer without a token when Config.PublicStatus is set:
// the read-only fleet views.
var publicRoutes = map[string]bool{
	"GET /":                  true,
	"GET /api/v1/collectors": true,
	"GET /api/v1/collectors/{name}/exporters": true,
	"GET /api/v1/collectors/{name}/templates": true,
	"GET /api/v1/collectors/{name}/metrics":   true,
}

// match reports whether path fits pattern and returns the {id} or {name}
// segment.
func match(pattern, path string) (id string, ok bool) {
	for {
		ps, prest, pmore := strings.Cut(strings.TrimPrefix(pattern, "/"), "/")
		xs, xrest, xmore := strings.Cut(strings.TrimPrefix(path, "/"), "/")
		if ps == "{id}" || ps == "{name}" {
			if xs == "" {
				return "", false
			}
			id = xs
		} else if ps != xs {
			return "", false
		}
		if pmore != xmore {
			return "", false
		}
		if !pmore {
			return id, true
		}
		pattern, path = "/"+prest, "/"+xrest
	}
}

func (s *Server) handle(c *fasthttp.RequestCtx) {
	path := string(c.Path())
	method := string(c.Method())
	if method == "HEAD" {
		method = "GET"
	}
	var allowed []string
	for i := range routes {
		r := &routes[i]
		id, ok := match(r.pattern, path)
		if !ok {
			continue
		}
		if r.method != method {
			allowed = append(allowed, r.method)
			continue
		}
		s.serve(c, r, id)
		return
	}
	if len(allowed) > 0 {
		c.Response.Header.Set("Allow", strings.Join(allowed, ", "))
		fail(c, fasthttp.StatusMethodNotAllowed, apiError{Error: "method_not_allowed", Allowed: allowed})
		s.m.requests.add(1, "other", "405")
		return
	}
	fail(c, fasthttp.StatusNotFound, apiError{Error: "no_route"})
	s.m.requests.add(1, "other", "404")
}

func (s *Server) serve(c *fasthttp.RequestCtx, r *route, id string) {
	defer func() { s.m.requests.add(1, r.method+" "+r.pattern, itoa(c.Response.StatusCode())) }()
	tenant := ""
	if r.auth && !(s.cfg.PublicStatus && publicRoutes[r.method+" "+r.pattern]) {
		t, ok := s.tokens.Load().lookup(c.Request.Header.Peek("Authorization"))
		if !ok {
			c.Response.Header.Set("WWW-Authenticate", `Bearer realm="sluice-api"`)
			fail(c, fasthttp.StatusUnauthorized, apiError{Error: "unauthorized"})
			return
		}
		tenant = t
	}
	if strings.Contains(r.pattern, "{id}") && !validID(id) {
		fail(c, fasthttp.StatusNotFound, apiError{Error: "not_found"})
		return
	}
	r.h(s, c, tenant, id)
}

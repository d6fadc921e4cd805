package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-flow/sluice/controlplane/buildinfo"
)

// route is one entry of the path set `sluice run` and the controller share.
type route struct {
	Route
	auth bool
	h    func(s *Server, ctx *fasthttp.RequestCtx)
}

// routes is the one path set. HEAD is answered wherever GET is.
var routes = []route{
	{Route{"GET", "/healthz"}, false, (*Server).healthz},
	{Route{"GET", "/readyz"}, false, (*Server).readyz},
	{Route{"GET", "/metrics"}, false, (*Server).metrics},
	{Route{"GET", "/openapi.json"}, false, (*Server).openapi},
	{Route{"GET", "/api/v1/status"}, false, (*Server).status},
	{Route{"GET", "/api/v1/exporters"}, false, (*Server).exporters},
	{Route{"GET", "/api/v1/templates"}, false, (*Server).templates},
	{Route{"GET", "/api/v1/pipeline"}, true, (*Server).getPipeline},
	{Route{"PUT", "/api/v1/pipeline"}, true, (*Server).putPipeline},
	{Route{"POST", "/api/v1/listeners"}, true, (*Server).addListener},
	{Route{"DELETE", "/api/v1/listeners"}, true, (*Server).removeListener},
	{Route{"POST", "/api/v1/drain"}, true, (*Server).drain},
}

// Routes returns every method and path the server answers: the shared path
// set and the mounts' routes.
func (s *Server) Routes() []Route {
	rs := make([]Route, 0, len(routes))
	for _, r := range routes {
		rs = append(rs, r.Route)
	}
	for _, m := range s.cfg.Mounts {
		rs = append(rs, m.Routes...)
	}
	return rs
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	for _, m := range s.cfg.Mounts {
		if strings.HasPrefix(path, m.Prefix) {
			if m.Auth && !s.authorized(ctx) {
				return
			}
			m.Handler(ctx)
			return
		}
	}
	method := string(ctx.Method())
	if method == "HEAD" {
		method = "GET"
	}
	var allow []string
	for i := range routes {
		r := &routes[i]
		if r.Path != path {
			continue
		}
		if r.Method != method {
			allow = append(allow, r.Method)
			continue
		}
		if r.auth && !s.authorized(ctx) {
			return
		}
		r.h(s, ctx)
		return
	}
	if len(allow) > 0 {
		ctx.Response.Header.Set("Allow", strings.Join(allow, ", "))
		WriteError(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", method+" "+path+" is not allowed")
		return
	}
	WriteError(ctx, fasthttp.StatusNotFound, "no_route", "no route "+path)
}

// authorized checks the Bearer token, answering 403 or 401 when it fails.
func (s *Server) authorized(ctx *fasthttp.RequestCtx) bool {
	if s.cfg.Token == "" {
		WriteError(ctx, fasthttp.StatusForbidden, "forbidden", "no admin token is configured")
		return false
	}
	auth := ctx.Request.Header.Peek("Authorization")
	want := "Bearer " + s.cfg.Token
	if subtle.ConstantTimeCompare(auth, []byte(want)) != 1 {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="sluice"`)
		WriteError(ctx, fasthttp.StatusUnauthorized, "unauthorized", "a valid Bearer token is needed")
		return false
	}
	return true
}

// WriteError answers with status code and the JSON body {error, message}
// every route uses: error a short code, message for people.
func WriteError(ctx *fasthttp.RequestCtx, code int, kind, message string) {
	b, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{kind, message})
	ctx.SetStatusCode(code)
	ctx.SetContentType("application/json")
	ctx.Write(b)
	ctx.WriteString("\n")
}

// WriteJSON answers 200 with v as JSON.
func WriteJSON(ctx *fasthttp.RequestCtx, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(ctx, fasthttp.StatusInternalServerError, "internal", "encoding the response: "+err.Error())
		return
	}
	ctx.SetContentType("application/json")
	ctx.Write(b)
	ctx.WriteString("\n")
}

// sourceError answers for an error a source returned: 400 for an
// *InputError, 503 otherwise (the data plane or the bus is away).
func sourceError(ctx *fasthttp.RequestCtx, err error) {
	var ie *InputError
	if errors.As(err, &ie) {
		WriteError(ctx, fasthttp.StatusBadRequest, "invalid_input", err.Error())
		return
	}
	WriteError(ctx, fasthttp.StatusServiceUnavailable, "unavailable", err.Error())
}

func notImplemented(ctx *fasthttp.RequestCtx) {
	WriteError(ctx, fasthttp.StatusNotImplemented, "not_implemented", "this process does not support "+string(ctx.Method())+" "+string(ctx.Path()))
}

// requestWait bounds how long a request waits for the data plane (a
// pipeline put in force, a listener opened).
const requestWait = 10 * time.Second

func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.WriteString("ok\n")
}

func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; charset=utf-8")
	if !s.src.Ready() {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.WriteString("not ready\n")
		return
	}
	ctx.WriteString("ready\n")
}

func (s *Server) metrics(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	b := s.src.AppendMetrics(make([]byte, 0, 16<<10))
	b = s.appendProcessMetrics(b)
	ctx.Write(b)
}

func (s *Server) openapi(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	ctx.Write(s.spec)
}

func (s *Server) exporters(ctx *fasthttp.RequestCtx) {
	if vs, ok := s.src.(ViewSource); ok {
		c, cancel := context.WithTimeout(context.Background(), requestWait)
		defer cancel()
		v, err := vs.ExportersView(c)
		if err != nil {
			sourceError(ctx, err)
			return
		}
		WriteJSON(ctx, v)
		return
	}
	WriteJSON(ctx, s.src.Exporters())
}

func (s *Server) templates(ctx *fasthttp.RequestCtx) {
	if vs, ok := s.src.(ViewSource); ok {
		c, cancel := context.WithTimeout(context.Background(), requestWait)
		defer cancel()
		v, err := vs.TemplatesView(c)
		if err != nil {
			sourceError(ctx, err)
			return
		}
		WriteJSON(ctx, v)
		return
	}
	WriteJSON(ctx, s.src.Templates())
}

func (s *Server) status(ctx *fasthttp.RequestCtx) {
	if ss, ok := s.src.(StatusSource); ok {
		c, cancel := context.WithTimeout(context.Background(), requestWait)
		defer cancel()
		st, err := ss.Status(c)
		if err != nil {
			sourceError(ctx, err)
			return
		}
		WriteJSON(ctx, st)
		return
	}
	// Built from what every Source has.
	st := Status{
		Ready:     s.src.Ready(),
		Version:   buildinfo.Read().Version,
		Started:   s.start.UTC(),
		Listeners: []string{},
		Exporters: len(s.src.Exporters()),
		Templates: len(s.src.Templates()),
	}
	if ps, ok := s.src.(PipelineSource); ok {
		st.Pipeline, _ = ps.Pipeline()
	}
	if ll, ok := s.src.(ListenerLister); ok {
		st.Listeners = ll.Listeners()
	}
	WriteJSON(ctx, st)
}

func (s *Server) getPipeline(ctx *fasthttp.RequestCtx) {
	ps, ok := s.src.(PipelineSource)
	if !ok {
		notImplemented(ctx)
		return
	}
	v, file := ps.Pipeline()
	WriteJSON(ctx, struct {
		Version  uint64 `json:"version"`
		Pipeline string `json:"pipeline"`
	}{v, string(file)})
}

func (s *Server) putPipeline(ctx *fasthttp.RequestCtx) {
	ps, ok := s.src.(PipelineSource)
	if !ok {
		notImplemented(ctx)
		return
	}
	c, cancel := context.WithTimeout(context.Background(), requestWait)
	defer cancel()
	v, err := ps.SetPipeline(c, append([]byte(nil), ctx.PostBody()...))
	if err != nil {
		var ie *InputError
		if errors.As(err, &ie) {
			WriteError(ctx, fasthttp.StatusBadRequest, "invalid_pipeline", err.Error())
			return
		}
		sourceError(ctx, err)
		return
	}
	s.log.Info("pipeline replaced through the admin API", "version", v, "remote", ctx.RemoteAddr().String())
	WriteJSON(ctx, struct {
		Version uint64 `json:"version"`
	}{v})
}

// listenerURL reads the listener's URL from the body ({"url": ...}) or the
// url query parameter.
func listenerURL(ctx *fasthttp.RequestCtx) (string, bool) {
	if u := ctx.QueryArgs().Peek("url"); len(u) > 0 {
		return string(u), true
	}
	var body struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(ctx.PostBody(), &body); err != nil || body.URL == "" {
		WriteError(ctx, fasthttp.StatusBadRequest, "invalid_input", `want {"url": "udp://:4739"} or ?url=`)
		return "", false
	}
	return body.URL, true
}

func (s *Server) addListener(ctx *fasthttp.RequestCtx)    { s.listener(ctx, true) }
func (s *Server) removeListener(ctx *fasthttp.RequestCtx) { s.listener(ctx, false) }

func (s *Server) listener(ctx *fasthttp.RequestCtx, add bool) {
	ls, ok := s.src.(ListenerSource)
	if !ok {
		notImplemented(ctx)
		return
	}
	url, ok := listenerURL(ctx)
	if !ok {
		return
	}
	c, cancel := context.WithTimeout(context.Background(), requestWait)
	defer cancel()
	f := ls.RemoveListener
	if add {
		f = ls.AddListener
	}
	if err := f(c, url); err != nil {
		sourceError(ctx, err)
		return
	}
	s.log.Info("listener changed through the admin API", "url", url, "added", add, "remote", ctx.RemoteAddr().String())
	WriteJSON(ctx, struct {
		URL   string `json:"url"`
		Added bool   `json:"added"`
	}{url, add})
}

// maxDrainWait bounds POST /api/v1/drain's timeout_ms.
const maxDrainWait = 10 * time.Minute

func (s *Server) drain(ctx *fasthttp.RequestCtx) {
	ds, ok := s.src.(DrainSource)
	if !ok {
		notImplemented(ctx)
		return
	}
	body := struct {
		TimeoutMS uint32 `json:"timeout_ms"`
	}{30_000}
	if b := ctx.PostBody(); len(b) > 0 {
		if err := json.Unmarshal(b, &body); err != nil {
			WriteError(ctx, fasthttp.StatusBadRequest, "invalid_input", `want {"timeout_ms": N}: `+err.Error())
			return
		}
	}
	wait := min(time.Duration(body.TimeoutMS)*time.Millisecond, maxDrainWait)
	c, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	if err := ds.Drain(c); err != nil {
		sourceError(ctx, err)
		return
	}
	s.log.Info("drained through the admin API", "took", time.Since(start), "remote", ctx.RemoteAddr().String())
	WriteJSON(ctx, struct {
		Drained bool    `json:"drained"`
		Seconds float64 `json:"seconds"`
	}{true, time.Since(start).Seconds()})
}

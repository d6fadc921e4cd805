package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-flow/sluice/controlplane/fleet"
)

// fleetWait bounds a fleet request as a whole; each pod has the fleet's
// own, shorter, timeout inside it.
const fleetWait = 30 * time.Second

func fleetCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), fleetWait)
}

func (s *Server) listCollectors(c *fasthttp.RequestCtx, _, _ string) {
	ctx, cancel := fleetCtx()
	defer cancel()
	writeJSON(c, fasthttp.StatusOK, s.fleet.Collectors(ctx))
}

func (s *Server) collectorExporters(c *fasthttp.RequestCtx, _, name string) {
	s.passthrough(c, name, "exporters")
}

func (s *Server) collectorTemplates(c *fasthttp.RequestCtx, _, name string) {
	s.passthrough(c, name, "templates")
}

func (s *Server) collectorMetrics(c *fasthttp.RequestCtx, _, name string) {
	s.passthrough(c, name, "metrics")
}

func (s *Server) passthrough(c *fasthttp.RequestCtx, name, what string) {
	ctx, cancel := fleetCtx()
	defer cancel()
	code, ct, body, ok, err := s.fleet.Passthrough(ctx, name, what)
	switch {
	case !ok:
		fail(c, fasthttp.StatusNotFound, apiError{Error: "unknown_collector", Message: "no collector named " + name})
	case err != nil:
		fail(c, fasthttp.StatusBadGateway, apiError{Error: "unreachable", Message: err.Error()})
	default:
		c.SetStatusCode(code)
		c.SetContentType(ct)
		c.Write(body)
	}
}

func (s *Server) getPipeline(c *fasthttp.RequestCtx, _, name string) {
	if !fleet.ValidName(name) {
		fail(c, fasthttp.StatusNotFound, apiError{Error: "not_found", Message: "no pipeline named " + name})
		return
	}
	ctx, cancel := fleetCtx()
	defer cancel()
	v, err := s.fleet.Pipeline(ctx, name)
	if err != nil {
		s.fleetError(c, err)
		return
	}
	writeJSON(c, fasthttp.StatusOK, v)
}

func (s *Server) putPipeline(c *fasthttp.RequestCtx, _, name string) {
	if !fleet.ValidName(name) {
		fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_name", Param: "name",
			Message: "a pipeline name is a DNS label: lower-case letters, digits and '-', at most 63"})
		return
	}
	body, ok := readJSONBody(c)
	if !ok {
		return
	}
	ctx, cancel := fleetCtx()
	defer cancel()
	r, err := s.fleet.Put(ctx, name, body)
	if err != nil {
		s.fleetError(c, err)
		return
	}
	s.log.Info("frontend: pipeline stored and pushed", "name", name, "version", r.Version, "complete", r.Complete)
	writeJSON(c, fasthttp.StatusOK, r)
}

func (s *Server) rollbackPipeline(c *fasthttp.RequestCtx, _, name string) {
	if !fleet.ValidName(name) {
		fail(c, fasthttp.StatusNotFound, apiError{Error: "not_found", Message: "no pipeline named " + name})
		return
	}
	body, ok := readJSONBody(c)
	if !ok {
		return
	}
	var req struct {
		Version uint64 `json:"version"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_request", Message: `want {"version": N} (0 or none: the one before the newest): ` + err.Error()})
			return
		}
	}
	ctx, cancel := fleetCtx()
	defer cancel()
	r, err := s.fleet.Rollback(ctx, name, req.Version)
	if err != nil {
		s.fleetError(c, err)
		return
	}
	writeJSON(c, fasthttp.StatusOK, r)
}

func (s *Server) addListener(c *fasthttp.RequestCtx, _, _ string) {
	body, ok := readJSONBody(c)
	if !ok {
		return
	}
	var req struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.URL == "" {
		fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_request", Param: "url", Message: `want {"url": "udp://:4739"}`})
		return
	}
	ctx, cancel := fleetCtx()
	defer cancel()
	res := s.fleet.AddListener(ctx, req.URL)
	all := true
	for _, r := range res {
		all = all && r.OK
	}
	writeJSON(c, fasthttp.StatusOK, struct {
		URL      string                 `json:"url"`
		Complete bool                   `json:"complete"`
		Pods     []fleet.ListenerResult `json:"pods"`
	}{req.URL, all, res})
}

func (s *Server) scaleCollectors(c *fasthttp.RequestCtx, _, _ string) {
	body, ok := readJSONBody(c)
	if !ok {
		return
	}
	var req struct {
		Replicas *int `json:"replicas"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Replicas == nil {
		fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_request", Param: "replicas", Message: `want {"replicas": N}`})
		return
	}
	ctx, cancel := fleetCtx()
	defer cancel()
	st, err := s.fleet.Scale(ctx, *req.Replicas)
	if err != nil {
		s.fleetError(c, err)
		return
	}
	writeJSON(c, fasthttp.StatusOK, st)
}

// fleetError answers an error of package fleet.
func (s *Server) fleetError(c *fasthttp.RequestCtx, err error) {
	var ie *fleet.InvalidError
	switch {
	case errors.As(err, &ie):
		fail(c, fasthttp.StatusBadRequest, apiError{Error: "invalid_pipeline", Message: err.Error(), Line: ie.Line})
	case errors.Is(err, fleet.ErrNotFound):
		fail(c, fasthttp.StatusNotFound, apiError{Error: "not_found", Message: err.Error()})
	case fleet.IsBounds(err):
		fail(c, fasthttp.StatusBadRequest, apiError{Error: "out_of_bounds", Param: "replicas", Message: err.Error()})
	case errors.Is(err, fleet.ErrNotKubernetes):
		fail(c, fasthttp.StatusConflict, apiError{Error: "not_kubernetes", Message: err.Error()})
	default:
		s.logs.Warn(s.log, "frontend: fleet", "err", err)
		fail(c, fasthttp.StatusServiceUnavailable, apiError{Error: "unavailable", Message: err.Error()})
	}
}

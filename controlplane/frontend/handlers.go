package frontend

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

//go:embed openapi.json
var openapiDoc []byte

func (s *Server) healthz(c *fasthttp.RequestCtx, _, _ string) {
	writeJSON(c, fasthttp.StatusOK, struct {
		Status string `json:"status"`
	}{"ok"})
}

// readyView is /readyz's answer.
type readyView struct {
	Ready   bool `json:"ready"`
	Redis   bool `json:"redis"`
	Workers int  `json:"workers"`
}

func (s *Server) readyz(c *fasthttp.RequestCtx, _, _ string) {
	v := readyView{Redis: s.redisUp.Load(), Workers: len(s.broker.Workers())}
	v.Ready = v.Redis && v.Workers > 0
	code := fasthttp.StatusOK
	if !v.Ready {
		code = fasthttp.StatusServiceUnavailable
	}
	writeJSON(c, code, v)
}

func (s *Server) metrics(c *fasthttp.RequestCtx, _, _ string) {
	c.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	c.Write(s.appendMetrics(make([]byte, 0, 8<<10)))
}

func (s *Server) openapi(c *fasthttp.RequestCtx, _, _ string) {
	c.SetContentType("application/json")
	c.Write(openapiDoc)
}

// fileView is a file as the API shows it.
type fileView struct {
	ID      string    `json:"id"`
	Name    string    `json:"name,omitempty"`
	Type    string    `json:"type"`
	Bytes   int64     `json:"bytes"`
	Created time.Time `json:"created"`
}

func viewFile(f *fileRecord) fileView {
	return fileView{ID: f.ID, Name: f.Name, Type: f.Type, Bytes: f.Bytes, Created: time.UnixMilli(f.Created).UTC()}
}

func (s *Server) listFiles(c *fasthttp.RequestCtx, tenant, _ string) {
	fs, err := s.st.listFiles(c, tenant)
	if err != nil {
		s.storeError(c, err)
		return
	}
	out := struct {
		Files []fileView `json:"files"`
	}{Files: make([]fileView, 0, len(fs))}
	for _, f := range fs {
		out.Files = append(out.Files, viewFile(f))
	}
	writeJSON(c, fasthttp.StatusOK, out)
}

func (s *Server) getFile(c *fasthttp.RequestCtx, tenant, id string) {
	f, err := s.st.getFile(c, tenant, id)
	if err != nil {
		s.storeError(c, err)
		return
	}
	writeJSON(c, fasthttp.StatusOK, viewFile(f))
}

func (s *Server) deleteFile(c *fasthttp.RequestCtx, tenant, id string) {
	if err := s.st.deleteFile(c, tenant, id); err != nil {
		s.storeError(c, err)
		return
	}
	_ = os.Remove(s.filePath(tenant, id))
	c.SetStatusCode(fasthttp.StatusNoContent)
}

// jobRequest is the body of POST /api/v1/jobs.
type jobRequest struct {
	Type   string          `json:"type"`
	Files  []string        `json:"files"`
	Params json.RawMessage `json:"params"`
}

// maxJobFiles bounds the files of one job.
const maxJobFiles = 64

func (s *Server) postJob(c *fasthttp.RequestCtx, tenant, _ string) {
	label := s.tenantLabel(tenant)
	body, ok := readJSONBody(c)
	if !ok {
		return
	}
	var req jobRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.m.rejected.add(1, "invalid")
		fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_request", Message: "body: " + err.Error()})
		return
	}
	if !slices.Contains(s.types, req.Type) {
		s.m.rejected.add(1, "invalid")
		fail(c, fasthttp.StatusBadRequest, apiError{Error: "unknown_job_type", Param: "type",
			Message: "unknown job type " + strconv.Quote(req.Type), Allowed: sortedTypes(s.types)})
		return
	}
	if err := s.check(req.Type, req.Params); err != nil {
		s.m.rejected.add(1, "invalid")
		e := apiError{Error: "bad_params", Message: err.Error()}
		var ie *InputError
		if errors.As(err, &ie) {
			e.Param, e.Column = ie.Param, ie.Column
		}
		fail(c, fasthttp.StatusBadRequest, e)
		return
	}
	if len(req.Files) > maxJobFiles || len(req.Files) == 0 && req.Type != echoType {
		s.m.rejected.add(1, "invalid")
		fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_request", Param: "files",
			Message: "a job takes 1 to " + itoa(maxJobFiles) + " files"})
		return
	}
	if !s.redisUp.Load() {
		s.m.rejected.add(1, "unavailable")
		s.storeError(c, errors.New("redis down"))
		return
	}
	idem := string(c.Request.Header.Peek("Idempotency-Key"))
	if len(idem) > 200 {
		fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_request", Param: "Idempotency-Key", Message: "longer than 200 bytes"})
		return
	}
	for i, f := range req.Files {
		if !validID(f) {
			fail(c, fasthttp.StatusNotFound, apiError{Error: "not_found", Param: "files[" + itoa(i) + "]"})
			return
		}
		fr, err := s.st.getFile(c, tenant, f)
		if err != nil {
			if errors.Is(err, errNotFound) {
				fail(c, fasthttp.StatusNotFound, apiError{Error: "not_found", Param: "files[" + itoa(i) + "]"})
				return
			}
			s.storeError(c, err)
			return
		}
		if ft, ok := s.an.(fileTyper); ok {
			if allowed := ft.FileTypes(req.Type); allowed != nil && !slices.Contains(allowed, fr.Type) {
				s.m.rejected.add(1, "invalid")
				fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_file", Param: "files[" + itoa(i) + "]",
					Message: "a " + req.Type + " job reads " + strings.Join(allowed, " or ") + " files, not " + fr.Type, Allowed: allowed})
				return
			}
		}
	}
	rec := &jobRecord{ID: newID(), Tenant: tenant, Type: req.Type, State: stateQueued, Files: req.Files,
		Params: req.Params, Created: time.Now().UnixMilli()}
	id, dup, busy, err := s.st.createJob(c, rec, idem, s.cfg.MaxQueued, s.cfg.MaxJobsPerTenant, s.cfg.JobTTL)
	switch {
	case err != nil:
		s.m.rejected.add(1, "unavailable")
		s.storeError(c, err)
	case busy:
		s.m.rejected.add(1, "busy")
		c.Response.Header.Set("Retry-After", strconv.Itoa(int(max(s.cfg.RetryAfter.Seconds(), 1))))
		fail(c, fasthttp.StatusTooManyRequests, apiError{Error: "server_busy"})
	default:
		if !dup {
			s.m.posted.add(1, label)
			s.run.poke()
		}
		c.Response.Header.Set("Location", "/api/v1/jobs/"+id)
		writeJSON(c, fasthttp.StatusAccepted, struct {
			ID string `json:"id"`
		}{id})
	}
}

// check validates a job's params.
func (s *Server) check(typ string, params json.RawMessage) error {
	if typ == echoType {
		_, err := parseEcho(params)
		return err
	}
	return s.an.Check(typ, params)
}

// readJSONBody reads a bounded JSON body (413 beyond maxJSONBody).
func readJSONBody(c *fasthttp.RequestCtx) ([]byte, bool) {
	if c.Request.Header.ContentLength() > maxJSONBody {
		fail(c, fasthttp.StatusRequestEntityTooLarge, apiError{Error: "too_large", Message: "body over " + itoa(maxJSONBody) + " bytes"})
		return nil, false
	}
	r := c.RequestBodyStream()
	if r == nil {
		r = bytes.NewReader(c.Request.Body())
	}
	b, err := io.ReadAll(io.LimitReader(r, maxJSONBody+1))
	if err != nil {
		fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_request", Message: "reading the body: " + err.Error()})
		return nil, false
	}
	if len(b) > maxJSONBody {
		fail(c, fasthttp.StatusRequestEntityTooLarge, apiError{Error: "too_large", Message: "body over " + itoa(maxJSONBody) + " bytes"})
		return nil, false
	}
	return b, true
}

// jobView is a job as the API shows it.
type jobView struct {
	ID       string     `json:"id"`
	Type     string     `json:"type"`
	State    string     `json:"state"`
	Progress float64    `json:"progress"`
	Error    string     `json:"error,omitempty"`
	Files    []string   `json:"files"`
	Created  time.Time  `json:"created"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	Attempts int        `json:"attempts"`
	Worker   string     `json:"worker,omitempty"`
	Formats  []string   `json:"formats,omitempty"`
}

func viewJob(r *jobRecord) jobView {
	v := jobView{ID: r.ID, Type: r.Type, State: r.State, Progress: r.Progress, Error: r.Error, Files: r.Files,
		Created: time.UnixMilli(r.Created).UTC(), Attempts: r.Attempts, Worker: r.Worker}
	if v.Files == nil {
		v.Files = []string{}
	}
	if r.Started > 0 {
		t := time.UnixMilli(r.Started).UTC()
		v.Started = &t
	}
	if r.Finished > 0 {
		t := time.UnixMilli(r.Finished).UTC()
		v.Finished = &t
	}
	for _, m := range r.Results {
		v.Formats = append(v.Formats, m.Format)
	}
	return v
}

func (s *Server) getJob(c *fasthttp.RequestCtx, tenant, id string) {
	r, err := s.st.getJob(c, tenant, id)
	if err != nil {
		s.storeError(c, err)
		return
	}
	writeJSON(c, fasthttp.StatusOK, viewJob(r))
}

// Paging of GET /api/v1/jobs.
const (
	defaultPage = 50
	maxPage     = 500
)

func (s *Server) listJobs(c *fasthttp.RequestCtx, tenant, _ string) {
	args := c.QueryArgs()
	offset, limit := 0, defaultPage
	if b := args.Peek("offset"); b != nil {
		n, err := strconv.Atoi(string(b))
		if err != nil || n < 0 {
			fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_request", Param: "offset", Message: "want an integer >= 0"})
			return
		}
		offset = n
	}
	if b := args.Peek("limit"); b != nil {
		n, err := strconv.Atoi(string(b))
		if err != nil || n < 1 || n > maxPage {
			fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_request", Param: "limit", Message: "want 1 to " + itoa(maxPage)})
			return
		}
		limit = n
	}
	recs, total, err := s.st.listJobs(c, tenant, offset, limit)
	if err != nil {
		s.storeError(c, err)
		return
	}
	out := struct {
		Jobs  []jobView `json:"jobs"`
		Total int64     `json:"total"`
		Next  *int      `json:"next,omitempty"`
	}{Jobs: make([]jobView, 0, len(recs)), Total: total}
	for _, r := range recs {
		out.Jobs = append(out.Jobs, viewJob(r))
	}
	if int64(offset+limit) < total {
		n := offset + limit
		out.Next = &n
	}
	writeJSON(c, fasthttp.StatusOK, out)
}

func (s *Server) cancelJob(c *fasthttp.RequestCtx, tenant, id string) {
	prev, err := s.st.cancelJob(c, tenant, id, time.Now().UnixMilli())
	if err != nil {
		s.storeError(c, err)
		return
	}
	if prev != stateQueued && prev != stateRunning {
		fail(c, fasthttp.StatusConflict, apiError{Error: "finished", State: prev, Message: "the job has ended"})
		return
	}
	if prev == stateRunning {
		s.broker.Cancel(id) // a no-op unless it runs here; other replicas learn it from Redis
	}
	s.completed(context.WithoutCancel(c), id)
	s.getJob(c, tenant, id)
}

func (s *Server) getResult(c *fasthttp.RequestCtx, tenant, id string) {
	r, err := s.st.getJob(c, tenant, id)
	if err != nil {
		s.storeError(c, err)
		return
	}
	if r.State != stateDone {
		fail(c, fasthttp.StatusConflict, apiError{Error: "not_done", State: r.State, Message: r.Error})
		return
	}
	if len(r.Results) == 0 {
		fail(c, fasthttp.StatusNotFound, apiError{Error: "no_result"})
		return
	}
	m := r.Results[0]
	if f := string(c.QueryArgs().Peek("format")); f != "" {
		i := slices.IndexFunc(r.Results, func(m resultMeta) bool { return m.Format == f })
		if i < 0 {
			var allowed []string
			for _, m := range r.Results {
				allowed = append(allowed, m.Format)
			}
			fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_request", Param: "format",
				Message: "no result in format " + strconv.Quote(f), Allowed: allowed})
			return
		}
		m = r.Results[i]
	}
	c.SetContentType(m.ContentType)
	if m.File {
		f, err := os.Open(s.resultPath(tenant, id, m.Format))
		if err != nil {
			fail(c, fasthttp.StatusNotFound, apiError{Error: "result_gone", Message: "the result file is gone"})
			return
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			fail(c, fasthttp.StatusInternalServerError, apiError{Error: "internal"})
			return
		}
		c.SetBodyStream(f, int(st.Size())) // fasthttp closes f
		return
	}
	data, err := s.st.result(c, id, m.Format)
	if err != nil {
		if errors.Is(err, errNotFound) {
			fail(c, fasthttp.StatusNotFound, apiError{Error: "result_gone"})
			return
		}
		s.storeError(c, err)
		return
	}
	c.SetBody(data)
}

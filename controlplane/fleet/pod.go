package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// maxPodBody bounds what is read from a pod: a pod answering endless
// garbage is cut off and counted unreachable.
const maxPodBody = 8 << 20

// podStatus is the part of a pod's /api/v1/status the fleet reads.
type podStatus struct {
	Ready     bool      `json:"ready"`
	Draining  bool      `json:"draining"`
	Version   string    `json:"version"`
	Started   time.Time `json:"started"`
	Listeners []string  `json:"listeners"`
	Pipeline  uint64    `json:"pipeline_version"`
	Exporters int       `json:"exporters"`
	Templates int       `json:"templates"`
}

// podPipeline is a pod's GET /api/v1/pipeline.
type podPipeline struct {
	Version  uint64 `json:"version"`
	Pipeline string `json:"pipeline"`
}

// PodError is a pod's answer other than 2xx.
type PodError struct {
	Status  int
	Kind    string // the body's "error"
	Message string
}

func (e *PodError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("fleet: pod answered %d %s: %s", e.Status, e.Kind, e.Message)
	}
	return fmt.Sprintf("fleet: pod answered %d", e.Status)
}

// refused reports whether err is a pod refusing the request itself (4xx),
// as opposed to not answering.
func refused(err error) bool {
	var pe *PodError
	return errors.As(err, &pe) && pe.Status >= 400 && pe.Status < 500
}

// do makes one request to a pod within the fleet's per-pod timeout and
// returns the body of a 2xx answer.
func (f *Fleet) do(ctx context.Context, m Member, method, path string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.URL+path, rd)
	if err != nil {
		return nil, err
	}
	if f.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+f.cfg.Token)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fleet: %s: %w", m.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPodBody+1))
	if err != nil {
		return nil, fmt.Errorf("fleet: %s: %w", m.Name, err)
	}
	if len(b) > maxPodBody {
		return nil, fmt.Errorf("fleet: %s: answer larger than %d bytes", m.Name, maxPodBody)
	}
	if resp.StatusCode/100 != 2 {
		pe := &PodError{Status: resp.StatusCode}
		var e struct{ Error, Message string }
		if json.Unmarshal(b, &e) == nil {
			pe.Kind, pe.Message = e.Error, e.Message
		}
		return b, pe
	}
	return b, nil
}

// getJSON fetches path from a pod into v; an answer that is not JSON is
// an error (a pod answering garbage is unreachable, not half-shown).
func (f *Fleet) getJSON(ctx context.Context, m Member, path string, v any) error {
	b, err := f.do(ctx, m, "GET", path, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("fleet: %s%s: not the API's JSON: %w", m.Name, path, err)
	}
	return nil
}

// podMetrics is what the fleet takes from a pod's /metrics.
type podMetrics struct {
	records      float64
	drops        map[string]float64 // "records/<reason>", "sets/<reason>", "malformed/<reason>"
	sequenceLost float64
}

func parseMetrics(b []byte) (podMetrics, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		return podMetrics{}, fmt.Errorf("fleet: metrics: %w", err)
	}
	pm := podMetrics{drops: map[string]float64{}}
	sum := func(name string, byReason string) float64 {
		fam := fams[name]
		if fam == nil {
			return 0
		}
		var total float64
		for _, m := range fam.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			total += v
			if byReason != "" {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" {
						pm.drops[byReason+"/"+l.GetValue()] += v
					}
				}
			}
		}
		return total
	}
	pm.records = sum("sluice_records_total", "")
	sum("sluice_dropped_records_total", "records")
	sum("sluice_dropped_sets_total", "sets")
	sum("sluice_malformed_total", "malformed")
	pm.sequenceLost = sum("sluice_sequence_lost_total", "")
	for k, v := range pm.drops {
		if v == 0 {
			delete(pm.drops, k)
		}
	}
	return pm, nil
}

// Passthrough answers GET path ("exporters", "templates", "metrics") from
// the pod named name: its status, content type and body. ok is false for a
// pod the fleet does not know.
func (f *Fleet) Passthrough(ctx context.Context, name, what string) (status int, contentType string, body []byte, ok bool, err error) {
	m, ok := f.member(name)
	if !ok {
		return 0, "", nil, false, nil
	}
	path := "/api/v1/" + what
	if what == "metrics" {
		path = "/metrics"
	}
	b, err := f.do(ctx, m, "GET", path, nil)
	var pe *PodError
	if errors.As(err, &pe) {
		return pe.Status, "application/json", b, true, nil
	}
	if err != nil {
		return 0, "", nil, true, err
	}
	ct := "application/json"
	if what == "metrics" {
		ct = "text/plain; version=0.0.4; charset=utf-8"
	} else if !json.Valid(b) {
		return 0, "", nil, true, fmt.Errorf("fleet: %s: not the API's JSON", strings.TrimSpace(m.Name))
	}
	return 200, ct, b, true, nil
}

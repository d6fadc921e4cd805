package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// PodView is one pod in GET /api/v1/collectors.
type PodView struct {
	Name      string `json:"name"`
	URL       string `json:"url"`
	Reachable bool   `json:"reachable"`
	// Error says why an unreachable pod is so.
	Error     string   `json:"error,omitempty"`
	Ready     bool     `json:"ready"`
	Draining  bool     `json:"draining"`
	Version   string   `json:"version,omitempty"`
	Listeners []string `json:"listeners"`
	// Pipeline is the pod's pipeline state (PodApplied, PodOutdated,
	// PodRefused, PodUnreachable) and the fleet version in force.
	Pipeline        string  `json:"pipeline_state"`
	PipelineVersion uint64  `json:"pipeline_version"`
	PipelineError   string  `json:"pipeline_error,omitempty"`
	Exporters       int     `json:"exporters"`
	Templates       int     `json:"templates"`
	RecordsPerSec   float64 `json:"records_per_second"`
	RecordsTotal    float64 `json:"records_total"`
	// Drops are totals by "records/<reason>", "sets/<reason>" and
	// "malformed/<reason>".
	Drops        map[string]float64 `json:"drops"`
	SequenceLost float64            `json:"sequence_lost"`
}

// FleetView is GET /api/v1/collectors.
type FleetView struct {
	Pipeline        string    `json:"pipeline"`
	PipelineVersion uint64    `json:"pipeline_version"`
	Collectors      []PodView `json:"collectors"`
}

// Collectors reads every pod's state concurrently, each within the
// per-pod timeout: an unreachable pod is shown as such.
func (f *Fleet) Collectors(ctx context.Context) FleetView {
	fv := FleetView{Pipeline: f.cfg.Pipeline, Collectors: []PodView{}}
	var hist []Version
	if f.redis != nil {
		hist, _ = f.History(ctx, f.cfg.Pipeline)
	}
	if len(hist) > 0 {
		fv.PipelineVersion = hist[0].Version
	}
	fv.Collectors = each(f.Members(), func(m Member) PodView {
		pv := PodView{Name: m.Name, URL: m.URL, Draining: m.Draining, Listeners: []string{}, Drops: map[string]float64{}}
		r, st := f.inForce(ctx, m, hist)
		pv.Pipeline, pv.PipelineVersion, pv.PipelineError = r.State, r.Version, r.Error
		if r.State == PodUnreachable && st.Started.IsZero() {
			pv.Error = r.Error
			return pv
		}
		pv.Reachable = true
		pv.Ready, pv.Draining = st.Ready, st.Draining || m.Draining
		pv.Version, pv.Exporters, pv.Templates = st.Version, st.Exporters, st.Templates
		if st.Listeners != nil {
			pv.Listeners = st.Listeners
		}
		f.mu.Lock()
		if s := f.samples[m.Name]; s != nil && s.ok {
			if n := len(s.rates); n > 0 {
				pv.RecordsPerSec = s.rates[n-1]
			}
			pv.RecordsTotal, pv.SequenceLost = s.metrics.records, s.metrics.sequenceLost
			for k, v := range s.metrics.drops {
				pv.Drops[k] = v
			}
		}
		f.mu.Unlock()
		return pv
	})
	return fv
}

// ListenerResult is one pod's answer to a listener change.
type ListenerResult struct {
	Pod   string `json:"pod"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// AddListener opens url (udp://:4739, tcp://...) on every pod. An url a
// pod refuses is reported for that pod; the others keep theirs.
func (f *Fleet) AddListener(ctx context.Context, url string) []ListenerResult {
	body, _ := json.Marshal(struct {
		URL string `json:"url"`
	}{url})
	return each(f.Members(), func(m Member) ListenerResult {
		b, err := f.do(ctx, m, "POST", "/api/v1/listeners", body)
		if err != nil {
			return ListenerResult{Pod: m.Name, Error: err.Error()}
		}
		var ok struct {
			Added bool `json:"added"`
		}
		if json.Unmarshal(b, &ok) != nil || !ok.Added {
			return ListenerResult{Pod: m.Name, Error: "fleet: " + m.Name + ": not the API's JSON"}
		}
		return ListenerResult{Pod: m.Name, OK: true}
	})
}

// Scaler changes the number of collector pods (the StatefulSet's /scale).
type Scaler interface {
	// Scale sets the desired replicas and returns the scale as it was and
	// as it is now.
	Scale(ctx context.Context, replicas int) (ScaleStatus, error)
}

// ScaleStatus is the answer to a scale request.
type ScaleStatus struct {
	Previous int `json:"previous"`
	Replicas int `json:"replicas"`
	// Draining names the pods on their way out (they drain on SIGTERM).
	Draining []string `json:"draining"`
}

// BoundsError is a replica count outside 0..MaxReplicas.
type BoundsError struct{ Replicas, Max int }

func (e *BoundsError) Error() string {
	return fmt.Sprintf("fleet: replicas %d outside 0..%d", e.Replicas, e.Max)
}

// Scale asks the Scaler for replicas pods: outside 0..MaxReplicas it is a
// *BoundsError, without a Scaler ErrNotKubernetes.
func (f *Fleet) Scale(ctx context.Context, replicas int) (ScaleStatus, error) {
	if replicas < 0 || replicas > f.cfg.MaxReplicas {
		return ScaleStatus{}, &BoundsError{replicas, f.cfg.MaxReplicas}
	}
	if f.cfg.Scaler == nil {
		return ScaleStatus{}, ErrNotKubernetes
	}
	st, err := f.cfg.Scaler.Scale(ctx, replicas)
	if err != nil {
		return st, err
	}
	for _, m := range f.Members() {
		if m.Draining {
			st.Draining = append(st.Draining, m.Name)
		}
	}
	if st.Draining == nil {
		st.Draining = []string{}
	}
	return st, nil
}

// IsBounds reports whether err is a *BoundsError.
func IsBounds(err error) bool {
	var be *BoundsError
	return errors.As(err, &be)
}

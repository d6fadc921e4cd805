package deploy

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var metricName = regexp.MustCompile(`\bsluice_[a-z_]+\b`)

// TestMonitoringNamesExist: every metric the Grafana dashboard, the
// Prometheus adapter rule and the HPA use is one the code registers (its
// name appears as a string literal in dataplane/ or controlplane/).
func TestMonitoringNamesExist(t *testing.T) {
	var src strings.Builder
	for _, root := range []string{"../dataplane", "../controlplane"} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
				b, _ := os.ReadFile(p)
				src.Write(b)
			}
			return nil
		})
	}
	code := src.String()
	dash, err := os.ReadFile("monitoring/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(dash, &d); err != nil || len(d.Panels) < 6 {
		t.Fatalf("dashboard: %d panels, %v", len(d.Panels), err)
	}
	adapter, err := os.ReadFile("monitoring/prometheus-adapter-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Rules []struct {
			SeriesQuery string `json:"seriesQuery"`
			Name        struct {
				As string `json:"as"`
			} `json:"name"`
		} `json:"rules"`
	}
	if err := yaml.Unmarshal(adapter, &rules); err != nil {
		t.Fatal(err)
	}
	var uses []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			uses = append(uses, metricName.FindAllString(tg.Expr, -1)...)
		}
	}
	for _, r := range rules.Rules {
		uses = append(uses, metricName.FindAllString(r.SeriesQuery, -1)...)
	}
	if len(uses) == 0 {
		t.Fatal("no metric names found")
	}
	for _, m := range uses {
		if !strings.Contains(code, `"`+m+`"`) {
			t.Errorf("%s is used for monitoring but no code registers it", m)
		}
	}
	// The HPA asks for what the adapter rule serves.
	hpaMetric := ""
	for _, o := range render(t, "statefulset") {
		if o.kind == "HorizontalPodAutoscaler" && o.name == "collector" {
			var h struct {
				Spec struct {
					Metrics []struct {
						Pods *struct{ Metric struct{ Name string } }
					}
				}
			}
			json.Unmarshal(o.raw, &h)
			for _, m := range h.Spec.Metrics {
				if m.Pods != nil {
					hpaMetric = m.Pods.Metric.Name
				}
			}
		}
	}
	if len(rules.Rules) == 0 || rules.Rules[0].Name.As != hpaMetric {
		t.Errorf("the HPA asks for %q, the adapter rule serves %+v", hpaMetric, rules.Rules)
	}
}

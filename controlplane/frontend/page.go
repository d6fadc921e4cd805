package frontend

import (
	"bytes"
	"html/template"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/sluice-flow/sluice/controlplane/fleet"
)

// statusTmpl is the status page: server-rendered, an inline SVG sparkline
// of records/s per pod, and one line of script that reloads it.
var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"rate": func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"pct":  func(v float64) string { return strconv.FormatFloat(v*100, 'f', 0, 64) + " %" },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sluice collectors</title>
<link rel="icon" href="data:,">
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:left}
.down{color:#b00}.ok{color:#070}.warn{color:#a60}svg{vertical-align:middle}
</style></head><body>
<h1>Sluice collectors</h1>
<p id="summary">Pipeline <b>{{.Pipeline}}</b> version <b id="pipeline-version">{{.PipelineVersion}}</b>;
<span id="pod-count">{{len .Pods}}</span> pods, <span id="reachable-count">{{.Reachable}}</span> reachable,
<span id="total-rate">{{rate .TotalRate}}</span> records/s in all.</p>
<table id="pods"><thead><tr><th>Pod</th><th>State</th><th>Pipeline</th><th>Exporters</th><th>Templates</th>
<th>Records/s</th><th>Last minutes</th><th>Drops</th><th>Sequence lost</th></tr></thead><tbody>
{{range .Pods}}<tr class="pod" data-pod="{{.Name}}">
<td class="name">{{.Name}}</td>
{{if .Reachable}}<td class="state {{if .Ready}}ok{{else}}warn{{end}}">{{if .Draining}}draining{{else if .Ready}}ready{{else}}not ready{{end}}</td>
{{else}}<td class="state down" title="{{.Error}}">unreachable</td>{{end}}
<td class="pipeline {{if eq .Pipeline "applied"}}ok{{else}}warn{{end}}" title="{{.PipelineError}}">{{.Pipeline}} v{{.PipelineVersion}}</td>
<td class="exporters">{{.Exporters}}</td><td class="templates">{{.Templates}}</td>
<td class="rps" data-value="{{.RecordsPerSec}}">{{rate .RecordsPerSec}}</td>
<td>{{.Spark}}</td>
<td class="drops">{{range .Drops}}{{.}}<br>{{else}}0{{end}}</td>
<td class="seqlost">{{.SequenceLost}}</td></tr>
{{end}}</tbody></table>
<h2>Recent jobs</h2>
{{if .Tenant}}<table id="jobs"><thead><tr><th>Job</th><th>Type</th><th>State</th><th>Progress</th><th>Created</th><th>Worker</th></tr></thead><tbody>
{{range .Jobs}}<tr class="job" data-job="{{.ID}}"><td class="id">{{.ID}}</td><td class="type">{{.Type}}</td>
<td class="state" title="{{.Error}}">{{.State}}</td><td>{{pct .Progress}}</td><td>{{.Created.Format "2006-01-02 15:04:05Z07:00"}}</td><td>{{.Worker}}</td></tr>
{{else}}<tr><td colspan="6">No jobs yet.</td></tr>{{end}}</tbody></table>
{{else}}<p id="jobs-hidden">Jobs belong to a tenant: they are listed when the page is asked for with the tenant's token.</p>{{end}}
<p><small>Reloads every 5 s. The same data: <a href="/api/v1/collectors">/api/v1/collectors</a>.</small></p>
<script>setTimeout(function () { location.reload(); }, 5000);</script>
</body></html>
`))

type podRow struct {
	fleet.PodView
	Spark template.HTML
	Drops []string
}

// recentJobs is how many of the tenant's jobs the status page lists.
const recentJobs = 10

func (s *Server) statusPage(c *fasthttp.RequestCtx, tenant, _ string) {
	ctx, cancel := fleetCtx()
	defer cancel()
	fv := s.fleet.Collectors(ctx)
	data := struct {
		Pipeline        string
		PipelineVersion uint64
		Pods            []podRow
		Reachable       int
		TotalRate       float64
		Tenant          string
		Jobs            []jobView
	}{Pipeline: fv.Pipeline, PipelineVersion: fv.PipelineVersion}
	if tenant == "" { // a public page: jobs only for a token that names a tenant
		tenant, _ = s.tokens.Load().lookup(c.Request.Header.Peek("Authorization"))
	}
	if tenant != "" {
		data.Tenant = tenant
		recs, _, err := s.st.listJobs(ctx, tenant, 0, recentJobs)
		if err != nil {
			s.log.Warn("status page: jobs", "err", err)
		}
		for _, r := range recs {
			data.Jobs = append(data.Jobs, viewJob(r))
		}
	}
	for _, p := range fv.Collectors {
		r := podRow{PodView: p, Spark: sparkline(s.fleet.Rates(p.Name), 160, 28)}
		for k, v := range p.Drops {
			r.Drops = append(r.Drops, k+" "+strconv.FormatFloat(v, 'f', -1, 64))
		}
		sort.Strings(r.Drops)
		if p.Reachable {
			data.Reachable++
			data.TotalRate += p.RecordsPerSec
		}
		data.Pods = append(data.Pods, r)
	}
	var b bytes.Buffer
	if err := statusTmpl.Execute(&b, data); err != nil {
		panic("BUG: frontend: status page: " + err.Error())
	}
	c.SetContentType("text/html; charset=utf-8")
	c.Response.Header.Set("Cache-Control", "no-store")
	c.Write(b.Bytes())
}

// sparkline draws rates (oldest first) as an inline SVG polyline w by h,
// scaled to the largest value.
func sparkline(rates []float64, w, h int) template.HTML {
	var b strings.Builder
	b.WriteString(`<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="` + strconv.Itoa(w) + `" height="` + strconv.Itoa(h) +
		`" viewBox="0 0 ` + strconv.Itoa(w) + " " + strconv.Itoa(h) + `" data-points="` + strconv.Itoa(len(rates)) + `">`)
	if len(rates) > 1 {
		top := 0.0
		for _, r := range rates {
			top = math.Max(top, r)
		}
		if top == 0 {
			top = 1
		}
		b.WriteString(`<polyline fill="none" stroke="#36c" stroke-width="1.5" points="`)
		for i, r := range rates {
			x := float64(i) * float64(w-2) / float64(len(rates)-1)
			y := float64(h-2) - r/top*float64(h-4)
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.FormatFloat(x+1, 'f', 1, 64) + "," + strconv.FormatFloat(y, 'f', 1, 64))
		}
		b.WriteString(`"/>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // numbers only: nothing from the request
}

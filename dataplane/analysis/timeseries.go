package analysis

import (
	"context"
	"encoding/csv"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-flow/sluice/dataplane/offline/decode"
)

// TimeseriesResult is a timeseries job's result: per step, the octets,
// packets and flows per second of each series, as an RRD AVERAGE archive
// has them. A flow's counters are spread over the steps its start-end
// interval covers, in proportion to the time it spent in each; a flow of
// no duration falls in the step holding its time.
type TimeseriesResult struct {
	Step time.Duration
	// Start is the start of the first step (steps are aligned on multiples
	// of Step since the Unix epoch); Points is the number of steps, from
	// the first record's to the last's, empty ones included.
	Start  time.Time
	Points int
	Metric Metric
	// SplitBy is TimeseriesParams.SplitBy.
	SplitBy []string
	// Series: "total" alone, or one per top key (most Metric first) and
	// "other" for the rest.
	Series []Series
	// Untimed counts records without usable flow times (none in the
	// template, or IPFIX sysUpTime times before the exporter's
	// systemInitTimeMilliseconds is known): they are placed at their
	// message's export time. Clipped counts records wholly outside
	// TimeseriesParams Start..End.
	Untimed, Clipped uint64
	// Total counts the records the filter kept; Overflow the records of
	// keys a split's first pass had no room for (counted in "other").
	Total, Overflow Totals
	Summary         Summary
	// Width and Height are the PNG chart's size in pixels.
	Width, Height int
}

// Series is one line of a time series.
type Series struct {
	// Name is "total", "other", or the key's values separated by spaces
	// ("-" for an absent one).
	Name string
	// Key is the split key's values; nil for "total" and "other".
	Key []Value
	// Octets, Packets and Flows are the series' sums (fractional when
	// Start..End cut flows).
	Octets, Packets, Flows float64
	// Per-second rates, one per point.
	OctetsPerS, PacketsPerS, FlowsPerS []float64
}

// Timeseries runs a timeseries job. With SplitBy it reads the input twice:
// first to rank the keys, then to build the series of the top ones.
func Timeseries(ctx context.Context, in Input, p TimeseriesParams) (*TimeseriesResult, error) {
	c, err := p.compile()
	if err != nil {
		return nil, err
	}
	passes := 1
	if c.split {
		passes = 2
	}
	s, err := newScan(ctx, &in, c.compiled, passes)
	if err != nil {
		return nil, err
	}
	res := &TimeseriesResult{Step: time.Duration(c.step), Metric: c.metric, SplitBy: p.SplitBy, Width: c.w, Height: c.h}
	if !c.split {
		tl := newTimeline(&c, 1)
		k := &totalSink{s: s, tl: tl}
		if err := s.run(k, false); err != nil {
			return nil, err
		}
		res.Total = k.total
		tl.result(res, []Series{{Name: "total"}})
		res.Summary = s.sum
		return res, nil
	}
	switch w := c.key.width; {
	case w <= 8:
		err = runSplit[[8]byte](s, &c, res)
	case w <= 16:
		err = runSplit[[16]byte](s, &c, res)
	case w <= 32:
		err = runSplit[[32]byte](s, &c, res)
	default:
		err = runSplit[[64]byte](s, &c, res)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func runSplit[K keyArray](s *scan, c *seriesConfig, res *TimeseriesResult) error {
	rank := newKeyCounter[K](&c.key, s.in.maxKeys())
	if err := s.run(rank, false); err != nil {
		return err
	}
	top := rank.t.top(c.top, c.metric)
	k := &splitSink[K]{s: s, key: &c.key, idx: make(map[K]int, len(top)), other: len(top)}
	series := make([]Series, 0, len(top)+1)
	for si, i := range top {
		key := *rank.t.key(i)
		k.idx[key] = si
		vals := c.key.values(keyBytes(&key))
		names := make([]string, len(vals))
		for j, v := range vals {
			if names[j] = v.String(); v.Bytes == nil {
				names[j] = "-"
			}
		}
		series = append(series, Series{Name: strings.Join(names, " "), Key: vals})
	}
	hasOther := rank.t.len() > len(top) || rank.t.over.Records > 0
	if hasOther {
		series = append(series, Series{Name: "other"})
	}
	k.tl = newTimeline(c, len(series))
	if err := s.run(k, false); err != nil {
		return err
	}
	res.Total, res.Overflow, res.Summary = rank.total, rank.t.over, s.sum
	k.tl.result(res, series)
	return nil
}

// totalSink adds every record to one series.
type totalSink struct {
	s     *scan
	plans layoutCache[flowPlan]
	tl    *timeline
	total Totals
}

func (k *totalSink) record(r *decode.Record) {
	p := k.plans.lookup(r.Rec.Layout)
	if p == nil {
		fp := newFlowPlan(r.Rec.Layout)
		p = &fp
		k.plans.store(r.Rec.Layout, p)
	}
	c := p.counters(r.Rec)
	k.total.add(c)
	start, end, ok := k.s.span(p, r)
	if !ok {
		k.tl.untimed++
	}
	if err := k.tl.add(0, start, end, c); err != nil {
		k.s.fail = err
	}
}

// splitSink adds a record to its key's series, or to "other".
type splitSink[K keyArray] struct {
	s     *scan
	key   *keySpec
	plans layoutCache[keyedPlan]
	idx   map[K]int
	other int
	tl    *timeline
}

func (k *splitSink[K]) record(r *decode.Record) {
	p := k.plans.lookup(r.Rec.Layout)
	if p == nil {
		p = buildKeyed(&k.plans, k.key, r.Rec.Layout)
	}
	var key K
	p.key.fill(keyBytes(&key), r.Rec)
	si, ok := k.idx[key]
	if !ok {
		si = k.other
	}
	c := p.flow.counters(r.Rec)
	start, end, ok := k.s.span(&p.flow, r)
	if !ok {
		k.tl.untimed++
	}
	if err := k.tl.add(si, start, end, c); err != nil {
		k.s.fail = err
	}
}

// timeline holds the series' steps: for each, what flows put in it
// directly (the partial steps at their ends) and the change of the rate
// of the flows covering whole steps, so a flow costs the same whatever
// its duration. Slots cover steps base..base+len-1; used ones lo..hi.
type timeline struct {
	step         int64
	clipS, clipE int64
	series       [][]slot
	base         int64
	lo, hi       int64
	used         bool
	untimed      uint64
	clipped      uint64
	sums         [][3]float64
	err          error
}

// slot is one step of one series: direct amounts and rate changes of
// octets, packets, flows.
type slot struct {
	d, r [3]float64
}

func newTimeline(c *seriesConfig, n int) *timeline {
	return &timeline{step: c.step, clipS: c.start, clipE: c.end, series: make([][]slot, n), sums: make([][3]float64, n)}
}

// floorDiv divides rounding down; b > 0. One division: the remainder
// is what the product says.
func floorDiv(a, b int64) int64 {
	q := a / b
	if q*b > a {
		q--
	}
	return q
}

// add spreads counters c of a flow from start to end (ns) over series
// si's steps.
func (t *timeline) add(si int, start, end int64, c counts) error {
	if t.err != nil {
		return t.err
	}
	v := [3]float64{float64(c.octets), float64(c.packets), float64(c.flows)}
	if t.clipS != 0 || t.clipE != 0 {
		cs, ce := t.clipS, t.clipE
		if ce == 0 {
			ce = 1<<63 - 1
		}
		if end == start {
			if start < cs || start >= ce {
				t.clipped++
				return nil
			}
		} else {
			s2, e2 := max(start, cs), min(end, ce)
			if e2 <= s2 {
				t.clipped++
				return nil
			}
			if s2 != start || e2 != end {
				f := float64(e2-s2) / float64(end-start)
				v[0], v[1], v[2] = v[0]*f, v[1]*f, v[2]*f
				start, end = s2, e2
			}
		}
	}
	a := floorDiv(start, t.step)
	b := a
	if end > start {
		b = floorDiv(end-1, t.step)
	}
	if !t.used || a < t.lo || b > t.hi {
		if err := t.ensure(a, b); err != nil {
			return err
		}
	}
	sl := t.series[si]
	sum := &t.sums[si]
	sum[0] += v[0]
	sum[1] += v[1]
	sum[2] += v[2]
	i, j := a-t.base, b-t.base
	if i == j {
		x := &sl[i]
		x.d[0] += v[0]
		x.d[1] += v[1]
		x.d[2] += v[2]
		return nil
	}
	inv := 1 / float64(end-start)
	f1 := float64((a+1)*t.step-start) * inv
	f2 := float64(end-b*t.step) * inv
	x, y := &sl[i], &sl[j]
	x.d[0] += v[0] * f1
	x.d[1] += v[1] * f1
	x.d[2] += v[2] * f1
	y.d[0] += v[0] * f2
	y.d[1] += v[1] * f2
	y.d[2] += v[2] * f2
	if j > i+1 {
		fs := float64(t.step) * inv
		r0, r1, r2 := v[0]*fs, v[1]*fs, v[2]*fs
		x = &sl[i+1]
		x.r[0] += r0
		x.r[1] += r1
		x.r[2] += r2
		y.r[0] -= r0
		y.r[1] -= r1
		y.r[2] -= r2
	}
	return nil
}

// ensure makes room for steps a..b (a <= b), growing the slots by half
// again on the side that needs it.
func (t *timeline) ensure(a, b int64) error {
	lo, hi := a, b
	if t.used {
		lo, hi = min(lo, t.lo), max(hi, t.hi)
	}
	if hi-lo >= MaxSteps {
		t.err = &ParamError{Param: "step", Reason: "the records span " + strconv.FormatInt(hi-lo+1, 10) +
			" steps of " + time.Duration(t.step).String() + " from " + time.Unix(0, lo*t.step).UTC().Format(time.RFC3339) +
			" to " + time.Unix(0, (hi+1)*t.step).UTC().Format(time.RFC3339) + ", more than " + strconv.Itoa(MaxSteps) +
			": use a larger step, or start and end"}
		return t.err
	}
	t.lo, t.hi, t.used = lo, hi, true
	n := int64(len(t.series[0]))
	if lo >= t.base && hi < t.base+n {
		return nil
	}
	pad := max((hi-lo+1)/2, 64)
	newBase := t.base
	if n == 0 || lo < t.base {
		newBase = lo - pad
	}
	newEnd := t.base + n
	if n == 0 || hi >= newEnd {
		newEnd = hi + 1 + pad
	}
	for i, old := range t.series {
		s := make([]slot, newEnd-newBase)
		if n > 0 {
			copy(s[t.base-newBase:], old)
		}
		t.series[i] = s
	}
	t.base = newBase
	return nil
}

// result fills res with the series' rates.
func (t *timeline) result(res *TimeseriesResult, series []Series) {
	res.Untimed, res.Clipped = t.untimed, t.clipped
	if !t.used {
		res.Series = series
		return
	}
	res.Start = time.Unix(0, t.lo*t.step).UTC()
	res.Points = int(t.hi - t.lo + 1)
	perS := float64(t.step) / 1e9
	for si := range series {
		s := &series[si]
		s.Octets, s.Packets, s.Flows = t.sums[si][0], t.sums[si][1], t.sums[si][2]
		out := [3][]float64{make([]float64, res.Points), make([]float64, res.Points), make([]float64, res.Points)}
		var rate [3]float64
		sl := t.series[si][t.lo-t.base:]
		for i := range res.Points {
			for m := range 3 {
				rate[m] += sl[i].r[m]
				out[m][i] = (sl[i].d[m] + rate[m]) / perS
			}
		}
		s.OctetsPerS, s.PacketsPerS, s.FlowsPerS = out[0], out[1], out[2]
	}
	res.Series = series
}

// Formats returns "json", "csv" and "png".
func (r *TimeseriesResult) Formats() []string { return []string{"json", "csv", "png"} }

// Write writes the result in a format of Formats.
func (r *TimeseriesResult) Write(w io.Writer, format string) error {
	switch format {
	case "json", "":
		_, err := w.Write(r.AppendJSON(nil))
		return err
	case "csv":
		return r.WriteCSV(w)
	case "png":
		return r.WritePNG(w)
	}
	return errFormat(format, r.Formats())
}

// Times returns the start of every point.
func (r *TimeseriesResult) Times() []time.Time {
	out := make([]time.Time, r.Points)
	for i := range out {
		out[i] = r.Start.Add(time.Duration(i) * r.Step)
	}
	return out
}

func appendFloat(dst []byte, f float64) []byte {
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

func appendFloats(dst []byte, fs []float64) []byte {
	dst = append(dst, '[')
	for i, f := range fs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendFloat(dst, f)
	}
	return append(dst, ']')
}

// AppendJSON appends {"step","step_seconds","start","points","times":[...],
// "metric","split_by","series":[{"name","key","octets","packets","flows",
// "octets_per_s":[...],"packets_per_s":[...],"flows_per_s":[...]}],
// "untimed","clipped","total","overflow","summary"}.
func (r *TimeseriesResult) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"step":`...)
	dst = strconv.AppendQuote(dst, r.Step.String())
	dst = append(dst, `,"step_seconds":`...)
	dst = appendFloat(dst, r.Step.Seconds())
	dst = append(dst, `,"start":`...)
	if r.Points > 0 {
		dst = strconv.AppendQuote(dst, r.Start.Format(time.RFC3339Nano))
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"points":`...)
	dst = strconv.AppendInt(dst, int64(r.Points), 10)
	dst = append(dst, `,"times":[`...)
	for i, t := range r.Times() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendQuote(dst, t.Format(time.RFC3339Nano))
	}
	dst = append(dst, `],"metric":`...)
	dst = strconv.AppendQuote(dst, r.Metric.String())
	dst = append(dst, `,"split_by":`...)
	dst = appendMarshal(dst, r.SplitBy)
	dst = append(dst, `,"series":[`...)
	for i := range r.Series {
		s := &r.Series[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = strconv.AppendQuote(dst, s.Name)
		dst = append(dst, `,"key":`...)
		if s.Key == nil {
			dst = append(dst, "null"...)
		} else {
			dst = append(dst, '{')
			for j, v := range s.Key {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = strconv.AppendQuote(dst, r.SplitBy[j])
				dst = append(dst, ':')
				dst = v.AppendJSON(dst)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, `,"octets":`...)
		dst = appendFloat(dst, s.Octets)
		dst = append(dst, `,"packets":`...)
		dst = appendFloat(dst, s.Packets)
		dst = append(dst, `,"flows":`...)
		dst = appendFloat(dst, s.Flows)
		dst = append(dst, `,"octets_per_s":`...)
		dst = appendFloats(dst, s.OctetsPerS)
		dst = append(dst, `,"packets_per_s":`...)
		dst = appendFloats(dst, s.PacketsPerS)
		dst = append(dst, `,"flows_per_s":`...)
		dst = appendFloats(dst, s.FlowsPerS)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"untimed":`...)
	dst = strconv.AppendUint(dst, r.Untimed, 10)
	dst = append(dst, `,"clipped":`...)
	dst = strconv.AppendUint(dst, r.Clipped, 10)
	dst = append(dst, `,"total":`...)
	dst = appendMarshal(dst, r.Total)
	dst = append(dst, `,"overflow":`...)
	dst = appendMarshal(dst, r.Overflow)
	dst = append(dst, `,"summary":`...)
	dst = appendMarshal(dst, r.Summary)
	return append(dst, "}\n"...)
}

// WriteCSV writes one line per point and series: time, series, the split
// key's elements, octets_per_s, packets_per_s, flows_per_s.
func (r *TimeseriesResult) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	head := append(append([]string{"time", "series"}, r.SplitBy...), "octets_per_s", "packets_per_s", "flows_per_s")
	cw.Write(head)
	line := make([]string, len(head))
	times := r.Times()
	for i := range r.Series {
		s := &r.Series[i]
		line[1] = s.Name
		for j := range r.SplitBy {
			line[2+j] = ""
			if j < len(s.Key) {
				line[2+j] = s.Key[j].String()
			}
		}
		n := 2 + len(r.SplitBy)
		for p, t := range times {
			line[0] = t.Format(time.RFC3339Nano)
			line[n] = strconv.FormatFloat(s.OctetsPerS[p], 'g', -1, 64)
			line[n+1] = strconv.FormatFloat(s.PacketsPerS[p], 'g', -1, 64)
			line[n+2] = strconv.FormatFloat(s.FlowsPerS[p], 'g', -1, 64)
			cw.Write(line)
		}
	}
	cw.Flush()
	return cw.Error()
}

package analysis

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
)

// TopNResult is a topn job's result.
type TopNResult struct {
	By     []string
	Metric Metric
	// Rows are the top keys, sorted by Metric (most first); ties go to the
	// larger other counters, then to the smaller key.
	Rows []TopNRow
	// Keys counts the distinct keys held.
	Keys int
	// Total counts every record the filter kept; Overflow those whose key
	// did not fit in the table (Input.MaxKeys).
	Total, Overflow Totals
	Summary         Summary
}

// TopNRow is one key and its counters.
type TopNRow struct {
	// Key holds one value per TopNParams.By element, in that order.
	Key                    []Value
	Octets, Packets, Flows uint64
}

// TopN runs a topn job.
func TopN(ctx context.Context, in Input, p TopNParams) (*TopNResult, error) {
	c, err := p.compile()
	if err != nil {
		return nil, err
	}
	s, err := newScan(ctx, &in, c.compiled, 1)
	if err != nil {
		return nil, err
	}
	res := &TopNResult{By: p.By, Metric: c.metric}
	switch w := c.key.width; {
	case w <= 8:
		err = runTopN[[8]byte](s, &c, res)
	case w <= 16:
		err = runTopN[[16]byte](s, &c, res)
	case w <= 32:
		err = runTopN[[32]byte](s, &c, res)
	default:
		err = runTopN[[64]byte](s, &c, res)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func runTopN[K keyArray](s *scan, c *topnConfig, res *TopNResult) error {
	k := newKeyCounter[K](&c.key, s.in.maxKeys())
	if err := s.run(k, false); err != nil {
		return err
	}
	t := k.t
	for _, i := range t.top(c.n, c.metric) {
		e := &t.entries[i]
		res.Rows = append(res.Rows, TopNRow{
			Key:    c.key.values(keyBytes(&e.key)),
			Octets: e.c.octets, Packets: e.c.packets, Flows: e.c.flows,
		})
	}
	res.Keys, res.Total, res.Overflow, res.Summary = t.len(), k.total, t.over, s.sum
	return nil
}

// keyCounter is the sink that counts records per key: topn, and the
// first pass of a split time series.
type keyCounter[K keyArray] struct {
	key   *keySpec
	plans layoutCache[keyedPlan]
	t     *table[K]
	total Totals
}

type keyedPlan struct {
	key  keyPlan
	flow flowPlan
}

func newKeyCounter[K keyArray](ks *keySpec, max int) *keyCounter[K] {
	return &keyCounter[K]{key: ks, t: newTable[K](max)}
}

func (k *keyCounter[K]) record(r *decode.Record) {
	p := k.plans.lookup(r.Rec.Layout)
	if p == nil {
		p = buildKeyed(&k.plans, k.key, r.Rec.Layout)
	}
	var key K
	p.key.fill(keyBytes(&key), r.Rec)
	c := p.flow.counters(r.Rec)
	k.total.add(c)
	k.t.add(&key, c)
}

func buildKeyed(c *layoutCache[keyedPlan], ks *keySpec, l *ipfix.Layout) *keyedPlan {
	p := &keyedPlan{key: newKeyPlan(ks, l), flow: newFlowPlan(l)}
	c.store(l, p)
	return p
}

// Formats returns "json" and "csv".
func (r *TopNResult) Formats() []string { return []string{"json", "csv"} }

// Write writes the result in a format of Formats.
func (r *TopNResult) Write(w io.Writer, format string) error {
	switch format {
	case "json", "":
		_, err := w.Write(r.AppendJSON(nil))
		return err
	case "csv":
		return r.WriteCSV(w)
	}
	return errFormat(format, r.Formats())
}

// AppendJSON appends {"rows":[{"<key element>":value,...,"octets":N,
// "packets":N,"flows":N},...], "by", "metric", "keys", "total",
// "overflow", "summary"}.
func (r *TopNResult) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"rows":[`...)
	for i := range r.Rows {
		row := &r.Rows[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		for j, v := range row.Key {
			dst = strconv.AppendQuote(dst, r.By[j])
			dst = append(dst, ':')
			dst = v.AppendJSON(dst)
			dst = append(dst, ',')
		}
		dst = appendCounts(dst, row.Octets, row.Packets, row.Flows)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"by":`...)
	dst = appendMarshal(dst, r.By)
	dst = append(dst, `,"metric":`...)
	dst = strconv.AppendQuote(dst, r.Metric.String())
	dst = append(dst, `,"keys":`...)
	dst = strconv.AppendInt(dst, int64(r.Keys), 10)
	dst = append(dst, `,"total":`...)
	dst = appendMarshal(dst, r.Total)
	dst = append(dst, `,"overflow":`...)
	dst = appendMarshal(dst, r.Overflow)
	dst = append(dst, `,"summary":`...)
	dst = appendMarshal(dst, r.Summary)
	return append(dst, "}\n"...)
}

func appendCounts(dst []byte, o, p, f uint64) []byte {
	dst = append(dst, `"octets":`...)
	dst = strconv.AppendUint(dst, o, 10)
	dst = append(dst, `,"packets":`...)
	dst = strconv.AppendUint(dst, p, 10)
	dst = append(dst, `,"flows":`...)
	return strconv.AppendUint(dst, f, 10)
}

// appendMarshal appends v in JSON; for the small typed parts of results.
func appendMarshal(dst []byte, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("BUG: analysis: " + err.Error())
	}
	return append(dst, b...)
}

// WriteCSV writes a header (the key elements, octets, packets, flows) and
// one line per row; absent key values are empty.
func (r *TopNResult) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	head := append(append([]string(nil), r.By...), "octets", "packets", "flows")
	cw.Write(head)
	line := make([]string, len(head))
	for _, row := range r.Rows {
		for j, v := range row.Key {
			line[j] = v.String()
		}
		n := len(row.Key)
		line[n] = strconv.FormatUint(row.Octets, 10)
		line[n+1] = strconv.FormatUint(row.Packets, 10)
		line[n+2] = strconv.FormatUint(row.Flows, 10)
		cw.Write(line)
	}
	cw.Flush()
	return cw.Error()
}

package analysis

import (
	"context"
	"io"
	"strconv"

	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
)

// RecordsResult is a page of decoded records.
type RecordsResult struct {
	Offset int64
	Limit  int
	// Total counts the records the filter kept in the whole input; Lines
	// holds Count of them from Offset on, as JSON lines in the jsonl
	// encoding of `sluice decode` (exporter, template_id and the rest in
	// each object).
	Total   uint64
	Count   int
	Lines   []byte
	Summary Summary
}

// Records runs a records job.
func Records(ctx context.Context, in Input, p RecordsParams) (*RecordsResult, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	c, _ := p.Common.compile()
	s, err := newScan(ctx, &in, c, 1)
	if err != nil {
		return nil, err
	}
	k := &recordsSink{offset: uint64(p.Offset), limit: p.limit()}
	if err := s.run(k, !p.SkipOptions); err != nil {
		return nil, err
	}
	return &RecordsResult{Offset: p.Offset, Limit: k.limit, Total: k.n, Count: k.count, Lines: k.buf, Summary: s.sum}, nil
}

type recordsSink struct {
	offset, n    uint64
	limit, count int
	buf          []byte
	meta         jsonl.Meta
}

func (k *recordsSink) record(r *decode.Record) {
	i := k.n
	k.n++
	if i < k.offset || k.count >= k.limit {
		return
	}
	// One Meta for every record keeps jsonl's time formatting cache.
	k.meta.Exporter, k.meta.Msg, k.meta.Resolve = r.Exporter, r.Msg, r.Resolver
	k.buf = jsonl.AppendRecord(k.buf, &k.meta, r.Rec)
	k.count++
}

// Formats returns "json" and "jsonl".
func (r *RecordsResult) Formats() []string { return []string{"json", "jsonl"} }

// Write writes the result in a format of Formats: "jsonl" is Lines alone;
// "json" is {"offset","limit","total","count","records":[...],"summary"}.
func (r *RecordsResult) Write(w io.Writer, format string) error {
	switch format {
	case "json", "":
		_, err := w.Write(r.AppendJSON(nil))
		return err
	case "jsonl":
		_, err := w.Write(r.Lines)
		return err
	}
	return errFormat(format, r.Formats())
}

// AppendJSON appends the result as one JSON object.
func (r *RecordsResult) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"offset":`...)
	dst = strconv.AppendInt(dst, r.Offset, 10)
	dst = append(dst, `,"limit":`...)
	dst = strconv.AppendInt(dst, int64(r.Limit), 10)
	dst = append(dst, `,"total":`...)
	dst = strconv.AppendUint(dst, r.Total, 10)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendInt(dst, int64(r.Count), 10)
	dst = append(dst, `,"records":[`...)
	b := r.Lines
	first := true
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		if i > 0 {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = append(dst, b[:i]...)
		}
		if i < len(b) {
			i++
		}
		b = b[i:]
	}
	dst = append(dst, `],"summary":`...)
	dst = appendMarshal(dst, r.Summary)
	return append(dst, "}\n"...)
}

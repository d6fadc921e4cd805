package collector

import (
	"encoding/json"
	"strconv"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// optionsRecord is the latest options record of one options template of an
// exporter, kept as it came: the event loop only copies bytes, and the API
// formats them when it reads them (optionsJSON). Guarded by the exporter's
// optMu.
type optionsRecord struct {
	layout *ipfix.Layout // immutable, shared with the template
	data   []byte        // the record, at most maxOptionsRecord octets
	// msg holds the header fields times are made absolute from (v9
	// uptimes); its body is nil.
	msg ipfix.Message
}

// maxOptionsRecord bounds what is kept of one options record per exporter
// and template; larger records still reach the outputs.
const maxOptionsRecord = 4 << 10

// maxOptionsTemplates bounds the options templates kept per exporter.
const maxOptionsTemplates = 256

// keepOptions remembers the last options record of a data set of options
// template lay (sampling rate, interface names, system init time) for the
// API. It copies the record into the exporter's buffer for the template and
// formats nothing; once the buffer is there it does not allocate.
func (l *loop) keepOptions(ex *exporterStats, lay *ipfix.Layout, body []byte, m *ipfix.Message) {
	var last []byte
	it := ipfix.NewDataIter(lay, body)
	for it.Next(&l.rec) {
		last = l.rec.Raw()
	}
	if last == nil || len(last) > maxOptionsRecord {
		return
	}
	ex.optMu.Lock()
	defer ex.optMu.Unlock()
	r := ex.options[lay.ID]
	if r == nil {
		if len(ex.options) >= maxOptionsTemplates {
			return
		}
		if ex.options == nil {
			ex.options = make(map[uint16]*optionsRecord)
		}
		r = &optionsRecord{}
		ex.options[lay.ID] = r
	}
	r.layout = lay
	r.data = append(r.data[:0], last...)
	r.msg = ipfix.Message{Version: m.Version, DomainID: m.DomainID, ExportTime: m.ExportTime,
		Sequence: m.Sequence, SysUptime: m.SysUptime, ExportNanos: m.ExportNanos}
}

// optionsJSON returns the exporter's latest options records as JSON objects
// by options template ID, or nil if there are none. The records are copied
// under the lock and formatted after it, so the loop never waits on
// formatting.
func (e *exporterStats) optionsJSON() map[string]json.RawMessage {
	e.optMu.Lock()
	recs := make([]optionsRecord, 0, len(e.options))
	for _, r := range e.options {
		recs = append(recs, optionsRecord{layout: r.layout, data: append([]byte(nil), r.data...), msg: r.msg})
	}
	e.optMu.Unlock()
	if len(recs) == 0 {
		return nil
	}
	out := make(map[string]json.RawMessage, len(recs))
	for i := range recs {
		r := &recs[i]
		if b := r.appendJSON(nil); b != nil {
			out[strconv.Itoa(int(r.layout.ID))] = b
		}
	}
	return out
}

// appendJSON appends the record as one JSON object keyed by field, or
// returns dst unchanged (nil for a nil dst) if it no longer decodes.
func (r *optionsRecord) appendJSON(dst []byte) []byte {
	var rec ipfix.Record
	it := ipfix.NewDataIter(r.layout, r.data)
	if !it.Next(&rec) {
		return dst
	}
	meta := jsonl.Meta{Msg: &r.msg}
	dst = append(dst, '{')
	for i := range r.layout.Fields {
		f := &r.layout.Fields[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, f.Key...)
		dst = append(dst, '"', ':')
		dst = jsonl.AppendValue(dst, &meta, f.IE, rec.Bytes(i), ipfix.MaxListDepth)
	}
	return append(dst, '}')
}

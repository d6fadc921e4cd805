package export

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// QueueStats is implemented by outputs with a send queue and a connection
// (ipfix+tcp): records waiting in the queue, and reconnections made after the
// first connection.
type QueueStats interface {
	Queued() int
	Reconnects() uint64
}

// SkipStats is implemented by outputs whose format cannot carry some records
// (goflow2-pb has no options records): those are left out on purpose and
// counted, neither sent nor dropped.
type SkipStats interface {
	Skipped() uint64
}

// UnmappedStats is implemented by outputs that leave out the elements their
// format has no field for (GraphQL): the values left out are counted.
type UnmappedStats interface {
	Unmapped() uint64
}

// V5ExportTemplateID is the template ID NetFlow v5 records are re-exported
// under (v5 has no template; its built-in layout has ID 0).
const V5ExportTemplateID = 0xFF05

// maxTCPMessage bounds messages sent over TCP and written to files.
const maxTCPMessage = ipfix.MaxMessageLen

// exportTemplate is a layout's template as re-exported in IPFIX.
type exportTemplate struct {
	id    uint16
	setID uint16 // ipfix.TemplateSetID or ipfix.OptionsTemplateSetID
	fp    uint64
	rec   []byte // the template record
}

type encDomain struct {
	w ipfix.MessageWriter
	// announced maps template IDs to what was last sent in-stream.
	announced map[uint16]announced
	// owner is the exporter whose template holds each ID; moved holds
	// templates given another ID because theirs was another exporter's.
	owner map[uint16]netip.Addr
	moved map[movedKey]*exportTemplate
}

type movedKey struct {
	exporter netip.Addr
	id       uint16
}

// maxEncDomains bounds the observation domains an output keeps state for.
const maxEncDomains = 1 << 16

// maxMoved bounds the templates given another ID per domain.
const maxMoved = 4096

type announced struct {
	fp    uint64
	setID uint16
	// stale marks a template to send again: messages that may have
	// carried it were dropped.
	stale bool
}

// ipfixEncoder groups records into IPFIX messages, one data set per run of
// records of one template, templates in-stream before first use and when
// their content changes. It is driven by one goroutine (the mediator's).
// Finished messages go to sink, which must not keep msg.
type ipfixEncoder struct {
	maxLen int
	// withdraw sends a template withdrawal before redefining a template ID
	// (RFC 7011 section 8.1: required over TCP; files follow TCP's rules).
	withdraw bool
	sink     func(msg []byte, records int)
	now      func() time.Time
	domains  map[uint32]*encDomain
	tpls     map[*ipfix.Layout]*exportTemplate

	ds         *encDomain
	domain     uint32
	buf        []byte
	open       bool
	setID      uint16 // template ID of the open data set, 0 if none
	lastLayout *ipfix.Layout
	lastSrc    netip.Addr
	records    int
	// forget makes the next message re-announce every template (after the
	// sink dropped messages that may have carried templates). Set from any
	// goroutine.
	forget atomic.Bool
	// refused counts records the encoder could not take: larger than an
	// empty message, or of a domain beyond maxEncDomains. Read from any
	// goroutine.
	refused atomic.Uint64
}

func newIPFIXEncoder(maxLen int, sink func([]byte, int)) *ipfixEncoder {
	return &ipfixEncoder{
		maxLen:  maxLen,
		sink:    sink,
		now:     time.Now,
		domains: make(map[uint32]*encDomain),
		tpls:    make(map[*ipfix.Layout]*exportTemplate),
		buf:     make([]byte, 0, maxLen+ipfix.MaxMessageLen),
	}
}

// template returns the IPFIX template of l, built once per layout.
func (e *ipfixEncoder) template(l *ipfix.Layout) *exportTemplate {
	if t := e.tpls[l]; t != nil {
		return t
	}
	if len(e.tpls) >= 4096 {
		clear(e.tpls) // bound the cache under template churn
	}
	specs := make([]ipfix.FieldSpec, len(l.Fields))
	for i := range l.Fields {
		specs[i] = l.Fields[i].FieldSpec
		if l.V9 && specs[i].PEN == 0 && specs[i].ID&0x8000 != 0 {
			// A NetFlow v9 type above 32767 (Cisco ASA's 40001...) has
			// no IPFIX number; written as is, its top bit would announce
			// an enterprise number that is not there. It goes out as
			// Cisco's enterprise element of the low 15 bits, the reading
			// the registry gives it (ipfix.CiscoPEN).
			specs[i].PEN, specs[i].ID = ipfix.CiscoPEN, specs[i].ID&0x7fff
		}
	}
	t := &exportTemplate{id: l.ID, setID: ipfix.TemplateSetID, fp: l.Fingerprint}
	if l == ipfix.V5Layout() || (l.V9 && l.ID < ipfix.MinDataSetID) {
		t.id = V5ExportTemplateID
	}
	if l.Options && l.ScopeCount > 0 {
		t.setID = ipfix.OptionsTemplateSetID
		t.rec = ipfix.AppendOptionsTemplateRecord(nil, t.id, l.ScopeCount, specs)
	} else {
		t.rec = ipfix.AppendTemplateRecord(nil, t.id, specs)
	}
	e.tpls[l] = t
	return t
}

// record adds r with the domain and exporter of m.
func (e *ipfixEncoder) record(m *jsonl.Meta, r *ipfix.Record) bool {
	var domain uint32
	var src netip.Addr
	if m != nil {
		src = m.Exporter.Addr()
		if m.Msg != nil {
			domain = m.Msg.DomainID
		}
	}
	return e.add(domain, src, r)
}

// add appends one record; it reports false when the record was dropped for
// not fitting in a message.
func (e *ipfixEncoder) add(domain uint32, src netip.Addr, r *ipfix.Record) bool {
	raw := r.Raw()
	if e.open && domain != e.domain {
		e.finish()
	}
	if !e.open || r.Layout != e.lastLayout || src != e.lastSrc || e.ds.w.Len(e.buf)+len(raw) > e.maxLen {
		return e.addSlow(domain, src, r.Layout, raw)
	}
	e.buf = append(e.buf, raw...)
	e.ds.w.AddRecords(1)
	e.records++
	return true
}

func (e *ipfixEncoder) addSlow(domain uint32, src netip.Addr, l *ipfix.Layout, raw []byte) bool {
	if !e.open {
		if _, ok := e.domains[domain]; !ok && len(e.domains) >= maxEncDomains {
			e.refused.Add(1) // each domain keeps a sequence number and templates
			return false
		}
		e.begin(domain)
	}
	t := e.domainTemplate(e.template(l), src)
	for attempt := 0; ; attempt++ {
		a, ok := e.ds.announced[t.id]
		announce := !ok || a.fp != t.fp || a.stale
		withdraw := e.withdraw && ok && a.fp != t.fp
		need := len(raw)
		if announce {
			need += ipfix.SetHeaderLen + len(t.rec)
		}
		if withdraw {
			need += ipfix.SetHeaderLen + 4
		}
		if announce || e.setID != t.id {
			need += ipfix.SetHeaderLen
		}
		if e.ds.w.Len(e.buf)+need <= e.maxLen {
			if announce {
				if e.setID != 0 {
					e.buf = e.ds.w.EndSet(e.buf)
					e.setID = 0
				}
				if withdraw {
					e.buf = e.ds.w.BeginSet(e.buf, a.setID)
					e.buf = ipfix.AppendWithdrawal(e.buf, t.id)
					e.ds.w.AddTemplates(1)
					e.buf = e.ds.w.EndSet(e.buf)
				}
				e.buf = e.ds.w.BeginSet(e.buf, t.setID)
				e.buf = append(e.buf, t.rec...)
				e.ds.w.AddTemplates(1)
				e.buf = e.ds.w.EndSet(e.buf)
				e.ds.announced[t.id] = announced{fp: t.fp, setID: t.setID}
			}
			if e.setID != t.id {
				if e.setID != 0 {
					e.buf = e.ds.w.EndSet(e.buf)
				}
				e.buf = e.ds.w.BeginSet(e.buf, t.id)
				e.setID = t.id
			}
			e.buf = append(e.buf, raw...)
			e.ds.w.AddRecords(1)
			e.records++
			e.lastLayout, e.lastSrc = l, src
			return true
		}
		if attempt > 0 || e.ds.w.Len(e.buf) == ipfix.HeaderLenIPFIX {
			// Does not fit even in an empty message.
			e.refused.Add(1)
			if e.ds.w.Len(e.buf) == ipfix.HeaderLenIPFIX && e.records == 0 {
				e.discard()
			}
			return false
		}
		e.finish()
		e.begin(domain)
		t = e.domainTemplate(e.template(l), src)
	}
}

// domainTemplate returns t, or a copy under another ID when t's ID already
// belongs to another exporter's template in the open domain: a mediator
// merges exporters that use the same IDs for different templates, and
// both must stay in force. An exporter that changes its own template
// redefines it in place.
func (e *ipfixEncoder) domainTemplate(t *exportTemplate, src netip.Addr) *exportTemplate {
	ds := e.ds
	a, ok := ds.announced[t.id]
	if !ok {
		ds.owner[t.id] = src
		return t
	}
	if (a.fp == t.fp && a.setID == t.setID) || ds.owner[t.id] == src {
		return t
	}
	k := movedKey{src, t.id}
	if m := ds.moved[k]; m != nil {
		if m.fp != t.fp || m.setID != t.setID {
			// The exporter redefined it: redefine the moved one.
			m = &exportTemplate{id: m.id, setID: t.setID, fp: t.fp, rec: withID(t.rec, m.id)}
			ds.moved[k] = m
		}
		return m
	}
	if len(ds.moved) >= maxMoved {
		return t // redefine in place
	}
	for id := uint32(ipfix.MinDataSetID); id <= 0xFFFF; id++ {
		if _, used := ds.owner[uint16(id)]; used {
			continue
		}
		m := &exportTemplate{id: uint16(id), setID: t.setID, fp: t.fp, rec: withID(t.rec, uint16(id))}
		ds.moved[k] = m
		ds.owner[m.id] = src
		return m
	}
	return t
}

// withID copies a template record with another template ID (its first two
// octets).
func withID(rec []byte, id uint16) []byte {
	r := append([]byte(nil), rec...)
	binary.BigEndian.PutUint16(r, id)
	return r
}

func (e *ipfixEncoder) begin(domain uint32) {
	if e.forget.Load() && e.forget.Swap(false) {
		for _, d := range e.domains {
			for id, a := range d.announced {
				a.stale = true
				d.announced[id] = a
			}
		}
	}
	ds := e.domains[domain]
	if ds == nil {
		ds = &encDomain{w: ipfix.MessageWriter{DomainID: domain}, announced: make(map[uint16]announced),
			owner: make(map[uint16]netip.Addr), moved: make(map[movedKey]*exportTemplate)}
		e.domains[domain] = ds
	}
	e.ds, e.domain = ds, domain
	e.buf = ds.w.Begin(e.buf[:0], uint32(e.now().Unix()))
	e.open, e.setID, e.lastLayout, e.records = true, 0, nil, 0
}

// discard drops an open message that holds nothing.
func (e *ipfixEncoder) discard() {
	e.open, e.setID, e.lastLayout, e.records = false, 0, nil, 0
	e.buf = e.buf[:0]
}

// finish closes the open message, if any, and hands it to the sink.
func (e *ipfixEncoder) finish() {
	if !e.open {
		return
	}
	if e.setID != 0 {
		e.buf = e.ds.w.EndSet(e.buf)
	}
	if e.ds.w.Len(e.buf) == ipfix.HeaderLenIPFIX {
		_, _ = e.ds.w.Finish(e.buf)
		e.discard()
		return
	}
	msg, err := e.ds.w.Finish(e.buf)
	n := e.records
	e.open, e.setID, e.lastLayout, e.records = false, 0, nil, 0
	e.buf = e.buf[:0]
	if err != nil { // cannot happen: maxLen <= MaxMessageLen
		e.refused.Add(uint64(n))
		return
	}
	e.sink(msg, n)
}

// tplTracker follows the templates of an IPFIX stream, as of the last
// message given to update, so they can be sent again at the start of a new
// connection or file, or periodically over UDP.
type tplTracker struct {
	domains map[uint32]*trackDomain
	order   []uint32
	w       ipfix.MessageWriter
}

type trackDomain struct {
	next uint32 // sequence number of the next message
	tpls map[uint16]trackedTpl
	ids  []uint16
}

type trackedTpl struct {
	setID uint16
	rec   []byte
}

func newTplTracker() *tplTracker { return &tplTracker{domains: make(map[uint32]*trackDomain)} }

// update records the templates and sequence number of msg, a well-formed
// IPFIX message holding records data records.
func (t *tplTracker) update(msg []byte, records int) {
	if len(msg) < ipfix.HeaderLenIPFIX {
		return
	}
	domain := binary.BigEndian.Uint32(msg[12:])
	d := t.domains[domain]
	if d == nil {
		d = &trackDomain{tpls: make(map[uint16]trackedTpl)}
		t.domains[domain] = d
		t.order = append(t.order, domain)
	}
	d.next = binary.BigEndian.Uint32(msg[8:]) + uint32(records)
	b := msg[ipfix.HeaderLenIPFIX:]
	for len(b) >= ipfix.SetHeaderLen {
		id := binary.BigEndian.Uint16(b)
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n < ipfix.SetHeaderLen || n > len(b) {
			return
		}
		if id == ipfix.TemplateSetID || id == ipfix.OptionsTemplateSetID {
			d.templates(id, b[ipfix.SetHeaderLen:n])
		}
		b = b[n:]
	}
}

func (d *trackDomain) templates(setID uint16, b []byte) {
	hdr := 4
	if setID == ipfix.OptionsTemplateSetID {
		hdr = 6
	}
	for len(b) >= 4 {
		id := binary.BigEndian.Uint16(b)
		count := int(binary.BigEndian.Uint16(b[2:]))
		off := hdr
		if count == 0 {
			off = 4 // withdrawal: ID and count only
		}
		if off > len(b) {
			return
		}
		for range count {
			if off+4 > len(b) {
				return
			}
			if b[off]&0x80 != 0 {
				off += 8
			} else {
				off += 4
			}
		}
		if off > len(b) {
			return
		}
		rec := b[:off]
		b = b[off:]
		if count == 0 {
			// Withdrawal: a definition follows (the encoder withdraws
			// only to redefine).
			if _, ok := d.tpls[id]; ok {
				delete(d.tpls, id)
				for i, x := range d.ids {
					if x == id {
						d.ids = append(d.ids[:i], d.ids[i+1:]...)
						break
					}
				}
			}
			continue
		}
		old, ok := d.tpls[id]
		if ok && old.setID == setID && bytes.Equal(old.rec, rec) {
			continue
		}
		if !ok {
			d.ids = append(d.ids, id)
		}
		d.tpls[id] = trackedTpl{setID: setID, rec: append(old.rec[:0:0], rec...)}
	}
}

// empty reports whether no template is known.
func (t *tplTracker) empty() bool {
	for _, d := range t.domains {
		if len(d.ids) > 0 {
			return false
		}
	}
	return true
}

// appendAll appends messages (at most maxLen octets each) carrying every
// known template, with each domain's current sequence number.
func (t *tplTracker) appendAll(dst []byte, maxLen int, exportTime uint32) []byte {
	for _, domain := range t.order {
		d := t.domains[domain]
		if len(d.ids) == 0 {
			continue
		}
		w := &t.w
		*w = ipfix.MessageWriter{DomainID: domain, Sequence: d.next}
		start := len(dst)
		dst = w.Begin(dst, exportTime)
		var set uint16
		for _, id := range d.ids {
			tp := d.tpls[id]
			need := len(tp.rec)
			if set != tp.setID {
				need += ipfix.SetHeaderLen
			}
			if w.Len(dst)+need > maxLen && w.Len(dst) > ipfix.HeaderLenIPFIX {
				if set != 0 {
					dst = w.EndSet(dst)
				}
				dst, _ = w.Finish(dst)
				start = len(dst)
				dst = w.Begin(dst, exportTime)
				set = 0
			}
			if set != tp.setID {
				if set != 0 {
					dst = w.EndSet(dst)
				}
				dst = w.BeginSet(dst, tp.setID)
				set = tp.setID
			}
			dst = append(dst, tp.rec...)
			w.AddTemplates(1)
		}
		if set != 0 {
			dst = w.EndSet(dst)
		}
		var err error
		if dst, err = w.Finish(dst); err != nil {
			dst = dst[:start]
		}
	}
	return dst
}

// splitQuery separates "rest?query" and parses the query.
func splitQuery(spec, rest string, allowed ...string) (string, url.Values, error) {
	base, q, _ := strings.Cut(rest, "?")
	vals, err := url.ParseQuery(q)
	if err != nil {
		return "", nil, fmt.Errorf("export: %q: %w", spec, err)
	}
	for k := range vals {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return "", nil, fmt.Errorf("export: %q: unknown option %q (want %s)", spec, k, strings.Join(allowed, ", "))
		}
	}
	return base, vals, nil
}

// checkHostPort validates a "host:port" destination.
func checkHostPort(spec, hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return fmt.Errorf("export: %q: %w", spec, err)
	}
	if host == "" {
		return fmt.Errorf("export: %q: missing host", spec)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("export: %q: bad port %q", spec, port)
	}
	return nil
}

// parseSize parses a byte size: "1048576", "512KiB", "64MiB", "1GiB", or
// decimal "kB", "MB", "GB".
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func optSize(spec string, v url.Values, key string, def int64) (int64, error) {
	s := v.Get(key)
	if s == "" {
		return def, nil
	}
	n, err := parseSize(s)
	if err != nil {
		return 0, fmt.Errorf("export: %q: %s: %w", spec, key, err)
	}
	return n, nil
}

func optDuration(spec string, v url.Values, key string, def time.Duration) (time.Duration, error) {
	s := v.Get(key)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("export: %q: %s: bad duration %q", spec, key, s)
	}
	return d, nil
}

package loadgen

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// templateFields are the field specifiers of each data template.
var templateFields = map[Template][]ipfix.FieldSpec{
	FiveTuple: {
		{ID: 8, Length: 4}, {ID: 12, Length: 4}, {ID: 7, Length: 2}, {ID: 11, Length: 2},
		{ID: 4, Length: 1}, {ID: 6, Length: 1}, {ID: 1, Length: 8}, {ID: 2, Length: 8},
		{ID: 152, Length: 8}, {ID: 153, Length: 8},
	},
	IPv6: {
		{ID: 27, Length: 16}, {ID: 28, Length: 16}, {ID: 7, Length: 2}, {ID: 11, Length: 2},
		{ID: 4, Length: 1}, {ID: 6, Length: 1}, {ID: 31, Length: 3}, {ID: 1, Length: 8},
		{ID: 2, Length: 8}, {ID: 152, Length: 8}, {ID: 153, Length: 8},
	},
	VarLen: {
		{ID: 8, Length: 4}, {ID: 12, Length: 4}, {ID: 7, Length: 2}, {ID: 11, Length: 2},
		{ID: 4, Length: 1}, {ID: 1, Length: 8}, {ID: 2, Length: 8},
		{ID: 82, Length: ipfix.VarLen}, {ID: 94, Length: ipfix.VarLen},
	},
}

var optionsFields = []ipfix.FieldSpec{
	{ID: 144, Length: 4}, // exportingProcessId (scope)
	{ID: 305, Length: 4}, // samplingPacketInterval
	{ID: 306, Length: 4}, // samplingPacketSpace
	{ID: 160, Length: 8}, // systemInitTimeMilliseconds
}

const (
	// templateBase is the ID of the first data template; the others follow
	// in the order of Config.Templates.
	templateBase = 256
	optionsID    = 400
	// cycleMessages is how many data messages per template an exporter
	// cycles through without Config.Keys.
	cycleMessages = 16
)

// messages are one exporter's prepared messages. Sequence numbers and
// export times are patched in when they are sent.
type messages struct {
	tpl  []byte   // the template message
	opt  []byte   // the options data message, or nil
	data [][]byte // data messages to cycle through, each Config.Records long
}

// buildMessages prepares the messages of exporter domain (from
// cfg.FirstDomain) of cfg,
// which has its defaults filled in and is checked.
func buildMessages(cfg *Config, domain uint32, now time.Time) (messages, error) {
	var m messages
	w := ipfix.MessageWriter{Version: uint16(cfg.Protocol), DomainID: domain}
	now32 := uint32(now.Unix())
	var kinds []Template
	options := false
	for _, t := range cfg.Templates {
		if t == Options {
			options = true
			continue
		}
		kinds = append(kinds, t)
	}
	b := w.Begin(nil, now32)
	b = w.BeginSet(b, ipfix.TemplateSetID)
	for i, t := range kinds {
		b = ipfix.AppendTemplateRecord(b, uint16(templateBase+i), templateFields[t])
		w.AddTemplates(1)
	}
	b = w.EndSet(b)
	if options {
		b = w.BeginSet(b, ipfix.OptionsTemplateSetID)
		if cfg.Protocol == NetFlowV9 {
			b = ipfix.AppendV9OptionsTemplateRecord(b, optionsID, 1, optionsFields)
		} else {
			b = ipfix.AppendOptionsTemplateRecord(b, optionsID, 1, optionsFields)
		}
		w.AddTemplates(1)
		b = w.EndSet(b)
	}
	m.tpl, _ = w.Finish(b) // a few hundred octets at most
	if options {
		b = w.Begin(nil, now32)
		b = w.BeginSet(b, optionsID)
		b = ipfix.AppendUint(b, uint64(domain), 4)
		b = ipfix.AppendUint(b, 1, 4)
		b = ipfix.AppendUint(b, 0, 4)
		b = ipfix.AppendUint(b, uint64(now.Add(-time.Hour).UnixMilli()), 8)
		b = w.EndSet(b)
		w.AddRecords(1)
		m.opt, _ = w.Finish(b)
	}
	// Record n of the cycle gets the n-th 5-tuple of its exporter. With
	// Keys, n wraps at the exporter's share of the keys, and the cycle is
	// as long as it takes to send each of them.
	cycle, keys := cycleMessages, 0
	if cfg.Keys > 0 {
		keys = cfg.exporterKeys(int(domain - cfg.FirstDomain))
		cycle = (keys + cfg.Records - 1) / cfg.Records
	}
	start := now.UnixMilli()
	for i := range cycle * len(kinds) {
		kind := kinds[i%len(kinds)]
		b := w.Begin(nil, now32)
		b = w.BeginSet(b, uint16(templateBase+i%len(kinds)))
		for r := range cfg.Records {
			n := i*cfg.Records + r
			if keys > 0 {
				n %= keys
			}
			b = appendRecord(b, kind, int(domain), n, start)
		}
		b = w.EndSet(b)
		w.AddRecords(cfg.Records)
		b, err := w.Finish(b)
		if err != nil {
			return messages{}, fmt.Errorf("loadgen: %d %s records do not fit in a message: %w", cfg.Records, kind, err)
		}
		m.data = append(m.data, b)
	}
	return m, nil
}

// appendRecord appends the n-th record of exporter (from 1) for template
// kind; flow times count from startMs.
func appendRecord(b []byte, kind Template, exporter, n int, startMs int64) []byte {
	src4 := netip.AddrFrom4([4]byte{10, byte(exporter), byte(n >> 8), byte(n)})
	dst4 := netip.AddrFrom4([4]byte{192, 0, 2, byte(n)})
	sport := uint64(1024 + n%60000)
	switch kind {
	case FiveTuple:
		b = ipfix.AppendAddr(b, src4)
		b = ipfix.AppendAddr(b, dst4)
		b = ipfix.AppendUint(b, sport, 2)
		b = ipfix.AppendUint(b, 443, 2)
		b = ipfix.AppendUint(b, 6, 1)
		b = ipfix.AppendUint(b, 0x1b, 1)
		b = ipfix.AppendUint(b, uint64(64+n%1400), 8)
		b = ipfix.AppendUint(b, uint64(1+n%10), 8)
		b = ipfix.AppendUint(b, uint64(startMs), 8)
		b = ipfix.AppendUint(b, uint64(startMs+int64(n%1000)), 8)
	case IPv6:
		src := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, byte(exporter), 12: byte(n >> 24), 13: byte(n >> 16), 14: byte(n >> 8), 15: byte(n)})
		dst := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, 15: byte(n)})
		b = ipfix.AppendAddr(b, src)
		b = ipfix.AppendAddr(b, dst)
		b = ipfix.AppendUint(b, sport, 2)
		b = ipfix.AppendUint(b, 443, 2)
		b = ipfix.AppendUint(b, 17, 1)
		b = ipfix.AppendUint(b, 0, 1)
		b = ipfix.AppendUint(b, uint64(n&0xfffff), 3)
		b = ipfix.AppendUint(b, uint64(64+n%1400), 8)
		b = ipfix.AppendUint(b, uint64(1+n%10), 8)
		b = ipfix.AppendUint(b, uint64(startMs), 8)
		b = ipfix.AppendUint(b, uint64(startMs+int64(n%1000)), 8)
	case VarLen:
		b = ipfix.AppendAddr(b, src4)
		b = ipfix.AppendAddr(b, dst4)
		b = ipfix.AppendUint(b, sport, 2)
		b = ipfix.AppendUint(b, 80, 2)
		b = ipfix.AppendUint(b, 6, 1)
		b = ipfix.AppendUint(b, uint64(64+n%1400), 8)
		b = ipfix.AppendUint(b, uint64(1+n%10), 8)
		var name [24]byte
		b = ipfix.AppendVarlen(b, strconv.AppendInt(append(name[:0], "eth"...), int64(n%8), 10))
		b = ipfix.AppendVarlen(b, strconv.AppendInt(append(name[:0], "application-"...), int64(n%97), 10))
	default:
		panic("BUG: loadgen: no record for template " + string(kind))
	}
	return b
}

// patch writes the sequence number and export time into a prepared message.
func patch(msg []byte, p Protocol, seq, now uint32) {
	if p == NetFlowV9 {
		binary.BigEndian.PutUint32(msg[8:], now)
		binary.BigEndian.PutUint32(msg[12:], seq)
		return
	}
	binary.BigEndian.PutUint32(msg[4:], now)
	binary.BigEndian.PutUint32(msg[8:], seq)
}

// sourceAddr is exporter i's (0-based) own address with
// Config.DistinctAddrs: 127.0.1.1, 127.0.1.2, ... 127.0.1.255, 127.0.2.0, ...
func sourceAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, 1 + byte((i+1)>>8), byte(i + 1)})
}

package loadgen

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// Config says what to send. The zero value of every field is its documented
// default; Config{} sends 5-tuple IPFIX records over UDP to 127.0.0.1:4739,
// as fast as possible, until the context given to Run is done.
type Config struct {
	// Addr is the collector. Zero: 127.0.0.1:4739. It must be a loopback
	// address unless AllowRemote is set.
	Addr        netip.AddrPort
	AllowRemote bool
	// Protocol is IPFIX (the zero value) or NetFlowV9.
	Protocol Protocol
	// TCP sends over TCP (IPFIX only) instead of UDP.
	TCP bool
	// Rate paces the sending. Zero: as fast as possible.
	Rate Rate
	// Duration and Count end the run, whichever comes first: Count counts
	// data messages. Zero: no limit (Run ends when its context is done).
	Duration time.Duration
	Count    int
	// Exporters is how many exporters to simulate, 1..10000. Zero: 1.
	Exporters int
	// Records is data records per message. Zero: 30.
	Records int
	// Templates are the data templates, sent in turn, plus Options for an
	// options template and record. Nil: FiveTuple alone.
	Templates []Template
	// TemplateInterval is how often templates are resent over UDP (over
	// TCP they go once). Zero: 1s.
	TemplateInterval time.Duration
	// DataFirst sends the first data messages before any template.
	DataFirst bool
	// DistinctAddrs gives exporter N (from 1) the source address
	// 127.0.1.N (127.0.2.0 and on past 255) when Addr is IPv4 loopback.
	DistinctAddrs bool
	// Ports is how many sockets (source ports) each exporter sends from,
	// 1..64, all with its address and observation domain; each is its own
	// stream of sequence numbers and templates, as an exporter's line
	// cards or sending threads would be. Exporters*Ports is at most 10000.
	// Zero: 1.
	Ports int
	// Batch is the most messages per exporter per sendmmsg call, 1..1024.
	// Zero: 64.
	Batch int
	// NoGSO sends without UDP GSO; by default GSO is used when every data
	// message has the same size and the platform has it.
	NoGSO bool
	// Keys is how many distinct 5-tuples the data records cycle through,
	// split among the exporters, 0..MaxKeys. Zero: each exporter cycles
	// through 16 messages' worth per template.
	Keys int
	// FirstDomain is the observation domain of the first exporter; the
	// others follow it. It also goes into the records' source addresses,
	// so two runs with distinct domains send distinct records. Zero: 1.
	FirstDomain uint32
	// Reconnect makes a TCP exporter whose connection broke dial again
	// (every ReconnectInterval at most) and resend its templates on the
	// new connection, as a real exporter does. Messages due while it is
	// disconnected use up their sequence numbers and are not sent.
	// Without it a broken connection fails every later message.
	Reconnect bool
}

// ReconnectInterval is the least time between two dials of one exporter
// with Config.Reconnect.
const ReconnectInterval = 50 * time.Millisecond

// Defaults applied by New for zero fields.
const (
	DefaultExporters        = 1
	DefaultRecords          = 30
	DefaultTemplateInterval = time.Second
	DefaultBatch            = 64
)

// DefaultAddr is the collector New sends to when Config.Addr is zero.
var DefaultAddr = netip.MustParseAddrPort("127.0.0.1:4739")

// MaxKeys bounds Config.Keys: the prepared messages take about 50 octets per
// key. An exporter's keys would stay distinct up to 122,880,000: the source
// address holds the key modulo 2^16, the source port modulo 60000.
const MaxKeys = 1 << 24

// Protocol is the wire format; its value is the version in the header.
type Protocol uint16

const (
	IPFIX     Protocol = ipfix.VersionIPFIX
	NetFlowV9 Protocol = ipfix.VersionNetFlow9
)

// ParseProtocol reads "ipfix" or "v9", or the version numbers "10" and "9".
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(s) {
	case "ipfix", "10":
		return IPFIX, nil
	case "v9", "9":
		return NetFlowV9, nil
	}
	return 0, fmt.Errorf("loadgen: unknown protocol %q (ipfix or v9, or 10 or 9)", s)
}

func (p Protocol) String() string {
	switch p {
	case IPFIX:
		return "ipfix"
	case NetFlowV9:
		return "v9"
	}
	return "protocol(" + strconv.Itoa(int(p)) + ")"
}

// Template names a kind of data record, or Options.
type Template string

const (
	// FiveTuple is the classic 46-octet IPv4 5-tuple record with counters
	// and flow times.
	FiveTuple Template = "5tuple"
	// IPv6 is a 5-tuple record with IPv6 addresses and a flow label.
	IPv6 Template = "ipv6"
	// VarLen has two variable-length fields (interface and application
	// names).
	VarLen Template = "varlen"
	// Options adds an options template and one options record (sampling
	// parameters scoped by exporting process), sent with the templates.
	Options Template = "options"
)

// ParseTemplates reads a comma-separated list of template names.
func ParseTemplates(s string) ([]Template, error) {
	var ts []Template
	for _, name := range strings.Split(s, ",") {
		t := Template(name)
		if _, ok := templateFields[t]; !ok && t != Options {
			return nil, fmt.Errorf("loadgen: unknown template %q (5tuple, ipv6, varlen, options)", name)
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// Rate is a sending rate. The zero value means as fast as possible.
type Rate struct {
	// PerSecond is records per second, or messages per second with
	// Packets.
	PerSecond float64
	Packets   bool
}

// ParseRate reads records/s as a number with an optional k or M multiplier
// and an optional rps suffix, or messages/s with a pps suffix: "0", "1500",
// "2Mrps", "300kpps".
func ParseRate(s string) (Rate, error) {
	var r Rate
	v := s
	switch {
	case strings.HasSuffix(v, "pps"):
		r.Packets, v = true, strings.TrimSuffix(v, "pps")
	case strings.HasSuffix(v, "rps"):
		v = strings.TrimSuffix(v, "rps")
	}
	mult := 1.0
	switch {
	case strings.HasSuffix(v, "k"):
		mult, v = 1e3, strings.TrimSuffix(v, "k")
	case strings.HasSuffix(v, "M"):
		mult, v = 1e6, strings.TrimSuffix(v, "M")
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		return Rate{}, fmt.Errorf("loadgen: bad rate %q: want a number with an optional k or M and pps or rps, e.g. 1Mrps or 300kpps", s)
	}
	r.PerSecond = f * mult
	return r, nil
}

// withDefaults returns cfg with the defaults filled in.
func (cfg Config) withDefaults() Config {
	if !cfg.Addr.IsValid() {
		cfg.Addr = DefaultAddr
	}
	if cfg.Protocol == 0 {
		cfg.Protocol = IPFIX
	}
	if cfg.Ports == 0 {
		cfg.Ports = 1
	}
	if cfg.Exporters == 0 {
		cfg.Exporters = DefaultExporters
	}
	if cfg.Records == 0 {
		cfg.Records = DefaultRecords
	}
	if cfg.Templates == nil {
		cfg.Templates = []Template{FiveTuple}
	}
	if cfg.TemplateInterval == 0 {
		cfg.TemplateInterval = DefaultTemplateInterval
	}
	if cfg.Batch == 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.FirstDomain == 0 {
		cfg.FirstDomain = 1
	}
	return cfg
}

// ErrRemote is returned by New for a collector outside loopback when
// Config.AllowRemote is not set.
var ErrRemote = errors.New("loadgen: destination outside loopback without AllowRemote")

// check validates a config that has its defaults filled in.
func (cfg *Config) check() error {
	if !cfg.Addr.Addr().IsLoopback() && !cfg.AllowRemote {
		return fmt.Errorf("%w: %s", ErrRemote, cfg.Addr)
	}
	data := 0
	for _, t := range cfg.Templates {
		if _, ok := templateFields[t]; ok {
			data++
		} else if t != Options {
			return fmt.Errorf("loadgen: unknown template %q (5tuple, ipv6, varlen, options)", t)
		}
	}
	switch {
	case cfg.Protocol != IPFIX && cfg.Protocol != NetFlowV9:
		return fmt.Errorf("loadgen: protocol must be ipfix (10) or v9 (9), not %d", cfg.Protocol)
	case cfg.TCP && cfg.Protocol == NetFlowV9:
		return errors.New("loadgen: NetFlow v9 has no TCP framing; send IPFIX over TCP")
	case data == 0:
		return errors.New("loadgen: no data template (5tuple, ipv6 or varlen)")
	case cfg.Exporters < 1 || cfg.Exporters > 10000:
		return errors.New("loadgen: exporters must be 1..10000")
	case cfg.Ports < 1 || cfg.Ports > 64 || cfg.Exporters*cfg.Ports > 10000:
		return errors.New("loadgen: ports must be 1..64, and exporters times ports at most 10000")
	case cfg.Records < 1:
		return errors.New("loadgen: records must be at least 1")
	case cfg.Batch < 1 || cfg.Batch > 1024:
		return errors.New("loadgen: batch must be 1..1024")
	case cfg.Duration < 0 || cfg.Count < 0 || cfg.TemplateInterval < 0 || cfg.Rate.PerSecond < 0:
		return errors.New("loadgen: duration, count, template interval and rate must not be negative")
	case cfg.Keys < 0 || cfg.Keys > MaxKeys:
		return fmt.Errorf("loadgen: keys must be 0..%d", MaxKeys)
	case cfg.Keys > 0 && cfg.Keys < cfg.Exporters:
		return errors.New("loadgen: keys must be at least exporters")
	case cfg.Keys > 0 && uint64(cfg.FirstDomain)+uint64(cfg.Exporters)-1 > 255:
		// The exporter's domain is one octet of the source address.
		return errors.New("loadgen: keys need the exporters' domains to be 255 or lower")
	case cfg.FirstDomain > 1<<31:
		return errors.New("loadgen: first domain must be 1..2^31")
	case cfg.Reconnect && !cfg.TCP:
		return errors.New("loadgen: reconnect is for TCP")
	}
	return nil
}

// exporterKeys is how many of cfg.Keys exporter i (0-based) cycles through.
func (cfg *Config) exporterKeys(i int) int {
	n := cfg.Keys / cfg.Exporters
	if i < cfg.Keys%cfg.Exporters {
		n++
	}
	return n
}

package collector

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sluice-flow/sluice/bpf"
	"github.com/sluice-flow/sluice/dataplane/yamlconf"
)

// Config configures a Collector. The zero value of every field means its
// documented default.
type Config struct {
	// Listen lists listener URLs: udp://host:port, tcp://host:port or
	// tls://host:port (IPFIX over TLS, RFC 7011 section 11; needs TLS)
	// (IPv6 hosts in brackets). Default: udp://:4739 and tcp://:4739.
	Listen []string `yaml:"-"`
	// TLS holds the certificate of tls:// listeners and, for mutual TLS,
	// the CA that signs exporters' client certificates.
	TLS TLSConfig `yaml:"tls"`
	// Loops is the number of event loops. Default: GOMAXPROCS.
	Loops int `yaml:"loops"`
	// UDPReceiveBuffer is the socket receive buffer to ask for, in bytes.
	// Listeners open with SO_RCVBUF (capped at net.core.rmem_max; TCP
	// listeners and their sessions get it too); UDP sockets then try
	// SO_RCVBUFFORCE (needs CAP_NET_ADMIN) at their first datagram.
	// Default: 32 MiB, at most 1 GiB.
	UDPReceiveBuffer yamlconf.Size `yaml:"udp_receive_buffer"`
	// UDPBatch is how many datagrams one recvmmsg call reads. Default: 64.
	UDPBatch int `yaml:"udp_batch"`
	// StockUDPRead turns the recvmmsg batches off, leaving gnet's own
	// read of one datagram per wake-up: for measuring what batching buys.
	StockUDPRead bool `yaml:"stock_udp_read"`
	// MaxDatagram is the largest UDP datagram accepted whole; longer ones
	// are dropped as truncated. Default: 65535.
	MaxDatagram int `yaml:"max_datagram"`
	// SharePort lets the listening ports be shared with other processes
	// that ask for it too (SO_REUSEPORT across processes). Without it, a
	// port another process holds stops the start with an error.
	SharePort bool `yaml:"share_port"`
	// ScopeByPort scopes templates by exporter address and port instead of
	// the address alone (RFC 7011 section 8 allows both for UDP).
	ScopeByPort bool `yaml:"scope_by_port"`
	// TemplateLifetime is how long a template learned over UDP lives
	// without being retransmitted. Default: 1800 s.
	TemplateLifetime time.Duration `yaml:"template_lifetime"`
	// Held bounds the data sets held for a template not yet known.
	Held HeldConfig `yaml:"held"`
	// RingSize is each loop's ring size in bytes. Default: 16 MiB.
	RingSize yamlconf.Size `yaml:"ring_size"`
	// RingDir, when set, keeps the rings in memory-mapped files in this
	// directory (a tmpfs shared with a mediator process: the split pod),
	// one per loop, named ring.FileName, with a generation new at each
	// start. A lock file keeps a second collector out. Empty: the rings
	// are in process memory (sluice run).
	RingDir string `yaml:"-"`
	// MaxTemplates bounds the templates kept; new ones beyond it are
	// refused and counted. Default: 262144.
	MaxTemplates int `yaml:"max_templates"`
	// MaxTCPSessions bounds open TCP sessions; more are refused and
	// counted. Default: 10000.
	MaxTCPSessions int `yaml:"max_tcp_sessions"`
	// Steer chooses how UDP datagrams are spread over the event loops:
	// "ebpf" loads an SO_REUSEPORT program (package bpf) that sends each
	// (exporter, observation domain) to one loop by a consistent hash, and
	// fails the start if it cannot; "kernel" leaves the kernel's 4-tuple
	// hash, which spreads an exporter's source ports over loops; "auto"
	// (the default) is ebpf when the process may load BPF programs
	// (CAP_BPF and CAP_NET_ADMIN) and the ports are not shared with other
	// processes, else kernel, with one log line saying why.
	Steer string `yaml:"steer"`
	// MaxTemplatesPerExporter bounds the templates one exporter address
	// holds (every port, observation domain and TCP session together), so
	// one exporter cannot take the slots of MaxTemplates: past it, that
	// exporter's new templates alone are refused and counted.
	// Default: 16384.
	MaxTemplatesPerExporter int `yaml:"max_templates_per_exporter"`
	// MaxTemplatesPerDomain bounds the templates of one observation domain
	// of an exporter (per TCP session over TCP). Default: 4096.
	MaxTemplatesPerDomain int `yaml:"max_templates_per_domain"`
	// MaxDomainsPerExporter bounds the entries one exporter address has in
	// the exporter registry (one per observation domain and version, and
	// per TCP session). Messages of further domains are still decoded;
	// their counters go to one entry per exporter (observation domain 0,
	// version 0, "excess": true in the API). Default: 1024.
	MaxDomainsPerExporter int `yaml:"max_domains_per_exporter"`
	// MaxTCPSessionsPerExporter bounds the TCP sessions open from one
	// address; more are refused and counted. Default: 64.
	MaxTCPSessionsPerExporter int `yaml:"max_tcp_sessions_per_exporter"`
	// AllowExporters, when not empty, lists the only source addresses
	// accepted. With eBPF steering the program drops the others in the
	// kernel, before any socket, and counts them
	// (sluice_steer_datagrams_total{result="denied"}); in user space
	// datagrams from others are dropped before decoding and counted
	// (sluice_dropped_sets_total{reason="not_allowed"}) and TCP
	// connections from others closed at once
	// (sluice_tcp_sessions_refused_total{reason="not_allowed"}), each
	// with a rate-limited log line naming the source. Empty: every source
	// is accepted.
	AllowExporters []netip.Prefix `yaml:"allow_exporters"`
	// RateLimit bounds each exporter address's records and octets per
	// second (off by default).
	RateLimit RateLimitConfig `yaml:"rate_limit"`
}

// Steering modes (Config.Steer).
const (
	SteerAuto   = "auto"
	SteerEBPF   = "ebpf"
	SteerKernel = "kernel"
)

// HeldConfig bounds the held-records buffer. Zero fields take defaults.
type HeldConfig struct {
	// MaxAge is how long a data set waits for its template. Default 5 s.
	MaxAge time.Duration `yaml:"max_age"`
	// PerExporterBytes bounds what one exporter may have held in one event
	// loop (an exporter's datagrams normally all reach the same loop).
	// Default 4 MiB.
	PerExporterBytes yamlconf.Size `yaml:"per_exporter_bytes"`
	// TotalBytes bounds what all exporters together may have held.
	// Default 64 MiB.
	TotalBytes yamlconf.Size `yaml:"total_bytes"`
}

// TLSConfig names the PEM files of tls:// listeners. The files are read
// again when they change (looked at, at most once a second, as sessions
// open) and on Collector.ReloadTLS (SIGHUP), without a restart.
type TLSConfig struct {
	// CertFile and KeyFile are the listener's certificate chain and
	// private key; required with a tls:// listener.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, makes TLS mutual: every exporter must
	// present a client certificate this CA bundle verifies, or its session
	// is refused (counted in sluice_tls_sessions_failed_total
	// {reason="handshake"}). The exporter's identity for template scoping
	// stays its address.
	ClientCAFile string `yaml:"client_ca_file"`
	// HandshakeTimeout bounds a session's TLS handshake. Default: 10 s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
}

// Listener is a parsed Config.Listen entry.
type Listener struct {
	Network string // "udp", "tcp" or "tls"
	Addr    netip.AddrPort
	// Host is the address as configured ("" for every address).
	Host string
}

// URL returns the listener in the form gnet takes.
func (l Listener) URL() string {
	port := fmt.Sprint(l.Addr.Port())
	if l.Host == "" {
		return l.Network + "://:" + port
	}
	if l.Addr.Addr().Is6() {
		return l.Network + "://[" + l.Host + "]:" + port
	}
	return l.Network + "://" + l.Host + ":" + port
}

func (c Config) withDefaults() Config {
	if len(c.Listen) == 0 {
		c.Listen = []string{"udp://:4739", "tcp://:4739"}
	}
	if c.UDPReceiveBuffer == 0 {
		c.UDPReceiveBuffer = 32 << 20
	}
	if c.UDPBatch == 0 {
		c.UDPBatch = 64
	}
	if c.MaxDatagram == 0 {
		c.MaxDatagram = 65535
	}
	if c.TemplateLifetime == 0 {
		c.TemplateLifetime = 1800 * time.Second
	}
	if c.Held.MaxAge == 0 {
		c.Held.MaxAge = 5 * time.Second
	}
	if c.Held.PerExporterBytes == 0 {
		c.Held.PerExporterBytes = 4 << 20
	}
	if c.Held.TotalBytes == 0 {
		c.Held.TotalBytes = 64 << 20
	}
	if c.RingSize == 0 {
		c.RingSize = 16 << 20
	}
	if c.MaxTemplates == 0 {
		c.MaxTemplates = 1 << 18
	}
	if c.MaxTCPSessions == 0 {
		c.MaxTCPSessions = 10000
	}
	if c.Steer == "" {
		c.Steer = SteerAuto
	}
	if c.MaxTemplatesPerExporter == 0 {
		c.MaxTemplatesPerExporter = 1 << 14
	}
	if c.MaxTemplatesPerDomain == 0 {
		c.MaxTemplatesPerDomain = 1 << 12
	}
	if c.MaxDomainsPerExporter == 0 {
		c.MaxDomainsPerExporter = 1 << 10
	}
	if c.MaxTCPSessionsPerExporter == 0 {
		c.MaxTCPSessionsPerExporter = 64
	}
	if c.RateLimit.Burst == 0 {
		c.RateLimit.Burst = time.Second
	}
	if c.TLS.HandshakeTimeout == 0 {
		c.TLS.HandshakeTimeout = 10 * time.Second
	}
	return c
}

// Validate checks the configuration and returns the first problem found, as
// a *yamlconf.FieldError naming the key of the config file.
func (c Config) Validate() error {
	c = c.withDefaults()
	for i, l := range c.Listen {
		if _, err := ParseListeners([]string{l}); err != nil {
			return yamlconf.Field(fmt.Sprintf("listen[%d]", i), "%v", err)
		}
	}
	if _, err := ParseListeners(c.Listen); err != nil {
		return yamlconf.Field("listen", "%v", err)
	}
	f := yamlconf.Field
	switch {
	case c.Loops < 0 || c.Loops > 1024:
		return f("loops", "%d not in 0..1024", c.Loops)
	case c.UDPReceiveBuffer < 0 || c.UDPReceiveBuffer > 1<<30:
		return f("udp_receive_buffer", "%d not in 0..1 GiB", c.UDPReceiveBuffer)
	case c.MaxTemplates < 0:
		return f("max_templates", "must not be negative")
	case c.MaxTCPSessions < 0:
		return f("max_tcp_sessions", "must not be negative")
	case c.MaxTemplatesPerExporter < 0:
		return f("max_templates_per_exporter", "must not be negative")
	case c.MaxTemplatesPerDomain < 0:
		return f("max_templates_per_domain", "must not be negative")
	case c.MaxDomainsPerExporter < 0:
		return f("max_domains_per_exporter", "must not be negative")
	case c.MaxTCPSessionsPerExporter < 0:
		return f("max_tcp_sessions_per_exporter", "must not be negative")
	case c.UDPBatch < 1 || c.UDPBatch > 1024:
		return f("udp_batch", "%d not in 1..1024", c.UDPBatch)
	case c.MaxDatagram < 512 || c.MaxDatagram > 65535:
		return f("max_datagram", "%d not in 512..65535", c.MaxDatagram)
	case c.TemplateLifetime < time.Second:
		return f("template_lifetime", "%v is under 1s", c.TemplateLifetime)
	case c.Held.MaxAge < 0:
		return f("held.max_age", "must not be negative")
	case c.Held.PerExporterBytes < 0:
		return f("held.per_exporter_bytes", "must not be negative")
	case c.Held.TotalBytes < 0:
		return f("held.total_bytes", "must not be negative")
	case c.RingSize < 64<<10 || c.RingSize > 1<<30:
		return f("ring_size", "%d not in 64 KiB..1 GiB", c.RingSize)
	case c.Steer != SteerAuto && c.Steer != SteerEBPF && c.Steer != SteerKernel:
		return f("steer", "%q: want ebpf, kernel or auto", c.Steer)
	case c.Steer == SteerEBPF && c.SharePort:
		return f("steer", "ebpf with share_port would send the shared port's datagrams to this process alone")
	case len(c.AllowExporters) > bpf.MaxAllow:
		return f("allow_exporters", "%d prefixes, at most %d", len(c.AllowExporters), bpf.MaxAllow)
	}
	ls, _ := ParseListeners(c.Listen)
	hasTLS := slices.ContainsFunc(ls, func(l Listener) bool { return l.Network == "tls" })
	switch {
	case hasTLS && (c.TLS.CertFile == "" || c.TLS.KeyFile == ""):
		return f("tls.cert_file", "a tls:// listener needs tls.cert_file and tls.key_file (--tls-cert, --tls-key)")
	case !hasTLS && (c.TLS.CertFile != "" || c.TLS.KeyFile != "" || c.TLS.ClientCAFile != ""):
		return f("tls", "certificate files given but no tls:// listener")
	case c.RateLimit.RecordsPerSecond < 0:
		return f("rate_limit.records_per_second", "must not be negative")
	case c.RateLimit.BytesPerSecond < 0:
		return f("rate_limit.bytes_per_second", "must not be negative")
	case c.RateLimit.Burst < 0:
		return f("rate_limit.burst", "must not be negative")
	case c.TLS.HandshakeTimeout < 0:
		return f("tls.handshake_timeout", "must not be negative")
	}
	for i, p := range c.AllowExporters {
		if !p.IsValid() {
			return f(fmt.Sprintf("allow_exporters[%d]", i), "not a valid prefix")
		}
	}
	return nil
}

// ParseListeners parses listener URLs such as udp://:4739 or
// tcp://[::]:4739.
func ParseListeners(urls []string) ([]Listener, error) {
	out := make([]Listener, 0, len(urls))
	seen := map[string]bool{}
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "udp" && u.Scheme != "tcp" && u.Scheme != "tls") || u.Path != "" || u.Host == "" {
			return nil, fmt.Errorf("collector: listener %q: want udp://host:port, tcp://host:port or tls://host:port", s)
		}
		host, portStr := u.Hostname(), u.Port()
		port, err := parsePort(portStr)
		if err != nil {
			return nil, fmt.Errorf("collector: listener %q: %v", s, err)
		}
		l := Listener{Network: u.Scheme, Host: host}
		addr := netip.IPv6Unspecified()
		if host != "" {
			a, err := netip.ParseAddr(strings.Trim(host, "[]"))
			if err != nil {
				return nil, fmt.Errorf("collector: listener %q: host must be an IP address", s)
			}
			addr = a
		}
		l.Addr = netip.AddrPortFrom(addr, port)
		key := l.Network + " " + l.Addr.String()
		if l.Network == "tls" {
			key = "tcp " + l.Addr.String() // one TCP port: TLS or not
		}
		if seen[key] {
			return nil, fmt.Errorf("collector: listener %q given twice", s)
		}
		seen[key] = true
		out = append(out, l)
	}
	return out, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, fmt.Errorf("missing port")
	}
	var p int
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad port %q", s)
		}
		p = p*10 + int(c-'0')
		if p > 65535 {
			return 0, fmt.Errorf("port %s out of range", s)
		}
	}
	if p == 0 {
		// Every loop opens its own SO_REUSEPORT socket: port 0 would give
		// each a different port.
		return 0, fmt.Errorf("port 0 is not allowed")
	}
	return uint16(p), nil
}

// ParsePrefixes parses a comma-separated list of CIDR prefixes (a bare
// address is a prefix of its full length), as --allow-exporters takes.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("collector: %q is not an address or CIDR prefix", f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("collector: %q is not a CIDR prefix", f)
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("collector: no prefix in %q", s)
	}
	return out, nil
}

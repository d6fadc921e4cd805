package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"time"

	"github.com/sluice-flow/sluice/controlplane/node"
	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/template/redistier"
)

// ingestFlags are the flags `sluice run` and `sluice collector` share: the
// listeners, the event loops, TLS input, the allow-list and the template
// tier. Each overrides the config file's key.
type ingestFlags struct {
	listens                        stringList
	redis, steer, allowExporters   string
	tlsCert, tlsKey, tlsClientCA   string
	loops                          int
	scopePort, stockUDP, sharePort bool
	lifetime                       time.Duration
	redisTLS                       redisTLSFlags
}

func (f *ingestFlags) register(fs *flag.FlagSet, loopsHelp string) {
	fs.Var(&f.listens, "listen", "listener URL, repeatable: udp://:4739, tcp://[::]:4739, tls://:4740 (default udp://:4739 and tcp://:4739)")
	fs.IntVar(&f.loops, "loops", -1, loopsHelp)
	fs.BoolVar(&f.scopePort, "scope-port", false, "scope templates by exporter address and port")
	fs.BoolVar(&f.sharePort, "share-port", false, "share the listening ports with other processes that also ask for it (SO_REUSEPORT); without it a port another process holds stops the start")
	fs.DurationVar(&f.lifetime, "template-lifetime", 0, "lifetime of UDP templates not retransmitted (default 30m)")
	fs.StringVar(&f.redis, "redis", "", "share templates through Redis: host:port[,host:port...] (one node, or cluster nodes)")
	f.redisTLS.register(fs)
	fs.StringVar(&f.steer, "steer", "", steerUsage)
	fs.BoolVar(&f.stockUDP, "stock-udp-read", false, "read one UDP datagram per wake-up as stock gnet does (no recvmmsg batches; for measurements)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "certificate (PEM) of tls:// listeners; reloaded when the file changes and on SIGHUP")
	fs.StringVar(&f.tlsKey, "tls-key", "", "private key (PEM) of tls:// listeners")
	fs.StringVar(&f.tlsClientCA, "tls-client-ca", "", "CA bundle (PEM) for mutual TLS on tls:// listeners: exporters must present a certificate it verifies")
	fs.StringVar(&f.allowExporters, "allow-exporters", "", "accept flow export only from these sources: CIDR[,CIDR...]; others are dropped before decoding and counted")
}

// steerUsage is the --steer flag's help.
const steerUsage = "how UDP datagrams reach the event loops: ebpf (an SO_REUSEPORT program sends each exporter and observation domain to one loop; needs CAP_BPF and CAP_NET_ADMIN), kernel (the kernel's 4-tuple hash), auto (ebpf when permitted, else kernel; the default)"

func (f *ingestFlags) apply(c *node.Config) error {
	if len(f.listens) > 0 {
		c.Listen = f.listens
	}
	if f.loops >= 0 {
		c.Collector.Loops = f.loops
	}
	c.Collector.ScopeByPort = c.Collector.ScopeByPort || f.scopePort
	c.Collector.StockUDPRead = c.Collector.StockUDPRead || f.stockUDP
	c.Collector.SharePort = c.Collector.SharePort || f.sharePort
	if f.steer != "" {
		c.Collector.Steer = f.steer
	}
	if f.lifetime != 0 {
		c.Collector.TemplateLifetime = f.lifetime
	}
	if f.tlsCert != "" {
		c.Collector.TLS.CertFile = f.tlsCert
	}
	if f.tlsKey != "" {
		c.Collector.TLS.KeyFile = f.tlsKey
	}
	if f.tlsClientCA != "" {
		c.Collector.TLS.ClientCAFile = f.tlsClientCA
	}
	if f.allowExporters != "" {
		ps, err := collector.ParsePrefixes(f.allowExporters)
		if err != nil {
			return fmt.Errorf("--allow-exporters: %w", err)
		}
		c.Collector.AllowExporters = ps
	}
	if f.redis != "" {
		addrs, err := node.ParseRedisAddrs(f.redis)
		if err != nil {
			return fmt.Errorf("--redis: %w", err)
		}
		c.Redis.Addrs = addrs
	}
	if f.redisTLS.on || f.redisTLS.ca != "" || f.redisTLS.serverName != "" {
		c.Redis.TLS = true
	}
	if f.redisTLS.ca != "" {
		c.Redis.CAFile = f.redisTLS.ca
	}
	if f.redisTLS.serverName != "" {
		c.Redis.ServerName = f.redisTLS.serverName
	}
	return nil
}

// redisTLSFlags reach Redis over TLS (every command that reaches Redis).
type redisTLSFlags struct {
	on             bool
	ca, serverName string
}

func (f *redisTLSFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.on, "redis-tls", false, "reach Redis over TLS (TLS 1.2 or later)")
	fs.StringVar(&f.ca, "redis-tls-ca", "", "CA bundle (PEM) that signs Redis's certificate (default: the system's; implies --redis-tls)")
	fs.StringVar(&f.serverName, "redis-tls-server-name", "", "name to verify Redis's certificate against (default: the host dialled; implies --redis-tls)")
}

// config returns the TLS configuration the flags ask for, or nil.
func (f *redisTLSFlags) config() (*tls.Config, error) {
	if !f.on && f.ca == "" && f.serverName == "" {
		return nil, nil
	}
	return redistier.ClientTLS(f.ca, f.serverName)
}

// adminTLSFlags serve a process's admin API over TLS (every command that
// has one).
type adminTLSFlags struct{ cert, key string }

func (f *adminTLSFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cert, "admin-tls-cert", "", "serve the admin API over TLS with this certificate (PEM; reloaded when it changes)")
	fs.StringVar(&f.key, "admin-tls-key", "", "private key (PEM) of --admin-tls-cert")
}

func (f *adminTLSFlags) apply(c *node.Config) {
	if f.cert != "" {
		c.AdminTLS.CertFile = f.cert
	}
	if f.key != "" {
		c.AdminTLS.KeyFile = f.key
	}
}

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/template/redistier"
)

// fileConfig is the YAML config file of `sluice run`. Every key is optional;
// a missing key keeps its default. Unknown keys are errors.
type fileConfig struct {
	Listen    []listenURL    `yaml:"listen"`
	Admin     *string        `yaml:"admin"`
	Outputs   []outputSpec   `yaml:"outputs"`
	LogLevel  *string        `yaml:"log_level"`
	Collector collectorYAML  `yaml:"collector"`
	Shutdown  *durationValue `yaml:"shutdown_timeout"`
	Redis     redisYAML      `yaml:"redis"`
	// Pipeline is a pipeline file (relative to the config file's
	// directory); it replaces outputs.
	Pipeline *string `yaml:"pipeline"`
	// AdminTokenFile holds the admin API token (SLUICE_ADMIN_TOKEN also
	// sets it).
	AdminTokenFile *string `yaml:"admin_token_file"`
}

// redisYAML is the shared template store: Redis, one node or a cluster.
type redisYAML struct {
	Addresses  []redisAddr    `yaml:"addresses"`
	Username   *string        `yaml:"username"`
	Password   *string        `yaml:"password"`
	TLS        *bool          `yaml:"tls"`
	CAFile     *string        `yaml:"tls_ca_file"`
	ServerName *string        `yaml:"tls_server_name"`
	Database   *intValue      `yaml:"database"`
	WarmUp     []warmUpEntry  `yaml:"warm_up"`
	StartWait  *durationValue `yaml:"start_wait"`
}

type collectorYAML struct {
	Loops            *intValue      `yaml:"loops"`
	UDPReceiveBuffer *sizeValue     `yaml:"udp_receive_buffer"`
	UDPBatch         *intValue      `yaml:"udp_batch"`
	StockUDPRead     *bool          `yaml:"stock_udp_read"`
	MaxDatagram      *intValue      `yaml:"max_datagram"`
	ScopeByPort      *bool          `yaml:"scope_by_port"`
	TemplateLifetime *durationValue `yaml:"template_lifetime"`
	RingSize         *sizeValue     `yaml:"ring_size"`
	MaxTemplates     *intValue      `yaml:"max_templates"`
	MaxTCPSessions   *intValue      `yaml:"max_tcp_sessions"`
	Held             struct {
		MaxAge           *durationValue `yaml:"max_age"`
		PerExporterBytes *sizeValue     `yaml:"per_exporter_bytes"`
		TotalBytes       *sizeValue     `yaml:"total_bytes"`
	} `yaml:"held"`
}

// runConfig is the resolved configuration: defaults, then the file, then
// flags.
type runConfig struct {
	Collector collector.Config
	Admin     string
	// AdminToken guards the admin API's mutations; empty refuses them.
	AdminToken string
	Outputs    []string
	// Pipeline is the pipeline file; empty: Outputs get every record.
	Pipeline string
	LogLevel string
	Shutdown time.Duration
	// Redis is the shared template store's connection; no addresses
	// means no shared store (templates stay in the process). Lifetime,
	// FetchWait and ScopeByPort follow the collector's settings.
	Redis redistier.Config
	// RedisWarmUp lists the exporters whose templates are loaded before
	// the listeners open ("*": all).
	RedisWarmUp []string
	// RedisStartWait bounds how long the start waits for Redis (and the
	// warm-up) before listening anyway.
	RedisStartWait time.Duration
}

func defaultRunConfig() runConfig {
	return runConfig{Admin: "127.0.0.1:8080", Outputs: []string{"jsonl:-"}, LogLevel: "info", Shutdown: 30 * time.Second,
		RedisStartWait: 5 * time.Second}
}

// loadConfigFile applies a YAML config file to rc. Errors name the line.
func loadConfigFile(path string, rc *runConfig) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return applyConfig(path, data, rc)
}

func applyConfig(name string, data []byte, rc *runConfig) error {
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file: all defaults
		}
		return fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(fc.Listen) > 0 {
		rc.Collector.Listen = rc.Collector.Listen[:0]
		for _, l := range fc.Listen {
			rc.Collector.Listen = append(rc.Collector.Listen, l.v)
		}
	}
	if fc.Admin != nil {
		rc.Admin = *fc.Admin
	}
	if len(fc.Outputs) > 0 {
		rc.Outputs = rc.Outputs[:0]
		for _, o := range fc.Outputs {
			rc.Outputs = append(rc.Outputs, o.v)
		}
	}
	if fc.LogLevel != nil {
		rc.LogLevel = *fc.LogLevel
	}
	if fc.Pipeline != nil {
		rc.Pipeline = relativeTo(name, *fc.Pipeline)
	}
	if fc.AdminTokenFile != nil {
		b, err := os.ReadFile(relativeTo(name, *fc.AdminTokenFile))
		if err != nil {
			return fmt.Errorf("%s: admin_token_file: %v", name, err)
		}
		rc.AdminToken = strings.TrimSpace(string(b))
	}
	if fc.Shutdown != nil {
		if fc.Shutdown.v < time.Second {
			return fmt.Errorf("%s: shutdown_timeout %v: want at least 1s", name, fc.Shutdown.v)
		}
		rc.Shutdown = fc.Shutdown.v
	}
	c := &fc.Collector
	cc := &rc.Collector
	if c.Loops != nil {
		cc.Loops = c.Loops.v
	}
	if c.UDPReceiveBuffer != nil {
		cc.UDPReceiveBuffer = int(c.UDPReceiveBuffer.v)
	}
	if c.UDPBatch != nil {
		cc.UDPBatch = c.UDPBatch.v
	}
	if c.StockUDPRead != nil {
		cc.StockUDPRead = *c.StockUDPRead
	}
	if c.MaxDatagram != nil {
		cc.MaxDatagram = c.MaxDatagram.v
	}
	if c.ScopeByPort != nil {
		cc.ScopeByPort = *c.ScopeByPort
	}
	if c.TemplateLifetime != nil {
		cc.TemplateLifetime = c.TemplateLifetime.v
	}
	if c.RingSize != nil {
		cc.RingSize = int(c.RingSize.v)
	}
	if c.MaxTemplates != nil {
		cc.MaxTemplates = c.MaxTemplates.v
	}
	if c.MaxTCPSessions != nil {
		cc.MaxTCPSessions = c.MaxTCPSessions.v
	}
	if c.Held.MaxAge != nil {
		cc.Held.MaxAge = c.Held.MaxAge.v
	}
	if c.Held.PerExporterBytes != nil {
		cc.Held.PerExporterBytes = int(c.Held.PerExporterBytes.v)
	}
	if c.Held.TotalBytes != nil {
		cc.Held.TotalBytes = c.Held.TotalBytes.v
	}
	r, rr := &fc.Redis, &rc.Redis
	if len(r.Addresses) > 0 {
		rr.Addrs = rr.Addrs[:0]
		for _, a := range r.Addresses {
			rr.Addrs = append(rr.Addrs, a.v)
		}
	}
	if r.Username != nil {
		rr.Username = *r.Username
	}
	if r.Password != nil {
		rr.Password = *r.Password
	}
	if r.TLS != nil {
		rr.TLS = *r.TLS
	}
	if r.CAFile != nil {
		rr.CAFile = *r.CAFile
	}
	if r.ServerName != nil {
		rr.ServerName = *r.ServerName
	}
	if r.Database != nil {
		rr.DB = r.Database.v
	}
	if len(r.WarmUp) > 0 {
		rc.RedisWarmUp = rc.RedisWarmUp[:0]
		for _, e := range r.WarmUp {
			rc.RedisWarmUp = append(rc.RedisWarmUp, e.v)
		}
	}
	if r.StartWait != nil {
		rc.RedisStartWait = r.StartWait.v
	}
	return nil
}

// parseRedisAddrs splits the --redis flag: host:port[,host:port...].
func parseRedisAddrs(s string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if err := checkRedisAddr(a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func checkRedisAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return fmt.Errorf("redis address %q: want host:port", a)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("redis address %q: bad port", a)
	}
	return nil
}

type redisAddr struct{ v string }

func (r *redisAddr) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return lineErr(n, "redis addresses are strings like 10.0.0.5:6379")
	}
	if err := checkRedisAddr(n.Value); err != nil {
		return lineErr(n, "%v", err)
	}
	r.v = n.Value
	return nil
}

// warmUpEntry is an exporter whose templates are loaded at start: an
// address, address:port, or "*".
type warmUpEntry struct{ v string }

func (w *warmUpEntry) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return lineErr(n, "warm_up entries are exporter addresses or *")
	}
	if err := checkWarmUp(n.Value); err != nil {
		return lineErr(n, "%v", err)
	}
	w.v = n.Value
	return nil
}

func checkWarmUp(s string) error {
	if s == "*" {
		return nil
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	if _, err := netip.ParseAddrPort(s); err == nil {
		return nil
	}
	return fmt.Errorf("warm_up %q: want an exporter address, address:port or *", s)
}

// relativeTo resolves path against the directory of the config file.
func relativeTo(configFile, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(configFile), path)
}

func lineErr(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("line %d: %s", n.Line, fmt.Sprintf(format, args...))
}

type listenURL struct{ v string }

func (l *listenURL) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return lineErr(n, "listen entries are strings like udp://:4739")
	}
	if _, err := collector.ParseListeners([]string{n.Value}); err != nil {
		return lineErr(n, "%v", err)
	}
	l.v = n.Value
	return nil
}

type outputSpec struct{ v string }

func (o *outputSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return lineErr(n, "outputs are strings like jsonl:- or discard")
	}
	if err := checkOutput(n.Value); err != nil {
		return lineErr(n, "%v", err)
	}
	o.v = n.Value
	return nil
}

// checkOutput validates an output spec without opening anything.
func checkOutput(s string) error { return export.CheckSpec(s) }

type durationValue struct{ v time.Duration }

func (d *durationValue) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 || n.Kind != yaml.ScalarNode {
		return lineErr(n, "%q is not a duration like 30s or 30m", n.Value)
	}
	d.v = v
	return nil
}

type intValue struct{ v int }

func (i *intValue) UnmarshalYAML(n *yaml.Node) error {
	v, err := strconv.Atoi(n.Value)
	if err != nil || v < 0 || n.Kind != yaml.ScalarNode {
		return lineErr(n, "%q is not a non-negative integer", n.Value)
	}
	i.v = v
	return nil
}

// sizeValue is a byte count: a plain integer or one with a unit (KiB, MiB,
// GiB, KB, MB, GB).
type sizeValue struct{ v int64 }

func (s *sizeValue) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseSize(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return lineErr(n, "%q is not a size like 4194304 or 4MiB", n.Value)
	}
	s.v = v
	return nil
}

func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > (1<<40)/mult {
		return 0, fmt.Errorf("bad size")
	}
	return v * mult, nil
}

package node

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/mediator"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
	"github.com/sluice-flow/sluice/dataplane/template/redistier"
	"github.com/sluice-flow/sluice/dataplane/yamlconf"
)

// Config is a node's configuration: the YAML config file of `sluice run`
// (every key optional), then flags on top. The zero value of every field is
// its documented default.
type Config struct {
	// Listen lists listener URLs (collector.Config.Listen). Default:
	// udp://:4739 and tcp://:4739.
	Listen []string `yaml:"listen"`
	// Admin is the admin API's address; "off" disables it. Default
	// 127.0.0.1:8080.
	Admin string `yaml:"admin"`
	// Outputs get every record when there is no pipeline file. Default:
	// jsonl:- (standard output).
	Outputs []string `yaml:"outputs"`
	// Pipeline is a pipeline file; it replaces Outputs. In a config file
	// it is relative to the file's directory.
	Pipeline string `yaml:"pipeline"`
	// AdminTokenFile holds the admin API token that GET and PUT
	// /api/v1/pipeline need. In a config file it is relative to the
	// file's directory.
	AdminTokenFile string `yaml:"admin_token_file"`
	// AdminTLS, when its files are set, serves the admin API over TLS
	// (HTTPS); the files are read again when they change. In a config file
	// they are relative to the file's directory.
	AdminTLS AdminTLSConfig `yaml:"admin_tls"`
	// AdminToken is the token itself, used when AdminTokenFile is empty
	// (cmd/ takes it from SLUICE_ADMIN_TOKEN). Empty: mutations are
	// refused.
	AdminToken string `yaml:"-"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// ShutdownTimeout bounds the drain at SIGTERM: half for the event
	// loops, half for the mediator. Default 30s, at least 1s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Pprof serves net/http/pprof on this address; empty: off.
	Pprof string `yaml:"pprof"`
	// Collector configures ingest (its Listen comes from Listen).
	Collector collector.Config `yaml:"collector"`
	// Mediator configures the consumer of the collector's rings (its
	// workers: 0, the default, is one per event loop up to GOMAXPROCS).
	Mediator mediator.Config `yaml:"mediator"`
	// Redis is the shared template store; no addresses: none.
	Redis RedisConfig `yaml:"redis"`
	// APIFiles confines the files a pipeline put through the API (PUT
	// /api/v1/pipeline; the split pod's ApplyPipeline) may name: what it
	// reads to read_dir, what its outputs write to write_dir. Defaults:
	// DefaultAPIReadDir and DefaultAPIWriteDir; "/" admits every path. The
	// pipeline file given at start (and reloaded on SIGHUP) is the
	// operator's own and is not confined. In a config file the directories
	// are relative to the file's directory.
	APIFiles pipeline.FileRule `yaml:"api_files"`
}

// AdminTLSConfig names the admin API's certificate and key (PEM); both or
// neither.
type AdminTLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// apiFiles returns APIFiles with its defaults.
func (c *Config) apiFiles() pipeline.FileRule {
	r := c.APIFiles
	if r.ReadDir == "" {
		r.ReadDir = DefaultAPIReadDir
	}
	if r.WriteDir == "" {
		r.WriteDir = DefaultAPIWriteDir
	}
	return r
}

// RedisConfig is the shared template store's connection plus how the start
// waits for it. The template lifetime, fetch wait and port scoping follow
// the collector's settings.
type RedisConfig struct {
	redistier.Config `yaml:",inline"`
	// WarmUp lists the exporters whose templates are loaded before the
	// listeners open: addresses, address:port, or "*" for all.
	WarmUp []string `yaml:"warm_up"`
	// StartWait bounds how long the start waits for Redis and the warm-up
	// before listening anyway. Default 5s.
	StartWait time.Duration `yaml:"start_wait"`
	// Pipeline, when set, names the pipeline the frontend keeps in Redis
	// (sluice:pipeline:<name>): it is put in force at start, before the
	// listeners open, so a pod that restarts runs the fleet's current
	// version. Empty: none is read.
	Pipeline string `yaml:"pipeline"`
}

// Defaults.
const (
	DefaultAdmin     = "127.0.0.1:8080"
	DefaultOutput    = "jsonl:-"
	DefaultShutdown  = 30 * time.Second
	DefaultStartWait = 5 * time.Second
	// DefaultAPIReadDir and DefaultAPIWriteDir are where files named by
	// pipelines put through the API may be read and written.
	DefaultAPIReadDir  = "/etc/sluice"
	DefaultAPIWriteDir = "/var/lib/sluice"
)

// LoadFile applies the YAML config file at path to c: keys in the file
// replace c's values; paths in it are taken relative to its directory.
// Errors name the file and the line.
func LoadFile(path string, c *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return Load(path, data, c)
}

// Load is LoadFile with the file's contents given; name is its path.
func Load(name string, data []byte, c *Config) error {
	var fc Config = *c
	// Lists in the file replace, not extend, what c holds.
	fc.Listen, fc.Outputs, fc.Redis.Addrs, fc.Redis.WarmUp = nil, nil, nil, nil
	fc.Pipeline, fc.AdminTokenFile = "", ""
	if err := yamlconf.Decode(data, &fc); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if fc.Listen == nil {
		fc.Listen = c.Listen
	}
	if fc.Outputs == nil {
		fc.Outputs = c.Outputs
	}
	if fc.Redis.Addrs == nil {
		fc.Redis.Addrs = c.Redis.Addrs
	}
	if fc.Redis.WarmUp == nil {
		fc.Redis.WarmUp = c.Redis.WarmUp
	}
	if fc.AdminTLS.CertFile != "" && fc.AdminTLS.CertFile != c.AdminTLS.CertFile {
		fc.AdminTLS.CertFile = relativeTo(name, fc.AdminTLS.CertFile)
	}
	if fc.AdminTLS.KeyFile != "" && fc.AdminTLS.KeyFile != c.AdminTLS.KeyFile {
		fc.AdminTLS.KeyFile = relativeTo(name, fc.AdminTLS.KeyFile)
	}
	if fc.APIFiles.ReadDir != "" && fc.APIFiles.ReadDir != c.APIFiles.ReadDir {
		fc.APIFiles.ReadDir = relativeTo(name, fc.APIFiles.ReadDir)
	}
	if fc.APIFiles.WriteDir != "" && fc.APIFiles.WriteDir != c.APIFiles.WriteDir {
		fc.APIFiles.WriteDir = relativeTo(name, fc.APIFiles.WriteDir)
	}
	if fc.Pipeline == "" {
		fc.Pipeline = c.Pipeline
	} else {
		fc.Pipeline = relativeTo(name, fc.Pipeline)
	}
	if fc.AdminTokenFile == "" {
		fc.AdminTokenFile = c.AdminTokenFile
	} else {
		fc.AdminTokenFile = relativeTo(name, fc.AdminTokenFile)
		if _, err := os.Stat(fc.AdminTokenFile); err != nil {
			return fmt.Errorf("%s: admin_token_file: %w", name, err)
		}
	}
	*c = fc
	return nil
}

// relativeTo resolves path against the directory of the config file.
func relativeTo(configFile, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(configFile), path)
}

// Validate checks c and returns the first problem, as a *yamlconf.FieldError
// naming the config file's key.
func (c *Config) Validate() error {
	f := yamlconf.Field
	for i, l := range c.Listen {
		if _, err := collector.ParseListeners([]string{l}); err != nil {
			return f(fmt.Sprintf("listen[%d]", i), "%v", err)
		}
	}
	if _, err := collector.ParseListeners(c.Listen); err != nil {
		return f("listen", "%v", err)
	}
	if c.Admin != "" && c.Admin != "off" {
		if _, _, err := net.SplitHostPort(c.Admin); err != nil {
			return f("admin", "%q: want host:port or off", c.Admin)
		}
	}
	for i, o := range c.Outputs {
		if err := export.CheckSpec(o); err != nil {
			return f(fmt.Sprintf("outputs[%d]", i), "%v", err)
		}
	}
	if (c.AdminTLS.CertFile == "") != (c.AdminTLS.KeyFile == "") {
		return f("admin_tls", "cert_file and key_file go together")
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		return f("log_level", "%v", err)
	}
	if c.ShutdownTimeout != 0 && c.ShutdownTimeout < time.Second {
		return f("shutdown_timeout", "%v: want at least 1s", c.ShutdownTimeout)
	}
	cc := c.Collector
	cc.Listen = c.Listen // the collector's listeners are the top-level key
	if err := cc.Validate(); err != nil {
		return yamlconf.Nest("collector", err)
	}
	if w := c.Mediator.Workers; w < 0 || w > 1024 {
		return f("mediator.workers", "%d not in 0..1024", w)
	}
	for i, a := range c.Redis.Addrs {
		if err := CheckRedisAddr(a); err != nil {
			return f(fmt.Sprintf("redis.addresses[%d]", i), "%v", err)
		}
	}
	for i, w := range c.Redis.WarmUp {
		if err := checkWarmUp(w); err != nil {
			return f(fmt.Sprintf("redis.warm_up[%d]", i), "%v", err)
		}
	}
	if c.Redis.DB < 0 {
		return f("redis.database", "%d is negative", c.Redis.DB)
	}
	if c.Redis.StartWait < 0 {
		return f("redis.start_wait", "must not be negative")
	}
	if c.Redis.Pipeline != "" && len(c.Redis.Addrs) == 0 {
		return f("redis.pipeline", "needs redis.addresses")
	}
	return nil
}

// withDefaults fills the zero fields with their defaults.
func (c Config) withDefaults() Config {
	if c.Admin == "" {
		c.Admin = DefaultAdmin
	}
	if len(c.Outputs) == 0 {
		c.Outputs = []string{DefaultOutput}
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdown
	}
	if c.Redis.StartWait == 0 {
		c.Redis.StartWait = DefaultStartWait
	}
	c.Collector.Listen = c.Listen
	return c
}

// ParseLevel parses a log level: debug, info, warn or error ("" is info).
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q: want debug, info, warn or error", s)
	}
	return l, nil
}

// NewLogger returns the process's one structured logger, writing text lines
// to w (stderr: standard output carries records).
func NewLogger(level string, w io.Writer) (*slog.Logger, error) {
	l, err := ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %v", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// ParseRedisAddrs splits host:port[,host:port...].
func ParseRedisAddrs(s string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if err := CheckRedisAddr(a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// CheckRedisAddr checks one host:port Redis address.
func CheckRedisAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return fmt.Errorf("redis address %q: want host:port", a)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("redis address %q: bad port", a)
	}
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
	return fmt.Errorf("%q: want an exporter address, address:port or *", s)
}

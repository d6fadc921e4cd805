package export

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// KafkaFormat is how records are written into Kafka messages.
type KafkaFormat uint8

const (
	// KafkaJSON writes one JSON object per message, as JSON lines without
	// the newline.
	KafkaJSON KafkaFormat = iota
	// KafkaGoflow2PB writes goflow2's FlowMessage protobuf, length-delimited
	// (a varint length, then the message), as goflow2 does.
	KafkaGoflow2PB
)

// DefaultKafkaQueueBytes bounds the record bytes (keys and values) waiting
// for the brokers' acknowledgement.
const DefaultKafkaQueueBytes = 16 << 20

// KafkaKeyPart is one part of a message key: the exporter's address, the
// observation domain, or an element's encoded value.
type KafkaKeyPart struct {
	Exporter bool
	Domain   bool
	PEN      uint32
	ID       uint16
}

// KafkaConfig configures a Kafka output. The zero value of each option is
// its documented default.
type KafkaConfig struct {
	Brokers []string // host:port
	Topic   string
	Format  KafkaFormat
	// Key is what a message's key is made of, parts appended in order:
	// the exporter address (4 or 16 octets), the observation domain (4
	// octets, big endian) or an element's value as encoded. nil: the
	// exporter address, so one exporter's records keep their order. Keys
	// pick the partition (murmur2, as Kafka's Java client does).
	Key   []KafkaKeyPart
	NoKey bool // no key: records are spread over partitions
	// Compression: "none" (or ""), "gzip", "snappy", "lz4" or "zstd".
	Compression string
	// Acks: "all" (or ""), "leader" or "none".
	Acks string
	// NoIdempotence turns off the idempotent producer (on by default; it
	// needs acks=all, so other acks turn it off).
	NoIdempotence bool
	// QueueBytes bounds the record bytes waiting for acknowledgement; what
	// would exceed it is dropped and counted. 0: DefaultKafkaQueueBytes.
	QueueBytes int64
	// Linger is how long a partition's batch waits for more records. 0:
	// 10 ms; negative: none.
	Linger time.Duration
	// BatchBytes bounds a batch per partition. 0: franz-go's 1000012.
	BatchBytes int32
	ClientID   string // "": "sluice"
	TLS        bool
	// TLSCAFile holds PEM CAs for the broker certificates (default: the
	// system's); TLSCertFile and TLSKeyFile a client certificate.
	TLSCAFile, TLSCertFile, TLSKeyFile, TLSServerName string
	// SASL: "" (none), "plain", "scram-sha-256" or "scram-sha-512".
	SASL             string
	SASLUser         string
	SASLPasswordFile string
}

var kafkaOptions = []string{"format", "key", "compression", "acks", "idempotent", "queue", "linger",
	"batch", "client_id", "tls", "tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name",
	"sasl", "sasl_user", "sasl_password_file"}

// parseKafkaSpec parses
// "kafka://BROKER[,BROKER...]/TOPIC[?format=json|goflow2-pb&key=...&...]".
func parseKafkaSpec(spec string) (KafkaConfig, error) {
	var c KafkaConfig
	rest, q, err := splitQuery(spec, strings.TrimPrefix(spec, "kafka://"), kafkaOptions...)
	if err != nil {
		return c, err
	}
	brokers, topic, ok := strings.Cut(rest, "/")
	if !ok || topic == "" || strings.ContainsAny(topic, "/") {
		return c, fmt.Errorf("export: %q: want kafka://BROKER[,BROKER...]/TOPIC", spec)
	}
	for _, b := range strings.Split(brokers, ",") {
		if err := checkHostPort(spec, b); err != nil {
			return c, err
		}
		c.Brokers = append(c.Brokers, b)
	}
	c.Topic = topic
	bad := func(key, want string) error {
		return fmt.Errorf("export: %q: %s: bad value %q (want %s)", spec, key, q.Get(key), want)
	}
	switch q.Get("format") {
	case "", "json":
	case "goflow2-pb":
		c.Format = KafkaGoflow2PB
	default:
		return c, bad("format", "json or goflow2-pb")
	}
	if q.Has("key") {
		if c.Key, c.NoKey, err = parseKafkaKey(q.Get("key")); err != nil {
			return c, fmt.Errorf("export: %q: key: %w", spec, err)
		}
	}
	switch c.Compression = q.Get("compression"); c.Compression {
	case "", "none", "gzip", "snappy", "lz4", "zstd":
	default:
		return c, bad("compression", "none, gzip, snappy, lz4 or zstd")
	}
	switch c.Acks = q.Get("acks"); c.Acks {
	case "", "all", "leader", "none":
	default:
		return c, bad("acks", "all, leader or none")
	}
	switch q.Get("idempotent") {
	case "":
		c.NoIdempotence = c.Acks == "leader" || c.Acks == "none"
	case "true":
		if c.Acks == "leader" || c.Acks == "none" {
			return c, fmt.Errorf("export: %q: idempotent needs acks=all", spec)
		}
	case "false":
		c.NoIdempotence = true
	default:
		return c, bad("idempotent", "true or false")
	}
	if c.QueueBytes, err = optSize(spec, q, "queue", DefaultKafkaQueueBytes); err != nil {
		return c, err
	}
	if s := q.Get("linger"); s == "0" {
		c.Linger = -1
	} else if c.Linger, err = optDuration(spec, q, "linger", 0); err != nil {
		return c, err
	}
	batch, err := optSize(spec, q, "batch", 0)
	if err != nil {
		return c, err
	}
	if batch > 1<<30 {
		return c, bad("batch", "at most 1GiB")
	}
	c.BatchBytes = int32(batch)
	c.ClientID = q.Get("client_id")
	switch q.Get("tls") {
	case "", "false":
	case "true":
		c.TLS = true
	default:
		return c, bad("tls", "true or false")
	}
	c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile = q.Get("tls_ca_file"), q.Get("tls_cert_file"), q.Get("tls_key_file")
	c.TLSServerName = q.Get("tls_server_name")
	c.TLS = c.TLS || c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSServerName != ""
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return c, fmt.Errorf("export: %q: tls_cert_file and tls_key_file go together", spec)
	}
	switch c.SASL = q.Get("sasl"); c.SASL {
	case "":
		if q.Has("sasl_user") || q.Has("sasl_password_file") {
			return c, fmt.Errorf("export: %q: sasl_user and sasl_password_file need sasl", spec)
		}
	case "plain", "scram-sha-256", "scram-sha-512":
		c.SASLUser, c.SASLPasswordFile = q.Get("sasl_user"), q.Get("sasl_password_file")
		if c.SASLUser == "" || c.SASLPasswordFile == "" {
			return c, fmt.Errorf("export: %q: sasl needs sasl_user and sasl_password_file", spec)
		}
	default:
		return c, bad("sasl", "plain, scram-sha-256 or scram-sha-512")
	}
	return c, nil
}

// parseKafkaKey parses "exporter", "none" or a comma-separated list of
// exporter, observation_domain and element names.
func parseKafkaKey(s string) (parts []KafkaKeyPart, none bool, err error) {
	if s == "none" {
		return nil, true, nil
	}
	for _, name := range strings.Split(s, ",") {
		switch name = strings.TrimSpace(name); name {
		case "exporter":
			parts = append(parts, KafkaKeyPart{Exporter: true})
		case "observation_domain":
			parts = append(parts, KafkaKeyPart{Domain: true})
		default:
			ie, ok := ipfix.ElementByName(name)
			if !ok {
				return nil, false, fmt.Errorf("unknown element %q", name)
			}
			parts = append(parts, KafkaKeyPart{PEN: ie.PEN, ID: ie.ID})
		}
	}
	return parts, false, nil
}

// Kafka produces one Kafka message per record with franz-go. Record never
// blocks: it encodes the record into a pooled kgo.Record and hands it to the
// client, which batches, compresses and retries (reconnecting) until the
// brokers acknowledge it. Records count as sent once acknowledged (per
// acks). Record bytes waiting for acknowledgement are bounded by
// QueueBytes: a record that would exceed it is dropped and counted, so a
// broker outage loses nothing until the queue is full. Record, Flush and
// Close are called by one goroutine (the mediator's); Stats, Queued,
// Reconnects and Skipped are safe from any goroutine.
type Kafka struct {
	name   string
	topic  string
	format KafkaFormat
	keys   []KafkaKeyPart
	noKey  bool
	cl     *kgo.Client
	ctx    context.Context
	limit  int64

	// Mediator side.
	closed  bool
	pb      *goflowEncoder
	meta    jsonl.Meta // reused for JSON: its time cache
	keyL    *ipfix.Layout
	keyIdx  []int // field index of each key part in keyL, or -1
	promise func(*kgo.Record, error)

	mu   sync.Mutex // guards free: the mediator takes, promises give back
	free []*kgo.Record

	inflight   atomic.Int64 // record bytes handed to the client, not done
	queued     atomic.Int64
	sent       atomic.Uint64
	dropped    atomic.Uint64
	skipped    atomic.Uint64
	errs       atomic.Uint64
	reconnects atomic.Uint64

	hookMu sync.Mutex
	lost   map[int32]bool // brokers whose connection closed or dial failed
}

// kafkaCloseGrace is how long Close waits for the brokers to acknowledge
// what is queued.
const kafkaCloseGrace = tcpCloseGrace

// NewKafka starts a Kafka output named name. It reads the TLS and SASL files
// named in c; brokers are dialled in the background.
func NewKafka(name string, c KafkaConfig) (*Kafka, error) {
	k := &Kafka{
		name: name, topic: c.Topic, format: c.Format, keys: c.Key, noKey: c.NoKey,
		ctx: context.Background(), limit: c.QueueBytes, lost: make(map[int32]bool),
	}
	if k.limit <= 0 {
		k.limit = DefaultKafkaQueueBytes
	}
	if !k.noKey && len(k.keys) == 0 {
		k.keys = []KafkaKeyPart{{Exporter: true}}
	}
	k.keyIdx = make([]int, len(k.keys))
	if k.format == KafkaGoflow2PB {
		k.pb = newGoflowEncoder()
	}
	k.promise = k.done
	opts, err := c.clientOpts(k)
	if err != nil {
		return nil, fmt.Errorf("export: %q: %w", name, err)
	}
	if k.cl, err = kgo.NewClient(opts...); err != nil {
		return nil, fmt.Errorf("export: %q: %w", name, err)
	}
	return k, nil
}

func (c *KafkaConfig) clientOpts(k *Kafka) ([]kgo.Opt, error) {
	id := c.ClientID
	if id == "" {
		id = "sluice"
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.DefaultProduceTopic(c.Topic),
		kgo.ClientID(id),
		kgo.WithHooks((*kafkaHooks)(k)),
		// Our own bound (limit) decides drops; the client's stays above it.
		kgo.MaxBufferedBytes(int(k.limit) + 1<<20),
		kgo.MaxBufferedRecords(1 << 30),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	}
	var codec kgo.CompressionCodec
	switch c.Compression {
	case "", "none":
		codec = kgo.NoCompression()
	case "gzip":
		codec = kgo.GzipCompression()
	case "snappy":
		codec = kgo.SnappyCompression()
	case "lz4":
		codec = kgo.Lz4Compression()
	case "zstd":
		codec = kgo.ZstdCompression()
	default:
		return nil, fmt.Errorf("unknown compression %q", c.Compression)
	}
	opts = append(opts, kgo.ProducerBatchCompression(codec))
	switch c.Acks {
	case "", "all":
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case "leader":
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()))
	case "none":
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()))
	default:
		return nil, fmt.Errorf("unknown acks %q", c.Acks)
	}
	if c.NoIdempotence || (c.Acks != "" && c.Acks != "all") {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	switch {
	case c.Linger < 0:
		opts = append(opts, kgo.ProducerLinger(0))
	case c.Linger > 0:
		opts = append(opts, kgo.ProducerLinger(c.Linger))
	}
	if c.BatchBytes > 0 {
		opts = append(opts, kgo.ProducerBatchMaxBytes(c.BatchBytes))
	}
	if c.TLS {
		tc, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if c.SASL != "" {
		pw, err := os.ReadFile(c.SASLPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("sasl password: %w", err)
		}
		pass := strings.TrimRight(string(pw), "\r\n")
		switch c.SASL {
		case "plain":
			opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUser, Pass: pass}.AsMechanism()))
		case "scram-sha-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: pass}.AsSha256Mechanism()))
		case "scram-sha-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: pass}.AsSha512Mechanism()))
		default:
			return nil, fmt.Errorf("unknown sasl %q", c.SASL)
		}
	}
	return opts, nil
}

func (c *KafkaConfig) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls_ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls_ca_file %s: no PEM certificates", c.TLSCAFile)
		}
	}
	if c.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Record implements Output.
func (k *Kafka) Record(m *jsonl.Meta, r *ipfix.Record) {
	if k.closed {
		k.dropped.Add(1)
		return
	}
	kr := k.get()
	v := kr.Value[:0]
	switch k.format {
	case KafkaGoflow2PB:
		var ok bool
		if v, ok = k.pb.appendRecord(v, m, r); !ok {
			k.put(kr)
			k.skipped.Add(1)
			return
		}
	default:
		k.meta.Exporter, k.meta.Msg, k.meta.Resolve, k.meta.Received = m.Exporter, m.Msg, m.Resolve, m.Received
		v = jsonl.AppendRecord(v, &k.meta, r)
		v = v[:len(v)-1] // one record per message: no newline
	}
	kr.Value = v
	kr.Key = k.appendKey(kr.Key[:0], m, r)
	if k.noKey {
		kr.Key = nil
	}
	size := int64(len(kr.Key) + len(kr.Value))
	if k.inflight.Load()+size > k.limit {
		k.put(kr)
		k.dropped.Add(1)
		return
	}
	k.inflight.Add(size)
	k.queued.Add(1)
	k.cl.TryProduce(k.ctx, kr, k.promise)
}

// appendKey appends r's key parts.
func (k *Kafka) appendKey(dst []byte, m *jsonl.Meta, r *ipfix.Record) []byte {
	if r.Layout != k.keyL {
		k.keyL = r.Layout
		for i, p := range k.keys {
			k.keyIdx[i] = -1
			if !p.Exporter && !p.Domain {
				k.keyIdx[i] = r.Layout.Index(p.PEN, p.ID)
			}
		}
	}
	for i, p := range k.keys {
		switch {
		case p.Exporter:
			a := m.Exporter.Addr().Unmap()
			if a.Is4() {
				b := a.As4()
				dst = append(dst, b[:]...)
			} else {
				b := a.As16()
				dst = append(dst, b[:]...)
			}
		case p.Domain:
			d := m.Msg.DomainID
			dst = append(dst, byte(d>>24), byte(d>>16), byte(d>>8), byte(d))
		default:
			if j := k.keyIdx[i]; j >= 0 {
				dst = append(dst, r.Bytes(j)...)
			}
		}
	}
	return dst
}

// get takes a pooled record.
func (k *Kafka) get() *kgo.Record {
	k.mu.Lock()
	if n := len(k.free); n > 0 {
		kr := k.free[n-1]
		k.free = k.free[:n-1]
		k.mu.Unlock()
		key, val := kr.Key, kr.Value
		*kr = kgo.Record{Key: key[:0], Value: val[:0], Topic: k.topic}
		return kr
	}
	k.mu.Unlock()
	return &kgo.Record{Topic: k.topic, Value: make([]byte, 0, 512), Key: make([]byte, 0, 16)}
}

func (k *Kafka) put(kr *kgo.Record) {
	k.mu.Lock()
	k.free = append(k.free, kr)
	k.mu.Unlock()
}

// done is the produce promise: franz-go calls it once per record, serially,
// from its own goroutine.
func (k *Kafka) done(kr *kgo.Record, err error) {
	k.inflight.Add(-int64(len(kr.Key) + len(kr.Value)))
	k.queued.Add(-1)
	switch {
	case err == nil:
		k.sent.Add(1)
	case errors.Is(err, kgo.ErrMaxBuffered):
		k.dropped.Add(1)
	default:
		k.dropped.Add(1)
		k.errs.Add(1)
	}
	k.put(kr)
}

// Flush implements Output. The client sends batches on its own (linger,
// batch size), and waiting for acknowledgements here would stall the
// mediator while a broker is away, so Flush does nothing.
func (k *Kafka) Flush() error { return nil }

// Close implements Output: queued records get a few seconds
// (kafkaCloseGrace) to be acknowledged; what is left is counted as dropped.
// Records given after Close are dropped.
func (k *Kafka) Close() error {
	if k.closed {
		return nil
	}
	k.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), kafkaCloseGrace)
	defer cancel()
	err := k.cl.Flush(ctx)
	k.cl.Close() // fails what is still buffered: the promises count it dropped
	if err != nil {
		return fmt.Errorf("export: %q: %w", k.name, err)
	}
	return nil
}

// Name implements Output.
func (k *Kafka) Name() string { return k.name }

// Stats implements Output.
func (k *Kafka) Stats() Stats {
	return Stats{Sent: k.sent.Load(), Dropped: k.dropped.Load(), Errors: k.errs.Load()}
}

// Queued implements QueueStats: records handed to the client and not yet
// acknowledged or dropped.
func (k *Kafka) Queued() int { return int(k.queued.Load()) }

// Reconnects implements QueueStats: connections made to a broker after a
// connection to it closed or a dial failed (franz-go also closes
// connections idle for 20 s: the next connection counts too).
func (k *Kafka) Reconnects() uint64 { return k.reconnects.Load() }

// Skipped counts options records, which goflow2-pb does not carry (goflow2
// takes only their sampling rate).
func (k *Kafka) Skipped() uint64 { return k.skipped.Load() }

// kafkaHooks counts failed dials and reconnections. franz-go calls hooks
// from its connection goroutines.
type kafkaHooks Kafka

func (h *kafkaHooks) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	k := (*Kafka)(h)
	k.hookMu.Lock()
	defer k.hookMu.Unlock()
	if err != nil {
		k.errs.Add(1)
		k.lost[meta.NodeID] = true
		return
	}
	if k.lost[meta.NodeID] {
		delete(k.lost, meta.NodeID)
		k.reconnects.Add(1)
	}
}

func (h *kafkaHooks) OnBrokerDisconnect(meta kgo.BrokerMetadata, _ net.Conn) {
	k := (*Kafka)(h)
	k.hookMu.Lock()
	k.lost[meta.NodeID] = true
	k.hookMu.Unlock()
}

package export

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/sluice-flow/sluice/dataplane/tlsfiles"
)

// ipfixSpec is a parsed ipfix+tcp, ipfix+udp or ipfix-file output.
type ipfixSpec struct {
	kind        string // "tcp", "tls", "udp", "file"
	addr, path  string
	tls         tlsfiles.Files // ipfix+tls: the CA and optional client certificate
	serverName  string         // ipfix+tls: the name the server's certificate must carry
	queue       int64
	mtu         int
	interval    time.Duration
	rotateSize  int64
	rotateEvery time.Duration
}

func isIPFIXSpec(spec string) bool {
	return strings.HasPrefix(spec, "ipfix+tcp://") || strings.HasPrefix(spec, "ipfix+udp://") ||
		strings.HasPrefix(spec, "ipfix+tls://") ||
		strings.HasPrefix(spec, "ipfix-file:")
}

// CheckSpec validates an output spec without opening anything (for
// configuration files): the forms Parse accepts.
func CheckSpec(spec string) error {
	switch {
	case spec == "discard", spec == "jsonl:-":
		return nil
	case strings.HasPrefix(spec, "jsonl:"):
		_, _, _, err := parseJSONLFileSpec(spec)
		return err
	case strings.HasPrefix(spec, "jsonl+tcp://"):
		_, _, err := parseJSONLTCPSpec(spec)
		return err
	case isIPFIXSpec(spec):
		_, err := parseIPFIXSpec(spec)
		return err
	case strings.HasPrefix(spec, "kafka://"):
		_, err := parseKafkaSpec(spec)
		return err
	case strings.HasPrefix(spec, "graphql+http://"), strings.HasPrefix(spec, "graphql+https://"):
		_, err := parseGraphQLSpec(spec)
		return err
	}
	return fmt.Errorf("export: unknown output %q (want %s)", spec, outputForms)
}

func parseIPFIXSpec(spec string) (ipfixSpec, error) {
	var s ipfixSpec
	switch {
	case strings.HasPrefix(spec, "ipfix+tcp://"):
		addr, q, err := splitQuery(spec, strings.TrimPrefix(spec, "ipfix+tcp://"), "queue")
		if err != nil {
			return s, err
		}
		if err := checkHostPort(spec, addr); err != nil {
			return s, err
		}
		s.kind, s.addr = "tcp", addr
		if s.queue, err = optSize(spec, q, "queue", DefaultTCPQueueBytes); err != nil {
			return s, err
		}
		if s.queue < 2*tcpChunkBytes {
			return s, fmt.Errorf("export: %q: queue must be at least %d KiB", spec, 2*tcpChunkBytes>>10)
		}
	case strings.HasPrefix(spec, "ipfix+tls://"):
		addr, q, err := splitQuery(spec, strings.TrimPrefix(spec, "ipfix+tls://"), "queue", "ca_file", "cert_file", "key_file", "server_name")
		if err != nil {
			return s, err
		}
		if err := checkHostPort(spec, addr); err != nil {
			return s, err
		}
		s.kind, s.addr = "tls", addr
		if s.queue, err = optSize(spec, q, "queue", DefaultTCPQueueBytes); err != nil {
			return s, err
		}
		if s.queue < 2*tcpChunkBytes {
			return s, fmt.Errorf("export: %q: queue must be at least %d KiB", spec, 2*tcpChunkBytes>>10)
		}
		s.tls = tlsfiles.Files{CA: q.Get("ca_file"), Cert: q.Get("cert_file"), Key: q.Get("key_file")}
		if (s.tls.Cert == "") != (s.tls.Key == "") {
			return s, fmt.Errorf("export: %q: cert_file and key_file go together", spec)
		}
		s.serverName = q.Get("server_name")
		if s.serverName == "" {
			s.serverName, _, _ = net.SplitHostPort(addr)
		}
	case strings.HasPrefix(spec, "ipfix+udp://"):
		addr, q, err := splitQuery(spec, strings.TrimPrefix(spec, "ipfix+udp://"), "mtu", "template_interval")
		if err != nil {
			return s, err
		}
		if err := checkHostPort(spec, addr); err != nil {
			return s, err
		}
		s.kind, s.addr = "udp", addr
		mtu, err := optSize(spec, q, "mtu", 0)
		if err != nil {
			return s, err
		}
		if q.Has("mtu") && (mtu < 576 || mtu > 65535) {
			return s, fmt.Errorf("export: %q: mtu must be 576..65535", spec)
		}
		s.mtu = int(mtu)
		if s.interval, err = optDuration(spec, q, "template_interval", DefaultUDPTemplateInterval); err != nil {
			return s, err
		}
	case strings.HasPrefix(spec, "ipfix-file:"):
		path, q, err := splitQuery(spec, strings.TrimPrefix(spec, "ipfix-file:"), "rotate_size", "rotate_every")
		if err != nil {
			return s, err
		}
		if path == "" {
			return s, fmt.Errorf("export: %q: missing path", spec)
		}
		s.kind, s.path = "file", path
		if s.rotateSize, err = optSize(spec, q, "rotate_size", DefaultRotateSize); err != nil {
			return s, err
		}
		if s.rotateEvery, err = optDuration(spec, q, "rotate_every", DefaultRotateEvery); err != nil {
			return s, err
		}
	default:
		return s, fmt.Errorf("export: unknown output %q", spec)
	}
	return s, nil
}

// openIPFIX builds an IPFIX output from its spec.
func openIPFIX(spec string) (Output, error) {
	s, err := parseIPFIXSpec(spec)
	if err != nil {
		return nil, err
	}
	switch s.kind {
	case "tcp":
		return NewIPFIXTCP(spec, s.addr, s.queue), nil
	case "tls":
		return NewIPFIXTLS(spec, s.addr, s.queue, s.tls, s.serverName)
	case "udp":
		u, err := NewIPFIXUDP(spec, s.addr, s.mtu, s.interval)
		if err != nil {
			return nil, fmt.Errorf("export: %q: %w", spec, err)
		}
		return u, nil
	default:
		return NewIPFIXFile(spec, s.path, s.rotateSize, s.rotateEvery)
	}
}

// tlsFiles lists the certificate and key files the spec names.
func (s *ipfixSpec) tlsFiles() []string { return []string{s.tls.CA, s.tls.Cert, s.tls.Key} }

package meter

import (
	"errors"
	"fmt"
	"time"
)

// Config is a meter's configuration. The zero value is the documented
// default everywhere.
type Config struct {
	// ActiveTimeout ends a flow that has lasted this long (capture time);
	// its next packet starts a new one. 0 means 1800 s.
	ActiveTimeout time.Duration
	// IdleTimeout ends a flow without packets for this long. 0 means 15 s.
	IdleTimeout time.Duration
	// Biflow makes one RFC 5103 record per bidirectional flow, the
	// initiator being the side of the first packet.
	Biflow bool
	// MaxFlows bounds the flow table; at the bound the least recently
	// seen flow is exported early (Stats.EarlyExports). 0 means 262144.
	MaxFlows int
	// MaxFragments bounds the IPv4/IPv6 fragment table that gives later
	// fragments the ports of their first fragment. 0 means 4096.
	MaxFragments int
	// DPI reads the TLS server name, HTTP method and Host, and DNS query
	// name and type from the first packets of each flow.
	DPI bool
	// ObservationDomain is the IPFIX observation domain of the records.
	ObservationDomain uint32
	// MessageSize bounds the IPFIX messages made, in octets. 0 means
	// 16384; at least 512, at most 65535.
	MessageSize int
	// Progress, if set, is called on the meter's goroutine about every
	// ProgressInterval (wall clock) while a capture is read, and once at
	// the end of each capture.
	Progress func(Progress)
	// ProgressInterval: 0 means one second.
	ProgressInterval time.Duration
}

// Defaults.
const (
	DefaultActiveTimeout = 1800 * time.Second
	DefaultIdleTimeout   = 15 * time.Second
	DefaultMaxFlows      = 262144
	DefaultMaxFragments  = 4096
	DefaultMessageSize   = 16384
)

// ErrConfig is wrapped by the errors of New for a bad Config.
var ErrConfig = errors.New("meter: bad config")

// withDefaults returns c with zero values replaced, or an error naming the
// bad field.
func (c Config) withDefaults() (Config, error) {
	if c.ActiveTimeout == 0 {
		c.ActiveTimeout = DefaultActiveTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxFlows == 0 {
		c.MaxFlows = DefaultMaxFlows
	}
	if c.MaxFragments == 0 {
		c.MaxFragments = DefaultMaxFragments
	}
	if c.MessageSize == 0 {
		c.MessageSize = DefaultMessageSize
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = time.Second
	}
	switch {
	case c.ActiveTimeout < time.Millisecond:
		return c, fmt.Errorf("%w: active timeout %v (want at least 1ms)", ErrConfig, c.ActiveTimeout)
	case c.IdleTimeout < time.Millisecond:
		return c, fmt.Errorf("%w: idle timeout %v (want at least 1ms)", ErrConfig, c.IdleTimeout)
	case c.MaxFlows < 1 || c.MaxFlows > 1<<30:
		return c, fmt.Errorf("%w: max flows %d (want 1 to 2^30)", ErrConfig, c.MaxFlows)
	case c.MaxFragments < 1 || c.MaxFragments > 1<<24:
		return c, fmt.Errorf("%w: max fragments %d (want 1 to 2^24)", ErrConfig, c.MaxFragments)
	case c.MessageSize < 512 || c.MessageSize > 65535:
		return c, fmt.Errorf("%w: message size %d (want 512 to 65535)", ErrConfig, c.MessageSize)
	}
	return c, nil
}

// Progress is what a meter has done so far, for progress reports.
type Progress struct {
	File      string // capture being read
	FileBytes int64  // bytes of it read so far
	FileSize  int64  // its size, or -1 when unknown
	Stats
}

// Percent returns how much of the current file has been read, or -1 when
// its size is unknown.
func (p Progress) Percent() float64 {
	if p.FileSize <= 0 {
		return -1
	}
	return 100 * float64(p.FileBytes) / float64(p.FileSize)
}

// Stats counts what a meter has seen. Every packet read is either metered
// (counted in a flow) or skipped under exactly one reason, so Packets
// equals Metered plus the sum of Skipped.
type Stats struct {
	Packets      uint64 // packets read from captures
	Bytes        uint64 // captured bytes of those packets
	Metered      uint64 // packets counted in a flow
	Octets       uint64 // IP octets of the metered packets (octetDeltaCount)
	Skipped      [NumReasons]uint64
	Flows        uint64 // flow records exported
	FlowsOpen    int    // flows in the table now
	EarlyExports uint64 // flows exported early because the table was full (MaxFlows)
	Messages     uint64 // IPFIX messages made
	Fragments    uint64 // later fragments given their first fragment's ports
	// FragmentTableFull counts first fragments whose ports could not be
	// kept (MaxFragments): their later fragments are skipped as unmatched.
	FragmentTableFull uint64
}

// SkippedTotal returns the number of packets skipped for any reason.
func (s *Stats) SkippedTotal() uint64 {
	var n uint64
	for _, v := range s.Skipped {
		n += v
	}
	return n
}

// NumReasons is the size of Stats.Skipped; Reason values index it.
const NumReasons = int(numReasons)

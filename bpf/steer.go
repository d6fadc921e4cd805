package bpf

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ErrNotPermitted is returned (wrapped) by LoadSteering when the process
// may not load BPF programs (it lacks CAP_BPF and CAP_NET_ADMIN, or
// unprivileged BPF is off).
var ErrNotPermitted = errors.New("bpf: not permitted to load programs")

// Stats are the steering program's counters, summed over CPUs.
type Stats struct {
	Steered  uint64 // datagrams sent to the socket of their hash
	AddrOnly uint64 // of those, hashed by address alone (v5, short, unknown)
	Denied   uint64 // dropped: source outside the allow-list
	Fallback uint64 // left to the kernel's hash (array not filled yet)
}

// Stat slots of the steer_stats map, as in steer.c.
const (
	statSteered = iota
	statAddrOnly
	statDenied
	statFallback
)

// Steering is the steering program and its maps, loaded for one UDP
// reuseport group (a socket array holds the sockets of one group only).
// Its methods are safe for concurrent use as far as the kernel's map
// operations are; the collector calls the setters from one goroutine.
type Steering struct {
	objs steerObjects
}

// LoadSteering loads the program into the kernel (the verifier checks it
// here). The loops count starts at 0: attached before SetSockets, the
// program leaves the choice to the kernel's hash but already applies the
// allow-list.
func LoadSteering() (*Steering, error) {
	var s Steering
	if err := loadSteerObjects(&s.objs, nil); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("%w: %v", ErrNotPermitted, err)
		}
		return nil, fmt.Errorf("bpf: load steering program: %w", err)
	}
	return &s, nil
}

// Program returns the loaded program (for tests and inspection).
func (s *Steering) Program() *ebpf.Program { return s.objs.Steer }

// Attach attaches the program to the reuseport group of the socket fd
// (SO_ATTACH_REUSEPORT_EBPF): it then chooses for every socket of the
// group, present and future, until they are all closed.
func (s *Steering) Attach(fd int) error {
	if err := attachReuseport(fd, s.objs.Steer.FD()); err != nil {
		return fmt.Errorf("bpf: attach steering program: %w", err)
	}
	return nil
}

// SetSockets puts the sockets fds[i] at index i of the socket array, then
// makes the program choose among them. The fds must belong to the group the
// program is attached to; the kernel keeps its own reference, so they may
// be closed afterwards if they are duplicates.
func (s *Steering) SetSockets(fds []int) error {
	if len(fds) == 0 || len(fds) > MaxLoops {
		return fmt.Errorf("bpf: %d sockets not in 1..%d", len(fds), MaxLoops)
	}
	for i, fd := range fds {
		if err := s.objs.SteerSockets.Put(uint32(i), uint64(fd)); err != nil {
			return fmt.Errorf("bpf: socket %d (fd %d) into the array: %w", i, fd, err)
		}
	}
	return s.setConfig(func(c *steerSteerConfig) { c.Loops = uint32(len(fds)) })
}

// SetAllow replaces the allow-list: with prefixes, datagrams from other
// sources are dropped; with none, all are admitted. IPv4 prefixes are
// stored in their IPv4-mapped form, so an IPv4 exporter reaching an IPv6
// socket matches them too. New prefixes go in before old ones go out, so
// no listed exporter is refused while the list changes.
func (s *Steering) SetAllow(prefixes []netip.Prefix) error {
	if len(prefixes) > MaxAllow {
		return fmt.Errorf("bpf: %d allow-list prefixes, at most %d", len(prefixes), MaxAllow)
	}
	keep := make(map[steerAddrKey]bool, len(prefixes))
	for _, p := range prefixes {
		k := allowKey(p)
		keep[k] = true
		if err := s.objs.SteerAllow.Put(k, uint8(1)); err != nil {
			return fmt.Errorf("bpf: allow-list prefix %v: %w", p, err)
		}
	}
	if err := s.setConfig(func(c *steerSteerConfig) { c.AllowOnly = boolU32(len(prefixes) > 0) }); err != nil {
		return err
	}
	var (
		k    steerAddrKey
		v    uint8
		gone []steerAddrKey
	)
	it := s.objs.SteerAllow.Iterate()
	for it.Next(&k, &v) {
		if !keep[k] {
			gone = append(gone, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("bpf: read allow-list: %w", err)
	}
	for _, k := range gone {
		if err := s.objs.SteerAllow.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("bpf: allow-list: %w", err)
		}
	}
	return nil
}

// MaxAllow is the most prefixes the allow-list holds (MAX_ALLOW in steer.c).
const MaxAllow = 16384

func allowKey(p netip.Prefix) steerAddrKey {
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return steerAddrKey{Prefixlen: uint32(bits), Addr: p.Addr().As16()}
}

func boolU32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

func (s *Steering) setConfig(f func(*steerSteerConfig)) error {
	var c steerSteerConfig
	if err := s.objs.SteerConfig.Lookup(uint32(0), &c); err != nil {
		return fmt.Errorf("bpf: read steering config: %w", err)
	}
	f(&c)
	if err := s.objs.SteerConfig.Put(uint32(0), &c); err != nil {
		return fmt.Errorf("bpf: write steering config: %w", err)
	}
	return nil
}

// Stats reads the program's counters.
func (s *Steering) Stats() (Stats, error) {
	var st Stats
	for slot, dst := range map[uint32]*uint64{statSteered: &st.Steered, statAddrOnly: &st.AddrOnly,
		statDenied: &st.Denied, statFallback: &st.Fallback} {
		var perCPU []uint64
		if err := s.objs.SteerStats.Lookup(slot, &perCPU); err != nil {
			return Stats{}, fmt.Errorf("bpf: read steering counters: %w", err)
		}
		for _, n := range perCPU {
			*dst += n
		}
	}
	return st, nil
}

// Close releases the program and its maps. A group the program is
// attached to keeps it (and its maps) until the group's sockets close.
func (s *Steering) Close() error { return s.objs.Close() }

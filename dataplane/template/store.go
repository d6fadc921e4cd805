// Package template keeps the templates a collector has learned, scoped the
// RFC 7011 way (exporter, observation domain, template ID over UDP; the
// transport session over TCP), with their lifetimes. A per-loop Cache (no
// locks) sits in front of a process-wide Shared store; the Redis tier
// (redistier) fills Shared from other pods.
package template

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// Key identifies a template: the exporter scope (address, plus port when
// templates are scoped by port), the transport session, the observation
// domain (v9: source ID), the protocol version and the template ID. Version
// keeps a v9 and an IPFIX template with the same ID from one exporter apart.
//
// Session is 0 for templates learned over UDP, which RFC 7011 section 8
// scopes by (exporter, domain). A template learned over TCP belongs to its
// transport session: Session is the session's number, so it never meets the
// UDP template of the same exporter, domain and ID, nor another session's.
// Only Session 0 templates are shared with other collectors.
type Key struct {
	Exporter netip.AddrPort
	Session  uint64
	Domain   uint32
	Version  uint16
	ID       uint16
}

// DomainKey identifies an (exporter scope, transport session, observation
// domain) triple: the templates a data set may refer to.
type DomainKey struct {
	Exporter netip.AddrPort
	Session  uint64 // 0: UDP
	Domain   uint32
	Version  uint16
}

// DomainKey returns the key's (exporter, session, domain) part.
func (k Key) DomainKey() DomainKey { return DomainKey{k.Exporter, k.Session, k.Domain, k.Version} }

// Key returns the key of template id in the scope k.
func (k DomainKey) Key(id uint16) Key {
	return Key{Exporter: k.Exporter, Session: k.Session, Domain: k.Domain, Version: k.Version, ID: id}
}

// HonoursWithdrawals reports whether template withdrawals are applied in
// scope k: over a transport session, yes; over UDP RFC 7011 section 8.4
// says to ignore them (such templates expire instead).
func (k DomainKey) HonoursWithdrawals() bool { return k.Session != 0 }

// Scoping computes template scopes. The collector and the offline decoder
// share it, so both file a message's templates under the same key. The zero
// value scopes by exporter address.
type Scoping struct {
	// ByPort scopes templates by exporter address and port. By default the
	// scope is the address alone, so an exporter that reopens its socket on
	// a new port keeps its templates.
	ByPort bool
}

// Domain returns the scope of a message from src over transport session
// (0: UDP) with observation domain and version.
func (s Scoping) Domain(src netip.AddrPort, session uint64, domain uint32, version uint16) DomainKey {
	if !s.ByPort {
		src = netip.AddrPortFrom(src.Addr(), 0)
	}
	return DomainKey{Exporter: src, Session: session, Domain: domain, Version: version}
}

// Template is a learned template. Layout and the identity fields are
// immutable; the expiry is refreshed atomically when the exporter
// retransmits, so one Template may be shared by every tier and loop.
type Template struct {
	Key    Key
	Layout *ipfix.Layout
	// Learned is when the template was first seen, in Unix nanoseconds.
	Learned int64
	expires atomic.Int64 // Unix nanoseconds; 0 = never
}

// New returns a template learned at now that expires at expires (0: never;
// a TCP session's template, Key.Session != 0, lives as long as the
// session).
func New(k Key, l *ipfix.Layout, now, expires int64) *Template {
	t := &Template{Key: k, Layout: l, Learned: now}
	t.expires.Store(expires)
	return t
}

// Expires returns the expiry time in Unix nanoseconds (0: never).
func (t *Template) Expires() int64 { return t.expires.Load() }

// Refresh moves the expiry to expires.
func (t *Template) Refresh(expires int64) { t.expires.Store(expires) }

// Expired reports whether the template has expired at now.
func (t *Template) Expired(now int64) bool {
	e := t.expires.Load()
	return e != 0 && now >= e
}

// Shared is the process-wide tier: a sharded map behind read-write locks.
// Lookups take a read lock on one shard; they happen only on a per-loop
// cache miss.
type Shared struct {
	shards [64]shard
	// gen counts changes, so per-loop caches can tell when to drop stale
	// entries.
	gen atomic.Uint64
	n   atomic.Int64

	// limits and the counts they apply to; counts are kept under cmu
	// (taken after a shard's lock, never before).
	limits      Limits
	cmu         sync.Mutex
	perExporter map[netip.Addr]int
	perDomain   map[DomainKey]int
}

// Limits bounds the templates a Shared store takes through TryPut, so one
// exporter cannot take every slot: the bound it reaches refuses its own new
// templates alone. Zero fields: no bound.
type Limits struct {
	Total int
	// PerExporter bounds an exporter address's templates, every port,
	// observation domain and transport session together.
	PerExporter int
	// PerDomain bounds one scope's: (exporter scope, transport session,
	// observation domain, version).
	PerDomain int
}

// Refusal says which bound refused a template.
type Refusal uint8

// Refusals; Admitted is none.
const (
	Admitted        Refusal = iota
	RefusedTotal            // the store holds Limits.Total templates
	RefusedExporter         // the exporter address holds Limits.PerExporter
	RefusedDomain           // the scope holds Limits.PerDomain
)

type shard struct {
	mu sync.RWMutex
	m  map[Key]*Template
	_  [40]byte // keep shards on separate cache lines
}

// NewShared returns an empty process-wide store.
func NewShared() *Shared { return NewSharedLimited(Limits{}) }

// NewSharedLimited returns an empty process-wide store whose TryPut keeps
// to lim.
func NewSharedLimited(lim Limits) *Shared {
	s := &Shared{limits: lim, perExporter: map[netip.Addr]int{}, perDomain: map[DomainKey]int{}}
	for i := range s.shards {
		s.shards[i].m = make(map[Key]*Template)
	}
	return s
}

func (s *Shared) shard(k Key) *shard {
	h := uint32(k.ID)*2654435761 ^ k.Domain*40503 ^ uint32(k.Exporter.Port()) ^ uint32(k.Session)*16777619
	a := k.Exporter.Addr().As16()
	for _, b := range a[12:] {
		h = h*31 + uint32(b)
	}
	return &s.shards[h%uint32(len(s.shards))]
}

// Get returns the template for k, or nil.
func (s *Shared) Get(k Key) *Template {
	sh := s.shard(k)
	sh.mu.RLock()
	t := sh.m[k]
	sh.mu.RUnlock()
	return t
}

// Put stores t, replacing any template with the same key, and returns the
// store's new generation. It takes t whatever the limits (templates from
// the shared tier were bounded where they were learned) but counts it.
func (s *Shared) Put(t *Template) uint64 {
	g, _ := s.put(t, false)
	return g
}

// TryPut stores t like Put unless t is new (no template has its key) and a
// limit refuses it; then it stores nothing and says which limit.
func (s *Shared) TryPut(t *Template) (uint64, Refusal) { return s.put(t, true) }

func (s *Shared) put(t *Template, bounded bool) (uint64, Refusal) {
	sh := s.shard(t.Key)
	sh.mu.Lock()
	if _, ok := sh.m[t.Key]; !ok {
		if r := s.count(t.Key, 1, bounded); r != Admitted {
			sh.mu.Unlock()
			return s.gen.Load(), r
		}
		s.n.Add(1)
	}
	sh.m[t.Key] = t
	sh.mu.Unlock()
	return s.gen.Add(1), Admitted
}

// Room says whether a new template of key k would be admitted now (TryPut
// decides; this lets a caller skip compiling one that would not be).
func (s *Shared) Room(k Key) Refusal {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	return s.refusal(k)
}

func (s *Shared) refusal(k Key) Refusal {
	lim := &s.limits
	switch {
	case lim.Total > 0 && int(s.n.Load()) >= lim.Total:
		return RefusedTotal
	case lim.PerExporter > 0 && s.perExporter[k.Exporter.Addr()] >= lim.PerExporter:
		return RefusedExporter
	case lim.PerDomain > 0 && s.perDomain[k.DomainKey()] >= lim.PerDomain:
		return RefusedDomain
	}
	return Admitted
}

// count adds d to the counts of k's exporter and scope; with bounded, a new
// template (d > 0) past a limit is refused instead.
func (s *Shared) count(k Key, d int, bounded bool) Refusal {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if bounded && d > 0 {
		if r := s.refusal(k); r != Admitted {
			return r
		}
	}
	a, dk := k.Exporter.Addr(), k.DomainKey()
	if n := s.perExporter[a] + d; n > 0 {
		s.perExporter[a] = n
	} else {
		delete(s.perExporter, a)
	}
	if n := s.perDomain[dk] + d; n > 0 {
		s.perDomain[dk] = n
	} else {
		delete(s.perDomain, dk)
	}
	return Admitted
}

// ExporterTemplates returns how many templates exporter address a holds.
func (s *Shared) ExporterTemplates(a netip.Addr) int {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	return s.perExporter[a]
}

// Delete removes the template for k if it is still old (compare and
// delete, so a newer definition is not lost to a late withdrawal; nil old
// deletes whatever is there). It returns the store's generation after.
func (s *Shared) Delete(k Key, old *Template) uint64 {
	sh := s.shard(k)
	sh.mu.Lock()
	cur, ok := sh.m[k]
	ok = ok && (old == nil || cur == old)
	if ok {
		delete(sh.m, k)
		s.n.Add(-1)
		s.count(k, -1, false)
	}
	sh.mu.Unlock()
	if ok {
		return s.gen.Add(1)
	}
	return s.gen.Load()
}

// Keep puts t back if an expiry sweep removed it after a Get (a refresh
// racing with expiry).
func (s *Shared) Keep(t *Template) {
	if s.Get(t.Key) == nil {
		s.Put(t)
	}
}

// Generation changes whenever the store does.
func (s *Shared) Generation() uint64 { return s.gen.Load() }

// Len returns the number of templates stored.
func (s *Shared) Len() int { return int(s.n.Load()) }

// Range calls fn for every template until fn returns false. It holds one
// shard's read lock at a time; fn must not call back into s.
func (s *Shared) Range(fn func(t *Template) bool) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for _, t := range sh.m {
			if !fn(t) {
				sh.mu.RUnlock()
				return
			}
		}
		sh.mu.RUnlock()
	}
}

// Expire removes the templates that have expired at now and returns how
// many it removed.
func (s *Shared) Expire(now int64) int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, t := range sh.m {
			if t.Expired(now) {
				delete(sh.m, k)
				s.count(k, -1, false)
				n++
			}
		}
		sh.mu.Unlock()
	}
	if n > 0 {
		s.n.Add(int64(-n))
		s.gen.Add(1)
	}
	return n
}

// Cache is an event loop's own tier: a plain map in front of a shared Tier.
// It is owned by one goroutine and takes no lock.
type Cache struct {
	shared *Shared
	m      map[Key]*Template
	gen    uint64
	last   *Template // the previous hit; data sets mostly repeat templates
	// Lookup counts, written by the owner, read by anyone (metrics).
	hits, fetched, missed atomic.Uint64
}

// Lookups returns how many Get calls found the template in the cache, had
// to fetch it from the shared store, and found it nowhere. Safe for
// concurrent use.
func (c *Cache) Lookups() (hit, shared, miss uint64) {
	return c.hits.Load(), c.fetched.Load(), c.missed.Load()
}

// NewCache returns a loop cache in front of shared.
func NewCache(shared *Shared) *Cache {
	return &Cache{shared: shared, m: make(map[Key]*Template), gen: shared.Generation()}
}

// Get returns the live template for k at now, looking through the tiers on a
// miss. Expired templates are dropped from every tier on the way.
func (c *Cache) Get(k Key, now int64) *Template {
	if g := c.shared.Generation(); g != c.gen {
		// Another loop changed the shared store: forget local copies so
		// a redefinition or withdrawal elsewhere is seen.
		clear(c.m)
		c.gen = g
		c.last = nil
	}
	t := c.last
	if t == nil || t.Key != k {
		t = c.m[k]
	}
	if t == nil {
		t = c.shared.Get(k)
		if t == nil {
			c.missed.Add(1)
			return nil
		}
		c.fetched.Add(1)
		c.remember(t)
	} else {
		c.hits.Add(1)
	}
	if t.Expired(now) {
		delete(c.m, k)
		c.last = nil
		c.sync(c.shared.Delete(k, t))
		return nil
	}
	c.last = t
	return t
}

// sync adopts generation g after the cache's own change. If the store moved
// further than that change (another loop changed it meanwhile), the local
// copies may be stale: forget them.
func (c *Cache) sync(g uint64) {
	if g != c.gen+1 {
		clear(c.m)
		c.last = nil
	}
	c.gen = g
}

// Put stores t in the loop cache and the shared store.
func (c *Cache) Put(t *Template) {
	c.last = nil
	c.sync(c.shared.Put(t))
	c.remember(t)
}

// TryPut stores t like Put unless the shared store's limits refuse it (see
// Shared.TryPut).
func (c *Cache) TryPut(t *Template) Refusal {
	g, r := c.shared.TryPut(t)
	if r != Admitted {
		return r
	}
	c.last = nil
	c.sync(g)
	c.remember(t)
	return Admitted
}

// maxCached bounds a loop cache: past it the cache starts afresh, and the
// loop finds what it needs in the shared store again. The templates stay in
// the shared store, so this costs a lookup there, never a template.
const maxCached = 1 << 13

func (c *Cache) remember(t *Template) {
	if len(c.m) >= maxCached {
		// A fresh map: clear keeps the old one's size.
		c.m = make(map[Key]*Template)
		c.last = nil
	}
	c.m[t.Key] = t
}

// Keep puts t back in the shared store if an expiry removed it meanwhile.
func (c *Cache) Keep(t *Template) { c.shared.Keep(t) }

// Delete removes k from the loop cache and, if it is still old, from the
// shared store.
func (c *Cache) Delete(k Key, old *Template) {
	c.last = nil
	delete(c.m, k)
	c.sync(c.shared.Delete(k, old))
}

// DeleteWhere removes every template for which match returns true, from the
// shared store and the loop cache, and returns those it removed from the
// shared store.
func (c *Cache) DeleteWhere(match func(t *Template) bool) []*Template {
	var doomed []*Template
	c.shared.Range(func(t *Template) bool {
		if match(t) {
			doomed = append(doomed, t)
		}
		return true
	})
	for _, t := range doomed {
		c.shared.Delete(t.Key, t)
	}
	// Several deletes: simply start the loop cache afresh.
	clear(c.m)
	c.last = nil
	c.gen = c.shared.Generation()
	return doomed
}

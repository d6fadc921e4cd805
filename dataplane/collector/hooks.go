package collector

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// TemplateEvent says a template was learned: new, or changed from what its
// key held before. A retransmission of a known template is no event.
type TemplateEvent struct {
	// Exporter is the template's exporter scope (the port is zero unless
	// templates are scoped by port).
	Exporter netip.AddrPort
	Domain   uint32
	ID       uint16
	Version  uint16
	// TCPSession is the TCP session the template belongs to; 0 for UDP.
	TCPSession uint64
	Options    bool
}

// ExporterEvent says an exporter scope and observation domain was seen for
// the first time (or again after it idled out of the registry): one per
// UDP exporter and domain, one per TCP session and domain.
type ExporterEvent struct {
	Exporter   netip.AddrPort
	Domain     uint32
	Version    uint16
	TCPSession uint64
}

// Hooks are called on events of the collector; either may be nil. They
// run on one goroutine of the collector's, in the order of the events,
// never on an event loop: a loop only queues the event (no allocation, no
// waiting), and when a slow hook lets hookQueue events pile up, further
// ones are dropped and counted (Status.HookEventsDropped). A hook may block
// briefly, but the events behind it wait.
type Hooks struct {
	TemplateLearned func(TemplateEvent)
	ExporterSeen    func(ExporterEvent)
}

const hookQueue = 4096

type hookEvent struct {
	tpl      TemplateEvent
	exporter ExporterEvent
	isTpl    bool
}

// hookBus carries events from the loops to the hooks' goroutine.
type hookBus struct {
	on      atomic.Bool
	hooks   atomic.Pointer[Hooks]
	ch      chan hookEvent
	once    sync.Once
	dropped atomic.Uint64
}

// SetHooks installs h, replacing earlier hooks; SetHooks(Hooks{}) stops
// the events. Safe for concurrent use, before or during Run.
func (c *Collector) SetHooks(h Hooks) {
	b := &c.hooks
	b.once.Do(func() {
		b.ch = make(chan hookEvent, hookQueue)
		go b.dispatch()
	})
	b.hooks.Store(&h)
	b.on.Store(h.TemplateLearned != nil || h.ExporterSeen != nil)
}

func (b *hookBus) dispatch() {
	for e := range b.ch {
		h := b.hooks.Load()
		switch {
		case e.isTpl && h.TemplateLearned != nil:
			h.TemplateLearned(e.tpl)
		case !e.isTpl && h.ExporterSeen != nil:
			h.ExporterSeen(e.exporter)
		}
	}
}

func (b *hookBus) send(e hookEvent) {
	select {
	case b.ch <- e:
	default:
		b.dropped.Add(1)
	}
}

// templateLearned is called by a loop; one atomic load when no hook is set.
func (b *hookBus) templateLearned(e TemplateEvent) {
	if b.on.Load() {
		b.send(hookEvent{tpl: e, isTpl: true})
	}
}

func (b *hookBus) exporterSeen(e ExporterEvent) {
	if b.on.Load() {
		b.send(hookEvent{exporter: e})
	}
}

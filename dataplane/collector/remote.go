package collector

import (
	"context"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluice-flow/sluice/dataplane/template"
)

// Remote is a template tier behind the process-wide store, shared with
// other collector processes (Redis). Loops call it on the hot path, so every
// method must return at once: queue the work, never wait on the network.
//
// It only ever hears of UDP templates (Key.Session 0): RFC 7011 section 8
// ties a TCP template to its transport session, which no other process
// sees. Hence no withdrawals either: they are honoured over TCP alone, and
// only for the session's own templates.
type Remote interface {
	// Learned reports a template learned or changed (write-through).
	Learned(t *template.Template)
	// Refreshed reports a retransmission of a known template (TTL refresh).
	Refreshed(t *template.Template)
	// Missing asks for a template no local tier has. If the remote finds
	// it, it stores it in the collector's shared store (Collector.Templates)
	// and calls Collector.TemplateArrived.
	Missing(k template.Key)
}

// SetRemote installs the remote tier. Call before Run.
func (c *Collector) SetRemote(r Remote) { c.remote = r }

// TemplateArrived tells the loops that a template reached the shared store
// from elsewhere, so data held for it is decoded now rather than at the next
// sweep. Safe for concurrent use.
func (c *Collector) TemplateArrived(k template.Key) {
	for el, l := range *c.byEventLoop.Load() {
		l := l
		_ = el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			if l.held.queues[k] == nil {
				return nil
			}
			if t := l.cache.Get(k, nowNanos()); t != nil {
				l.release(k, t)
			}
			return nil
		}))
	}
}

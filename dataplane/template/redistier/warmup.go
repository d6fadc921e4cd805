package redistier

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// WarmUp loads the stored templates of the given exporters into the shared
// store, so that a restarted collector decodes their data at once. Call it
// before the collector's listeners open. Entries are exporter addresses
// ("192.0.2.1", "2001:db8::1"), address and port when templates are scoped
// by port ("192.0.2.1:2055", "[2001:db8::1]:2055"; without a port, every
// port), or "*" for every stored template. Templates the shared store
// already has are kept. It waits for the connection until ctx ends and
// returns how many templates it loaded.
func (s *Store) WarmUp(ctx context.Context, exporters []string) (int, error) {
	type scan struct{ match, pin string }
	var scans []scan
	for _, e := range exporters {
		match, pin, err := s.warmPattern(e)
		if err != nil {
			return 0, err
		}
		scans = append(scans, scan{match, pin})
	}
	if len(scans) == 0 {
		return 0, nil
	}
	select {
	case <-s.ready:
	case <-ctx.Done():
		return 0, fmt.Errorf("redistier: warm-up: redis not reachable: %w", ctx.Err())
	}
	c := s.client.Load().c
	loaded := 0
	seen := map[string]bool{}
	for _, sc := range scans {
		keys, err := scanKeys(ctx, c, sc.match, sc.pin)
		if err != nil {
			s.m.errors.Add(1)
			return loaded, fmt.Errorf("redistier: warm-up: %w", err)
		}
		var batch []string
		for _, k := range keys {
			if !seen[k] {
				seen[k] = true
				batch = append(batch, k)
			}
		}
		n, err := s.load(ctx, c, batch)
		loaded += n
		if err != nil {
			s.m.errors.Add(1)
			return loaded, fmt.Errorf("redistier: warm-up: %w", err)
		}
	}
	return loaded, nil
}

// warmPattern returns the SCAN pattern for an exporter entry and, when its
// keys share one hash tag, a key in their slot (to scan that node only).
func (s *Store) warmPattern(e string) (match, pin string, err error) {
	if e == "*" {
		return keyPrefix + "*", "", nil
	}
	var ap netip.AddrPort
	if a, err := netip.ParseAddr(e); err == nil {
		ap = netip.AddrPortFrom(a.Unmap(), 0)
	} else if p, err := netip.ParseAddrPort(e); err == nil {
		ap = netip.AddrPortFrom(p.Addr().Unmap(), p.Port())
	} else {
		return "", "", fmt.Errorf("redistier: warm-up exporter %q: want an address, address:port or *", e)
	}
	if !s.cfg.ScopeByPort {
		ap = netip.AddrPortFrom(ap.Addr(), 0)
	} else if ap.Port() == 0 {
		// Every port of the address: one hash tag per port, so every node.
		host := ap.Addr().String()
		if ap.Addr().Is6() {
			return keyPrefix + "\\[" + globEscape(host) + "\\]:*}:*", "", nil
		}
		return keyPrefix + globEscape(host) + ":*}:*", "", nil
	}
	prefix := string(appendScope([]byte(keyPrefix), ap)) + "}:"
	return globEscape(prefix) + "*", prefix, nil
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\', '^':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// scanKeys lists the keys matching match. On a cluster, pin (a key with
// the pattern's hash tag) sends the scan to the one node that owns the
// slot; without it every node is scanned.
func scanKeys(ctx context.Context, c rueidis.Client, match, pin string) ([]string, error) {
	if c.Mode() != rueidis.ClientModeCluster {
		return scanNode(ctx, c, match)
	}
	if pin != "" {
		var keys []string
		err := c.Dedicated(func(d rueidis.DedicatedClient) error {
			// The first keyed command binds the connection to the slot's node.
			if err := d.Do(ctx, d.B().Exists().Key(pin).Build()).Error(); err != nil {
				return err
			}
			var err error
			keys, err = scanNode(ctx, d, match)
			return err
		})
		return keys, err
	}
	var keys []string
	for _, n := range c.Nodes() {
		k, err := scanNode(ctx, n, match)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k...)
	}
	return keys, nil
}

func scanNode(ctx context.Context, c rueidis.CoreClient, match string) ([]string, error) {
	var keys []string
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(match).Count(1000).Build()).AsScanEntry()
		if err != nil {
			return nil, err
		}
		keys = append(keys, e.Elements...)
		if cursor = e.Cursor; cursor == 0 {
			return keys, nil
		}
	}
}

// load fetches keys through the client-side cache (so Redis tracks them
// and tells this pod about later changes) and stores the templates.
func (s *Store) load(ctx context.Context, c rueidis.Client, keys []string) (int, error) {
	n := 0
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 256)]
		keys = keys[len(batch):]
		cmds := make([]rueidis.CacheableTTL, len(batch))
		for i, k := range batch {
			cmds[i] = rueidis.CT(c.B().Get().Key(k).Cache(), s.cacheTTL())
		}
		for i, res := range c.DoMultiCache(ctx, cmds...) {
			k, ok := ParseKey(batch[i])
			if !ok {
				continue
			}
			v, expires, found, err := s.decode(res)
			if err != nil {
				return n, err
			}
			if !found || expires <= time.Now().UnixNano() || s.shared.Get(k) != nil {
				continue
			}
			t, err := v.Template(k, expires)
			if err != nil {
				s.m.badValues.Add(1)
				continue
			}
			s.shared.Put(t)
			s.m.warmed.Add(1)
			n++
			// Tell the key's worker the template came from Redis, so it
			// follows later changes and deletions of it.
			select {
			case s.workers[s.partition(k)].ch <- job{kind: jobAdopt, k: k, t: t}:
			case <-ctx.Done():
				return n, ctx.Err()
			}
		}
	}
	return n, nil
}

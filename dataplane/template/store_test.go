package template

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

func layout(t testing.TB, id uint16, n int) *ipfix.Layout {
	t.Helper()
	specs := make([]ipfix.FieldSpec, n)
	for i := range specs {
		specs[i] = ipfix.FieldSpec{ID: uint16(i + 1), Length: 4}
	}
	l, err := ipfix.Compile(&ipfix.TemplateRecord{ID: id, Fields: specs})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var exp = netip.MustParseAddrPort("192.0.2.1:0")

func TestCacheSeesOtherLoopsChanges(t *testing.T) {
	shared := NewShared()
	a, b := NewCache(shared), NewCache(shared)
	k := Key{Exporter: exp, Domain: 1, Version: 10, ID: 256}
	t1 := New(k, layout(t, 256, 2), 0, 0)
	a.Put(t1)
	if got := b.Get(k, 1); got != t1 {
		t.Fatal("loop b does not see loop a's template")
	}
	// Loop a redefines it: loop b must not keep using its cached copy.
	t2 := New(k, layout(t, 256, 3), 0, 0)
	a.Put(t2)
	if got := b.Get(k, 2); got != t2 {
		t.Fatal("loop b kept a stale template after a redefinition")
	}
	// A late delete of the old definition must not remove the new one.
	b.Delete(k, t1)
	if got := a.Get(k, 3); got != t2 {
		t.Fatal("compare-and-delete removed a newer definition")
	}
	a.Delete(k, t2)
	if b.Get(k, 4) != nil || shared.Len() != 0 {
		t.Fatal("withdrawn template still visible")
	}
}

func TestExpiry(t *testing.T) {
	shared := NewShared()
	c := NewCache(shared)
	k := Key{Exporter: exp, Domain: 1, Version: 10, ID: 256}
	tp := New(k, layout(t, 256, 1), 0, 100)
	c.Put(tp)
	if c.Get(k, 99) == nil {
		t.Fatal("expired early")
	}
	tp.Refresh(200)
	if c.Get(k, 150) == nil {
		t.Fatal("refresh did not extend the lifetime")
	}
	if c.Get(k, 200) != nil {
		t.Fatal("template alive at its expiry time")
	}
	if shared.Len() != 0 {
		t.Fatal("expired template left in the shared store")
	}
	forever := New(Key{Exporter: exp, Session: 7, ID: 300}, layout(t, 300, 1), 0, 0)
	c.Put(forever)
	if n := shared.Expire(1 << 62); n != 0 || c.Get(forever.Key, 1<<62) == nil {
		t.Fatal("a TCP session template expired")
	}
	if gone := c.DeleteWhere(func(t *Template) bool { return t.Key.Session == 7 }); len(gone) != 1 || gone[0] != forever || shared.Len() != 0 {
		t.Fatalf("DeleteWhere removed %v", gone)
	}
}

func TestSharedConcurrent(t *testing.T) {
	shared := NewShared()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := NewCache(shared)
			for i := range 2000 {
				k := Key{Exporter: exp, Domain: uint32(w), Version: 10, ID: uint16(256 + i%50)}
				if i%3 == 0 {
					c.Put(New(k, layout(t, k.ID, 1+i%4), 0, 0))
				} else if tp := c.Get(k, 0); tp != nil && tp.Key != k {
					t.Errorf("got template %v for key %v", tp.Key, k)
				}
			}
		}()
	}
	wg.Wait()
	if shared.Len() != 4*50 {
		t.Fatalf("%d templates, want 200", shared.Len())
	}
}

func BenchmarkCacheHit(b *testing.B) {
	shared := NewShared()
	c := NewCache(shared)
	k := Key{Exporter: exp, Domain: 1, Version: 10, ID: 256}
	c.Put(New(k, layout(b, 256, 4), 0, 0))
	b.ReportAllocs()
	for b.Loop() {
		if c.Get(k, 1) == nil {
			b.Fatal("miss")
		}
	}
}

// A loop's own write must not hide another loop's write that happened just
// before it: the cache notices the store moved twice and starts afresh.
func TestCacheNoticesInterleavedChange(t *testing.T) {
	shared := NewShared()
	a, b := NewCache(shared), NewCache(shared)
	k1 := Key{Exporter: exp, Domain: 1, Version: 10, ID: 256}
	k2 := Key{Exporter: exp, Domain: 1, Version: 10, ID: 257}
	old := New(k1, layout(t, 256, 2), 0, 0)
	a.Put(old)
	if b.Get(k1, 1) != old {
		t.Fatal("b does not see k1")
	}
	// a redefines k1; before b looks again, b writes k2.
	newer := New(k1, layout(t, 256, 3), 0, 0)
	a.Put(newer)
	b.Put(New(k2, layout(t, 257, 1), 0, 0))
	if got := b.Get(k1, 2); got != newer {
		t.Fatal("b still serves the replaced definition")
	}
}

func TestScoping(t *testing.T) {
	src := netip.MustParseAddrPort("192.0.2.1:2055")
	f := func(s Scoping, session uint64, want DomainKey) {
		t.Helper()
		if got := s.Domain(src, session, 3, 10); got != want {
			t.Fatalf("%+v session %d: %+v, want %+v", s, session, got, want)
		}
	}
	f(Scoping{}, 0, DomainKey{Exporter: exp, Domain: 3, Version: 10})
	f(Scoping{ByPort: true}, 0, DomainKey{Exporter: src, Domain: 3, Version: 10})
	f(Scoping{}, 5, DomainKey{Exporter: exp, Session: 5, Domain: 3, Version: 10})
	f(Scoping{ByPort: true}, 5, DomainKey{Exporter: src, Session: 5, Domain: 3, Version: 10})
	dk := Scoping{}.Domain(src, 5, 3, 10)
	if k := dk.Key(256); k.DomainKey() != dk || k.ID != 256 {
		t.Fatalf("Key(256) = %+v", k)
	}
	if dk.HonoursWithdrawals() != true || (Scoping{}).Domain(src, 0, 3, 10).HonoursWithdrawals() {
		t.Fatal("withdrawals: honoured over sessions only")
	}
}

// A UDP template and the templates of two TCP sessions with the same
// exporter, domain and ID are three templates; a session's removal leaves
// the others.
func TestSessionsAndUDPApart(t *testing.T) {
	shared := NewShared()
	c := NewCache(shared)
	udp := Key{Exporter: exp, Domain: 1, Version: 10, ID: 256}
	s1, s2 := udp, udp
	s1.Session, s2.Session = 1, 2
	for i, k := range []Key{udp, s1, s2} {
		c.Put(New(k, layout(t, 256, i+1), 0, 0))
	}
	for i, k := range []Key{udp, s1, s2} {
		if tp := c.Get(k, 1); tp == nil || len(tp.Layout.Fields) != i+1 {
			t.Fatalf("key %+v: %v", k, tp)
		}
	}
	c.DeleteWhere(func(tp *Template) bool { return tp.Key.Session == 1 })
	if c.Get(udp, 2) == nil || c.Get(s2, 2) == nil || c.Get(s1, 2) != nil || shared.Len() != 2 {
		t.Fatal("removing session 1 touched other templates")
	}
}

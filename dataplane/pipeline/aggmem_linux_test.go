package pipeline

import (
	"bufio"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// thpMode is the kernel's transparent huge page setting ("always",
// "madvise", "never"), or "" where the kernel has none.
func thpMode() string {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.IndexByte(s, '['); i >= 0 {
		if j := strings.IndexByte(s[i:], ']'); j > 0 {
			return s[i+1 : i+j]
		}
	}
	return ""
}

// anonHugeKB is the AnonHugePages of the mapping that starts at addr,
// from /proc/self/smaps.
func anonHugeKB(t *testing.T, addr uintptr) int {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		if start, _, ok := strings.Cut(line, "-"); ok && !strings.Contains(start, " ") && !strings.HasSuffix(line, ":") {
			a, err := strconv.ParseUint(start, 16, 64)
			in = err == nil && uintptr(a) == addr
			continue
		}
		if rest, ok := strings.CutPrefix(line, "AnonHugePages:"); in && ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return kb
		}
	}
	return -1
}

// A table of 8 MiB or more is a mapping of its own, aligned to huge pages,
// advised for them where the kernel has transparent huge pages, and
// unmapped when the table moves; smaller ones are on the heap.
func TestAggTableHugePages(t *testing.T) {
	const stride = 11
	tab := newAggTable(1<<17, stride, 3, 1) // 11.5 MB
	m := tab.mem
	if m.mapped == nil {
		t.Fatal("a table of 11.5 MB is not mapped")
	}
	start := uintptr(unsafe.Pointer(&m.mapped[0]))
	if start%hugePageSize != 0 || len(m.mapped)%hugePageSize != 0 || len(m.words) != 1<<17*stride {
		t.Fatalf("mapping at %#x of %d bytes for %d words", start, len(m.mapped), len(m.words))
	}
	if mode := thpMode(); (mode == "always" || mode == "madvise") != m.huge {
		t.Errorf("THP %q, advised %v", mode, m.huge)
	}
	for i := range m.words {
		m.words[i] = uint64(i)
	}
	// Whether the kernel found free huge pages is its business: logged.
	t.Logf("THP %q: %d kB of the table on huge pages", thpMode(), anonHugeKB(t, start))
	key := []uint64{1, 2, 3}
	clear(tab.w)
	i, _ := tab.find(tab.hash(key), key)
	tab.insert(i, tab.hash(key), key, make([]uint64, stride-6), 7)
	tab.resize(1024)
	if m.mapped != nil || m.huge || len(m.words) != 1024*stride {
		t.Errorf("after shrinking: mapped %d bytes, huge %v, %d words", len(m.mapped), m.huge, len(m.words))
	}
	if anonHugeKB(t, start) != -1 {
		t.Error("the old mapping is still there")
	}
	if _, ok := tab.find(tab.hash(key), key); !ok || tab.count != 1 {
		t.Error("key lost by the move")
	}
	m.free()
}

// The stage's table moves onto a huge-page mapping as it grows past 8 MiB,
// says so in its gauges, and gives the memory back when the stage is
// flushed for good.
func TestAggregateHugePagesGauge(t *testing.T) {
	s, err := newAggregate(1, &Aggregate{Keys: []string{"sourceIPv4Address"}, MaxKeys: 200_000})
	if err != nil {
		t.Fatal(err)
	}
	var out nullSink
	s.next = &out
	l := mustLayout(t, []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 1, Length: 8}})
	var r ipfix.Record
	b := make([]byte, 12)
	for k := range 150_000 {
		binary.BigEndian.PutUint32(b, uint32(k))
		it := ipfix.NewDataIter(l, b)
		it.Next(&r)
		s.record(nil, &r)
	}
	s.tick(time.Now(), false)
	s.publish()
	mode := thpMode()
	if bytes := s.pub.bytes.Load(); bytes < mapMinBytes || s.tab.mem.mapped == nil {
		t.Fatalf("%d table bytes for %d keys, mapped %v", bytes, s.tab.count, s.tab.mem.mapped != nil)
	}
	if want := mode == "always" || mode == "madvise"; s.pub.huge.Load() != want {
		t.Errorf("THP %q: huge pages gauge %v", mode, s.pub.huge.Load())
	}
	s.tick(time.Now(), true)
	s.publish()
	if out.n != 150_000 || s.pub.bytes.Load() >= mapMinBytes || s.pub.huge.Load() || s.tab.mem.mapped != nil {
		t.Errorf("after the flush: %d emitted, %d table bytes, huge %v", out.n, s.pub.bytes.Load(), s.pub.huge.Load())
	}
}

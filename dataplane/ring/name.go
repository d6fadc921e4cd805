package ring

import (
	"fmt"
	"strconv"
	"strings"
)

// FileName is the name of ring index i in a ring directory: ring-000,
// ring-001, ...
func FileName(i int) string { return fmt.Sprintf("ring-%03d", i) }

// ParseFileName returns the index in a name FileName made.
func ParseFileName(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "ring-")
	if !ok || len(s) < 3 {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || FileName(i) != name {
		return 0, false
	}
	return i, true
}

// RetainedName is the name a collector gives ring index i of generation gen
// when it starts while that ring still holds entries no mediator has read:
// ring-000.gen-1733400000000000000. A mediator drains such a file like a
// ring a restart replaced, then removes it.
func RetainedName(i int, gen uint64) string {
	return FileName(i) + ".gen-" + strconv.FormatUint(gen, 10)
}

// ParseRetainedName returns the index and generation in a name
// RetainedName made.
func ParseRetainedName(name string) (i int, gen uint64, ok bool) {
	base, g, found := strings.Cut(name, ".gen-")
	if !found {
		return 0, 0, false
	}
	i, ok = ParseFileName(base)
	if !ok {
		return 0, 0, false
	}
	gen, err := strconv.ParseUint(g, 10, 64)
	if err != nil || RetainedName(i, gen) != name {
		return 0, 0, false
	}
	return i, gen, true
}

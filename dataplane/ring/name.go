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

package ipfix

import (
	"runtime"
	"sync"
	"weak"
)

// shape is the part of a Layout that does not depend on the template ID:
// the field descriptions and fixed positions. Templates with the same
// content (one exporter's template under many IDs or domains, or many
// exporters of one kind) share one shape, so a learned template costs its
// ID-specific part alone.
type shape struct {
	fields []Field
	pos    []fieldPos
}

// shapes interns shapes by content fingerprint. Entries are weak: a shape
// no layout uses any more is collected and its entry removed by a cleanup.
// Safe for concurrent use (Compile runs on every event loop).
var shapes = struct {
	mu sync.Mutex
	m  map[uint64][]weak.Pointer[shape]
}{m: map[uint64][]weak.Pointer[shape]{}}

// maxShapeChain bounds the shapes kept under one fingerprint (colliding
// contents); past it a layout keeps its own unshared shape.
const maxShapeChain = 4

// internShape returns a shape equal to s (same fields and flags, per
// sameShape) that is already in use, or s itself after recording it.
func internShape(fp uint64, s *shape, same func(o *shape) bool) *shape {
	shapes.mu.Lock()
	defer shapes.mu.Unlock()
	chain := shapes.m[fp]
	live := chain[:0]
	var found *shape
	for _, w := range chain {
		o := w.Value()
		if o == nil {
			continue
		}
		live = append(live, w)
		if found == nil && same(o) {
			found = o
		}
	}
	if found != nil {
		shapes.m[fp] = live
		return found
	}
	if len(live) >= maxShapeChain {
		shapes.m[fp] = live
		return s
	}
	shapes.m[fp] = append(live, weak.Make(s))
	runtime.AddCleanup(s, forgetShape, fp)
	return s
}

// forgetShape drops the collected entries under fp.
func forgetShape(fp uint64) {
	shapes.mu.Lock()
	defer shapes.mu.Unlock()
	chain := shapes.m[fp]
	live := chain[:0]
	for _, w := range chain {
		if w.Value() != nil {
			live = append(live, w)
		}
	}
	if len(live) == 0 {
		delete(shapes.m, fp)
		return
	}
	clear(chain[len(live):])
	shapes.m[fp] = live
}

// internedShapes returns how many shapes are interned (for tests).
func internedShapes() int {
	shapes.mu.Lock()
	defer shapes.mu.Unlock()
	n := 0
	for _, c := range shapes.m {
		n += len(c)
	}
	return n
}

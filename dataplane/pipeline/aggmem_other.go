//go:build !linux

package pipeline

// mapWords: only Linux maps tables of their own; elsewhere they are on
// the Go heap.
func (m *tableMem) mapWords(int) bool { return false }

func (m *tableMem) unmap() {}

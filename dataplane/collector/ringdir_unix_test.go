//go:build unix

package collector

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/ring"
)

// TestRetainUnreadBound restarts over rings that nobody reads: each start
// keeps the unread ring, but no more than maxRetained generations per
// index; empty rings are replaced, not kept.
func TestRetainUnreadBound(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ring.FileName(0))
	for gen := uint64(1); gen <= 4; gen++ {
		retainUnread(dir, slog.New(slog.DiscardHandler))
		f, err := ring.Create(path, 64<<10, ring.Meta{Generation: gen, Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		p := f.Producer()
		copy(p.Reserve(8), "unread!!")
		p.Commit(8)
		f.Close()
	}
	retainUnread(dir, slog.New(slog.DiscardHandler))
	// An empty ring (gen 5) is not kept.
	f, err := ring.Create(path, 64<<10, ring.Meta{Generation: 5, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	retainUnread(dir, slog.New(slog.DiscardHandler))
	ents, _ := os.ReadDir(dir)
	var kept []uint64
	for _, e := range ents {
		if _, gen, ok := ring.ParseRetainedName(e.Name()); ok {
			kept = append(kept, gen)
		}
	}
	if !slices.Equal(kept, []uint64{3, 4}) {
		t.Fatalf("kept generations %v, want [3 4]", kept)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the empty ring was moved: %v", err)
	}
}

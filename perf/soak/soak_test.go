package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestJudge(t *testing.T) {
	f := func(name string, rss func(i int) float64, want bool) {
		t.Helper()
		var ss []sample
		for i := range 60 {
			ss = append(ss, sample{Seconds: float64(i * 10), RSS: rss(i), Goroutines: 40, OpenFiles: 20})
		}
		v := judge(ss, 0.2)
		if v[0].pass != want || !v[1].pass || !v[2].pass {
			t.Errorf("%s: %+v, want memory pass %v", name, v, want)
		}
	}
	mib := float64(1 << 20)
	f("flat", func(int) float64 { return 50 * mib }, true)
	// Warm-up growth, then flat: passes.
	f("warm-up", func(i int) float64 { return float64(min(i, 10)) * 10 * mib }, true)
	// 0.5 MiB per sample: 24 MiB over the judged 48 samples, beyond 10 %
	// of a ~45 MiB mean and the 8 MiB floor.
	f("leak", func(i int) float64 { return 20*mib + float64(i)*mib/2 }, false)
	// Falling is not growing.
	f("falling", func(i int) float64 { return 200*mib - float64(i)*mib }, true)
}

func TestFit(t *testing.T) {
	slope, mean := fit([]float64{0, 1, 2, 3}, []float64{1, 3, 5, 7})
	if slope != 2 || mean != 4 {
		t.Errorf("fit: slope %v mean %v", slope, mean)
	}
}

func TestReplaceSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "R.md")
	if err := os.WriteFile(path, []byte("# R\n\n## A\na\n\n## Soak\nold\n\n## B\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replaceSection(path, "## Soak", "## Soak\n\nnew\n\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if want := "# R\n\n## A\na\n\n## Soak\n\nnew\n\n## B\nb\n"; string(b) != want {
		t.Errorf("got %q, want %q", b, want)
	}
	if err := replaceSection(path, "## C", "## C\nc\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if !strings.HasSuffix(string(b), "b\n\n## C\nc\n") {
		t.Errorf("append: %q", b)
	}
}

package ring

import "testing"

func TestNames(t *testing.T) {
	if i, ok := ParseFileName(FileName(7)); !ok || i != 7 {
		t.Fatalf("ParseFileName(%q) = %d, %v", FileName(7), i, ok)
	}
	n := RetainedName(3, 1733400000000000001)
	if n != "ring-003.gen-1733400000000000001" {
		t.Fatalf("RetainedName = %q", n)
	}
	if i, gen, ok := ParseRetainedName(n); !ok || i != 3 || gen != 1733400000000000001 {
		t.Fatalf("ParseRetainedName(%q) = %d, %d, %v", n, i, gen, ok)
	}
	for _, bad := range []string{"ring-003", "ring-003.gen-", "ring-003.gen-x", "ring-03.gen-1", "ring-003.gen-01",
		"ring-003.gen-1.tmp", ".ring-003.gen-1", "ring-003.1.templates"} {
		if _, _, ok := ParseRetainedName(bad); ok {
			t.Errorf("ParseRetainedName(%q) accepted", bad)
		}
	}
}

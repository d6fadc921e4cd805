package chaos

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRFC5471TableNamesRealTests keeps docs/RFC5471.md honest: every test
// it names after a file exists in that file, and every Fuzz target it
// names exists somewhere.
func TestRFC5471TableNamesRealTests(t *testing.T) {
	root := "../.."
	doc, err := os.ReadFile(filepath.Join(root, "docs", "RFC5471.md"))
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile("`([^`]+)`")
	named := 0
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		file := ""
		for _, m := range code.FindAllStringSubmatch(line, -1) {
			s := m[1]
			switch {
			case strings.HasSuffix(s, "_test.go"):
				file = s
			case strings.HasPrefix(s, "Test") || strings.HasPrefix(s, "Fuzz"):
				name, _, _ := strings.Cut(s, "/") // TestE2E/softflowd-ipfix-tcp
				if file == "" {
					if !defined(t, root, name) {
						t.Errorf("%s is in no test file", name)
					}
					continue
				}
				b, err := os.ReadFile(filepath.Join(root, file))
				if err != nil {
					t.Errorf("%s: %v", file, err)
					continue
				}
				if !strings.Contains(string(b), "\nfunc "+name+"(") {
					t.Errorf("%s names %s, which it does not define", file, name)
				}
				named++
			}
		}
	}
	if named < 50 {
		t.Errorf("only %d tests named after their files: the table's format changed?", named)
	}
}

// defined reports whether a _test.go file under root defines name.
func defined(t *testing.T, root, name string) bool {
	found := false
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || found || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(b), "\nfunc "+name+"(") {
			found = true
		}
		return nil
	})
	return found
}

package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestSkipOrFail runs TestSkipOrFailChild in a child process with and
// without CI: skipped without it, failed with it.
func TestSkipOrFail(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") != "" {
		t.Skip("only the parent runs this")
	}
	run := func(ci string) string {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestSkipOrFailChild$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", "CI="+ci)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	if out := run(""); !strings.Contains(out, "--- SKIP: TestSkipOrFailChild") || !strings.Contains(out, "no input 7") {
		t.Errorf("without CI, want a skip with the reason:\n%s", out)
	}
	if out := run("true"); !strings.Contains(out, "--- FAIL: TestSkipOrFailChild") || !strings.Contains(out, "no input 7") {
		t.Errorf("with CI=true, want a failure with the reason:\n%s", out)
	}
}

func TestSkipOrFailChild(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "" {
		t.Skip("only run as TestSkipOrFail's child process")
	}
	SkipOrFail(t, "no input %d", 7)
}

// Package testenv tells tests what the environment owes them. On a
// developer's machine a missing outside input (the shared folder beside the
// repository: captures, IANA registry, reference vectors) skips a test; in
// CI (CI set) it fails it, so a broken checkout cannot pass by skipping.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// InCI reports whether the tests run in CI: the CI environment variable is
// set and not empty, as CI services set it.
func InCI() bool { return os.Getenv("CI") != "" }

// SkipOrFail skips the test with the formatted reason, or fails it when
// InCI, where what the test needs must be present.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s (CI is set: missing test inputs fail the test)", reason)
	}
	t.Skip(reason)
}

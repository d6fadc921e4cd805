package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	f := func(bi debug.BuildInfo, want string) {
		t.Helper()
		if got := fromBuildInfo(&bi).String(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	f(debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.0"}}, "sluice v0.3.0 go1.26.8")
	f(debug.BuildInfo{GoVersion: "go1.26.8"}, "sluice (devel) go1.26.8")
	f(debug.BuildInfo{GoVersion: "go1.26.8", Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2026-12-05T10:00:00Z"},
	}}, "sluice (devel) commit 0123abcd+dirty (2026-12-05T10:00:00Z) go1.26.8")
}

func TestRead(t *testing.T) {
	in := Read()
	if in.Go != runtime.Version() || in.Version == "" || !strings.HasPrefix(in.String(), "sluice ") {
		t.Fatalf("Read() = %+v", in)
	}
}

// Package buildinfo tells which build of Sluice is running: the module
// version, the VCS commit and the Go version, read from the binary's build
// information. `sluice version`, `sluice-api` and the admin API share it.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// Info is what the binary knows of its build.
type Info struct {
	// Version is the module version, "(devel)" for a build from a
	// checkout.
	Version string `json:"version"`
	// Commit is the VCS revision, with "+dirty" when the tree had
	// changes; empty when the build did not record it.
	Commit string `json:"commit,omitempty"`
	// Time is the commit's time (RFC 3339), when recorded.
	Time string `json:"time,omitempty"`
	// Go is the Go version the binary was built with.
	Go string `json:"go"`
}

// Read returns the running binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "(unknown)"}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Version: bi.Main.Version, Go: bi.GoVersion}
	if in.Version == "" {
		in.Version = "(devel)"
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		case "vcs.time":
			in.Time = s.Value
		}
	}
	if dirty && in.Commit != "" {
		in.Commit += "+dirty"
	}
	return in
}

// String formats the information on one line:
// "sluice v1.2.3 commit 0123abcd (2026-12-05T10:00:00Z) go1.26.8".
func (in Info) String() string {
	var b strings.Builder
	b.WriteString("sluice " + in.Version)
	if in.Commit != "" {
		b.WriteString(" commit " + in.Commit)
	}
	if in.Time != "" {
		b.WriteString(" (" + in.Time + ")")
	}
	if in.Go != "" {
		b.WriteString(" " + in.Go)
	}
	return b.String()
}

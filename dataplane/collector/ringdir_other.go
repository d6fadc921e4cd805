//go:build !unix

package collector

import (
	"errors"
	"log/slog"

	"github.com/sluice-flow/sluice/dataplane/ring"
)

type ringDir struct {
	files []*ring.File
	gen   uint64
}

func openRingDir(dir string, loops, size int, _ *slog.Logger) (*ringDir, error) {
	return nil, errors.New("collector: file rings need a unix system")
}

func (d *ringDir) close() {}

func (d *ringDir) unlock() {}

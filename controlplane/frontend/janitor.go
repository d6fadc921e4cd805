package frontend

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// janitorEvery is how often files and results whose record expired are
// removed from DataDir.
const janitorEvery = 5 * time.Minute

// janitor removes files and large results whose Redis record expired (or
// was deleted), and uploads abandoned half-way.
func (s *Server) janitor(ctx context.Context) {
	tick := time.NewTicker(janitorEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if s.redisUp.Load() {
			s.sweep(ctx, time.Now().Add(-janitorEvery))
		}
	}
}

// sweep removes what is older than before and has no record.
func (s *Server) sweep(ctx context.Context, before time.Time) {
	for _, kind := range []string{"files", "results"} {
		tenants, _ := os.ReadDir(filepath.Join(s.cfg.DataDir, kind))
		for _, t := range tenants {
			dir := filepath.Join(s.cfg.DataDir, kind, t.Name())
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				info, err := e.Info()
				if err != nil || info.ModTime().After(before) {
					continue
				}
				name := e.Name()
				id, _, _ := strings.Cut(name, ".")
				key := fileKey(id)
				if kind == "results" {
					key = jobKey(id)
				}
				if !strings.HasSuffix(name, ".part") {
					ok, err := s.st.exists(ctx, key)
					if err != nil || ok {
						continue
					}
				}
				_ = os.Remove(filepath.Join(dir, name))
			}
		}
	}
}

package redistier

import "github.com/sluice-flow/sluice/dataplane/template"

// SetObserver makes s call f with every learn-to-use sample (nanoseconds).
func SetObserver(s *Store, f func(k template.Key, nanos int64)) { s.observe.Store(&f) }

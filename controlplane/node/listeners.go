package node

import (
	"context"
	"errors"

	"github.com/sluice-flow/sluice/controlplane/admin"
	"github.com/sluice-flow/sluice/dataplane/collector"
)

// `sluice run` opens and closes listeners at run time through the admin
// API (POST and DELETE /api/v1/listeners), as the split pod's controller
// does, so the frontend can add one to every pod.

var _ admin.ListenerSource = (*adminSource)(nil)

func (s *adminSource) Listeners() []string { return s.col.Listeners() }

func (s *adminSource) AddListener(_ context.Context, url string) error {
	if _, err := collector.ParseListeners([]string{url}); err != nil {
		return &admin.InputError{Err: err}
	}
	return listenerError(s.col.AddListener(url))
}

func (s *adminSource) RemoveListener(_ context.Context, url string) error {
	return listenerError(s.col.RemoveListener(url))
}

// listenerError makes the request's mistakes 400s; the rest (not running)
// stay 503s.
func listenerError(err error) error {
	if errors.Is(err, collector.ErrListenerExists) || errors.Is(err, collector.ErrNoListener) || errors.Is(err, collector.ErrStartListener) {
		return &admin.InputError{Err: err}
	}
	return err
}

package node

import (
	"context"

	"github.com/sluice-flow/sluice/controlplane/admin"
	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

// adminSource is the Node as the admin API sees it.
type adminSource Node

var _ admin.PipelineSource = (*adminSource)(nil)

func (s *adminSource) Ready() bool { return s.ready.Load() && !s.stopping.Load() }

func (s *adminSource) AppendMetrics(b []byte) []byte {
	b = s.med.AppendMetrics(s.col.AppendMetrics(b))
	if s.redis != nil {
		b = s.redis.AppendMetrics(b)
	}
	return b
}

func (s *adminSource) Exporters() []collector.ExporterStatus { return s.col.Exporters() }
func (s *adminSource) Templates() []collector.TemplateStatus { return s.col.TemplateList() }

func (s *adminSource) Pipeline() (uint64, []byte) {
	snap := s.med.Current()
	return snap.Version, snap.Source
}

func (s *adminSource) SetPipeline(ctx context.Context, file []byte) (uint64, error) {
	return (*Node)(s).SetPipeline(ctx, file)
}

// SetPipeline compiles a pipeline file from the API and puts it in force,
// returning its version; a file that does not compile, or names a file
// outside the directories Config.APIFiles allows, is an *admin.InputError
// and leaves the running pipeline alone.
func (n *Node) SetPipeline(ctx context.Context, file []byte) (uint64, error) {
	rule := n.cfg.apiFiles()
	return n.setPipeline(ctx, file, &rule)
}

// setPipeline is SetPipeline with the file rule given (nil: none, for the
// operator's own pipeline file).
func (n *Node) setPipeline(ctx context.Context, file []byte, rule *pipeline.FileRule) (uint64, error) {
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	snap, err := compilePipeline(file, n.outs, rule)
	if err != nil {
		return 0, &admin.InputError{Err: err}
	}
	return n.med.Apply(ctx, snap)
}

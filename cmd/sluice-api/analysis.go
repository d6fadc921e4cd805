package main

import "github.com/sluice-flow/sluice/controlplane/frontend"

// analyzer returns the analysis job types the binary runs.
func analyzer() frontend.Analyzer { return frontend.Analysis{} }

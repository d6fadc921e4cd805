// Package redistier is the template tier shared by every collector pod: a
// Redis (single node or Redis Cluster) store behind the per-loop and
// process-wide tiers of package template. Loops hand it work through a
// bounded queue and never wait on it; worker goroutines write templates
// through, fetch them on a miss with client-side caching, and follow
// Redis's invalidations so a change on one pod reaches the others.
package redistier

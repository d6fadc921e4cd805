// Package frontend is the deployment's Web API (`sluice-api serve`): tenants
// upload captures and IPFIX files, post analysis jobs and read their
// results over a fasthttp JSON API described by an OpenAPI 3 document. Job
// state lives in Redis, shared by every replica; the jobs run on worker
// processes (`sluice-api worker`) reached through package dispatch.
//
// Redis keys (all under one hash tag, so a Redis Cluster keeps them in one
// slot and the scripts stay atomic):
//
//	sluice:{api}:job:<id>            hash: the job record (TTL JobTTL, renewed when it ends)
//	sluice:{api}:queue               list: queued job ids (LPUSH, RPOP; at most MaxQueued)
//	sluice:{api}:running             sorted set: running job ids by lease deadline
//	sluice:{api}:jobs:<tenant>       sorted set: a tenant's jobs by creation time (at most MaxJobsPerTenant)
//	sluice:{api}:idem:<tenant>:<key> string: the job an Idempotency-Key made (TTL JobTTL)
//	sluice:{api}:result:<id>:<fmt>   string: a small result (TTL JobTTL); larger ones are files
//	                                 under DataDir/results/<tenant>/
//	sluice:{api}:file:<id>           hash: an uploaded file's record (TTL FileTTL); the data is
//	                                 DataDir/files/<tenant>/<id>
//	sluice:{api}:files:<tenant>      sorted set: a tenant's files (at most MaxFilesPerTenant)
//
// A replica claims a queued job only when one of its workers is idle, holds
// it under a lease it renews, and writes the outcome; a replica that
// disappears has its jobs requeued by the others once the lease lapses
// (retried once, then failed). While Redis is down, new files and jobs are
// refused with 503 and finished jobs wait in memory until Redis is back.
package frontend

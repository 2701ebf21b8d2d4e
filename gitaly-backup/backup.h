/*
 * gitaly-backup's run: the jobs read from stdin, the channels to their
 * servers, and how a job ends (main.c); client-side backups into -path
 * (local.c). One loop, every call asynchronous.
 */
#ifndef GITALY_BACKUP_BACKUP_H
#define GITALY_BACKUP_BACKUP_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>
#include "grpc/client.h"
#include "job.h"

struct chan {
	char *address;
	struct grpc_channel *ch;
};

struct run {
	uv_loop_t *loop;
	int restore;
	const char *backup_id;     /* create: the ID; restore: "" for the latest */
	const char *path;          /* client-side: the backup directory */
	int incremental;
	long parallel, parallel_storage;
	struct backup_job *jobs;
	size_t nr_jobs;
	int *state;                /* per job: 0 waiting, 1 running, 2 done */
	size_t running;
	struct chan *chans;
	size_t nr_chans;
	size_t failures;
	int removing;              /* RemoveAll calls in flight */
};

/* The channel to `address` (made on first use), or NULL for an address it cannot parse. */
struct grpc_channel *backup_channel(struct run *r, const char *address);
/* Start a call with the job's token; 0, or -1 (nothing fires). */
int backup_call(struct run *r, const struct backup_job *job, const char *method, const struct grpc_client_ops *ops,
		void *user, struct grpc_client_call **out);
/*
 * Job `i` ended with `code` and `message` (as a call's status): logged as
 * completed, skipped (FAILED_PRECONDITION "repository skipped", or a
 * NOT_FOUND repository when creating) or failed; the next jobs start.
 */
void backup_job_done(struct run *r, size_t i, int code, const char *message);

/* Client-side: back job `i` up into, or restore it from, r->path; ends with backup_job_done(). */
void local_start(struct run *r, size_t i);

#endif

/*
 * One line of gitaly-backup's input: a repository and the server holding it,
 * as GitLab's backup task writes them (JSON objects, one per line).
 */
#ifndef GITALY_BACKUP_JOB_H
#define GITALY_BACKUP_JOB_H

#include <stddef.h>

struct strbuf;

struct backup_job {
	char *address, *token;               /* the server: "unix:/path" or "tcp://host:port" */
	char *storage_name, *relative_path, *gl_project_path;
	int always_create;
};

/*
 * Parse one JSON object (`line`, `len` bytes) into `job` (zeroed first;
 * absent strings become ""). Unknown keys are ignored. 0, or -1 with the
 * reason in `err` (then nothing needs releasing).
 */
int backup_job_parse(const char *line, size_t len, struct backup_job *job, struct strbuf *err);
void backup_job_release(struct backup_job *job);

#endif

/* libFuzzer target for gitaly-backup/job.c: one input line of GitLab's backup task. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/strbuf.h"
#include "job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf err = STRBUF_INIT;
	struct backup_job job;

	if (backup_job_parse((const char *)data, size, &job, &err) == 0) {
		/* every field is a string, never NULL */
		if (!job.address || !job.token || !job.storage_name || !job.relative_path || !job.gl_project_path)
			__builtin_trap();
		backup_job_release(&job);
	} else if (!err.len) {
		__builtin_trap();   /* a refusal always says why */
	}
	strbuf_release(&err);
	return 0;
}

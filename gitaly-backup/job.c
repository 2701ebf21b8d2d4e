/* gitaly-backup's input lines (job.h). */
#include "job.h"
#include "base/strbuf.h"
#include "base/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

static int take_string(json_t *obj, const char *key, char **out, struct strbuf *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v)) {
		*out = xstrdup("");
		return 0;
	}
	if (!json_is_string(v)) {
		strbuf_addf(err, "json: cannot unmarshal %s into field \"%s\" of type string",
			    json_is_number(v) ? "number" : json_is_boolean(v) ? "bool" :
			    json_is_array(v) ? "array" : "object", key);
		return -1;
	}
	/* NUL inside a JSON string would cut a C string short: refused */
	if (strlen(json_string_value(v)) != json_string_length(v)) {
		strbuf_addf(err, "json: field \"%s\" contains a NUL character", key);
		return -1;
	}
	*out = xstrdup(json_string_value(v));
	return 0;
}

int backup_job_parse(const char *line, size_t len, struct backup_job *job, struct strbuf *err)
{
	static const char *const keys[] = { "address", "token", "storage_name", "relative_path", "gl_project_path" };
	char **fields[5];
	json_error_t jerr;
	json_t *obj, *ac;
	int rc = 0;

	memset(job, 0, sizeof(*job));
	fields[0] = &job->address;
	fields[1] = &job->token;
	fields[2] = &job->storage_name;
	fields[3] = &job->relative_path;
	fields[4] = &job->gl_project_path;
	obj = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!obj) {
		strbuf_addf(err, "json: %s", jerr.text);
		return -1;
	}
	if (!json_is_object(obj)) {
		strbuf_addstr(err, "json: cannot unmarshal a non-object into a repository");
		json_decref(obj);
		return -1;
	}
	for (size_t i = 0; i < ARRAY_SIZE(keys) && rc == 0; i++)
		rc = take_string(obj, keys[i], fields[i], err);
	ac = json_object_get(obj, "always_create");
	if (rc == 0 && ac && !json_is_null(ac)) {
		if (!json_is_boolean(ac)) {
			strbuf_addstr(err, "json: cannot unmarshal into field \"always_create\" of type bool");
			rc = -1;
		} else {
			job->always_create = json_is_true(ac);
		}
	}
	json_decref(obj);
	if (rc < 0)
		backup_job_release(job);
	return rc;
}

void backup_job_release(struct backup_job *job)
{
	free(job->address);
	free(job->token);
	free(job->storage_name);
	free(job->relative_path);
	free(job->gl_project_path);
	memset(job, 0, sizeof(*job));
}

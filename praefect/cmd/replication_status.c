/*
 * `praefect replication-status` (ours, docs/technical/replication-status.md):
 * per virtual storage and storage, the replication backlog, the recent
 * throughput and an estimate of the time to in sync, then the repositories
 * with outdated replicas and for how long, as the running praefect reports
 * them (PraefectAdminService/ReplicationStatus). Text in `dataloss`'s style,
 * or -json.
 */
#include "cmd/cmd.h"
#include "base/util.h"
#include "praefect_admin.pb-c.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Gitaly__ReplicationStatusResponse rs_resp;
typedef Gitaly__ReplicationStatusResponse__Storage rs_storage;

/* below this many jobs per second there is no throughput to estimate from */
#define MIN_THROUGHPUT 0.001

/* Whole seconds as Go prints a time.Duration: "0s", "42s", "3m12s", "2h0m5s". */
static const char *duration(char *buf, size_t sz, int64_t s)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(buf, sz, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(buf, sz, "%lldm%llds", (long long)(s / 60), (long long)(s % 60));
	else
		snprintf(buf, sz, "%lldh%lldm%llds", (long long)(s / 3600), (long long)(s / 60 % 60),
			 (long long)(s % 60));
	return buf;
}

static int64_t age_s(const rs_resp *r, int64_t since_ms)
{
	return since_ms > 0 && r->now_ms > since_ms ? (r->now_ms - since_ms) / 1000 : 0;
}

static int64_t backlog(const rs_storage *s)
{
	return s->ready + s->in_progress + s->failed;
}

/* Seconds to work the backlog off at the recent throughput; -1: unknown, 0: in sync. */
static int64_t time_to_sync(const rs_storage *s)
{
	if (!backlog(s))
		return s->outdated ? -1 : 0;
	if (s->throughput < MIN_THROUGHPUT)
		return -1;
	return (int64_t)((double)backlog(s) / s->throughput + 0.5);
}

static void print_text(const char *name, const rs_resp *r)
{
	char b1[64], b2[64];

	cmd_indent(0, "Virtual storage: %s", name);
	cmd_indent(1, "Storages:");
	for (size_t i = 0; i < r->n_storages; i++) {
		const rs_storage *s = r->storages[i];
		int64_t t = time_to_sync(s);
		cmd_indent(2, "%s%s:", s->storage, s->healthy ? "" : " (unhealthy)");
		cmd_indent(3, "Jobs: %lld queued, %lld in progress, %lld failed and retrying", (long long)s->ready,
		       (long long)s->in_progress, (long long)s->failed);
		if (s->oldest_job_created_ms)
			cmd_indent(3, "Oldest job: queued %s ago", duration(b1, sizeof(b1), age_s(r, s->oldest_job_created_ms)));
		cmd_indent(3, "Throughput: %.2f jobs/s over the last minute", s->throughput);
		if (t == 0)
			cmd_indent(3, "Time to in sync: in sync");
		else if (t < 0)
			cmd_indent(3, "Time to in sync: unknown");
		else
			cmd_indent(3, "Time to in sync: about %s", duration(b1, sizeof(b1), t));
		if (s->outdated)
			cmd_indent(3, "Outdated replicas: %lld, the oldest %s outdated for %s", (long long)s->outdated,
			       s->oldest_outdated_relative_path, duration(b2, sizeof(b2), age_s(r, s->oldest_outdated_since_ms)));
		else
			cmd_indent(3, "Outdated replicas: 0");
	}
	if (!r->n_repositories) {
		cmd_indent(1, "All repositories are in sync on all storages!");
		return;
	}
	cmd_indent(1, "Outdated repositories:");
	for (size_t i = 0; i < r->n_repositories; i++) {
		const Gitaly__ReplicationStatusResponse__Repository *repo = r->repositories[i];
		cmd_indent(2, "%s:", repo->relative_path);
		cmd_indent(3, "Primary: %s", *repo->primary ? repo->primary : "No Primary");
		cmd_indent(3, "Outdated Storages:");
		for (size_t k = 0; k < repo->n_outdated; k++) {
			const Gitaly__ReplicationStatusResponse__Repository__Outdated *o = repo->outdated[k];
			cmd_indent(4, "%s is behind by %lld change%s or less, outdated for %s%s", o->storage,
			       (long long)o->behind_by, o->behind_by > 1 ? "s" : "",
			       duration(b1, sizeof(b1), age_s(r, o->outdated_since_ms)), o->assigned ? ", assigned host" : "");
		}
	}
	if (r->repositories_omitted)
		cmd_indent(2, "... and %lld more", (long long)r->repositories_omitted);
}

static json_t *to_json(const char *name, const rs_resp *r)
{
	json_t *vs = json_object(), *storages = json_array(), *repos = json_array();

	for (size_t i = 0; i < r->n_storages; i++) {
		const rs_storage *s = r->storages[i];
		int64_t t = time_to_sync(s);
		json_t *o = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:s, s:I}",
				      "storage", s->storage, "healthy", (int)s->healthy, "queued", (json_int_t)s->ready,
				      "in_progress", (json_int_t)s->in_progress, "failed", (json_int_t)s->failed,
				      "backlog", (json_int_t)backlog(s),
				      "oldest_job_age_seconds", (json_int_t)age_s(r, s->oldest_job_created_ms),
				      "throughput_jobs_per_second", s->throughput, "outdated_replicas", (json_int_t)s->outdated,
				      "oldest_outdated_relative_path", s->oldest_outdated_relative_path,
				      "oldest_outdated_seconds", (json_int_t)age_s(r, s->oldest_outdated_since_ms));
		json_object_set_new(o, "time_to_in_sync_seconds", t < 0 ? json_null() : json_integer(t));
		json_array_append_new(storages, o);
	}
	for (size_t i = 0; i < r->n_repositories; i++) {
		const Gitaly__ReplicationStatusResponse__Repository *repo = r->repositories[i];
		json_t *outdated = json_array();
		for (size_t k = 0; k < repo->n_outdated; k++) {
			const Gitaly__ReplicationStatusResponse__Repository__Outdated *o = repo->outdated[k];
			json_array_append_new(outdated, json_pack("{s:s, s:I, s:I, s:b}", "storage", o->storage,
								  "behind_by", (json_int_t)o->behind_by, "outdated_seconds",
								  (json_int_t)age_s(r, o->outdated_since_ms),
								  "assigned", (int)o->assigned));
		}
		json_array_append_new(repos, json_pack("{s:s, s:s, s:I, s:o}", "relative_path", repo->relative_path,
						       "primary", repo->primary, "generation", (json_int_t)repo->generation,
						       "outdated_storages", outdated));
	}
	json_object_set_new(vs, "virtual_storage", json_string(name));
	json_object_set_new(vs, "storages", storages);
	json_object_set_new(vs, "outdated_repositories", repos);
	json_object_set_new(vs, "outdated_repositories_omitted", json_integer(r->repositories_omitted));
	return vs;
}

int cmd_replication_status(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	const char *only = NULL;
	int as_json = 0;
	const struct cli_flag flags[] = {
		{ .name = "virtual-storage", .type = CLI_STRING, .str = &only,
		  .help = "show only this virtual storage" },
		{ .name = "json", .type = CLI_BOOL, .on = &as_json, .help = "print JSON instead of text" },
	};
	struct strbuf err = STRBUF_INIT, resp = STRBUF_INIT;
	json_t *all = json_array();
	const char **names;
	size_t n = 0;
	int next, rc = 0;

	if (cmd_flags("replication-status", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &rc) < 0) {
		json_decref(all);
		return rc;
	}
	names = cmd_vs_names(cfg, only, &n);
	for (size_t i = 0; i < n && !rc; i++) {
		Gitaly__ReplicationStatusRequest req = GITALY__REPLICATION_STATUS_REQUEST__INIT;
		rs_resp *r;
		req.virtual_storage = (char *)names[i];
		strbuf_reset(&err);
		strbuf_reset(&resp);
		if (cmd_call_unary(cfg, "/gitaly.PraefectAdminService/ReplicationStatus", &req.base, &resp, &err) !=
		    GRPC_OK) {
			fflush(stdout);
			rc = cmd_fatal("%s", err.buf);
			break;
		}
		r = gitaly__replication_status_response__unpack(NULL, resp.len, (const uint8_t *)resp.buf);
		if (!r) {
			rc = cmd_fatal("cannot decode the response");
			break;
		}
		if (as_json)
			json_array_append_new(all, to_json(names[i], r));
		else
			print_text(names[i], r);
		gitaly__replication_status_response__free_unpacked(r, NULL);
	}
	if (!rc && as_json) {
		json_t *doc = json_pack("{s:O}", "virtual_storages", all);
		json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(doc);
	}
	json_decref(all);
	free(names);
	strbuf_release(&err);
	strbuf_release(&resp);
	return rc;
}

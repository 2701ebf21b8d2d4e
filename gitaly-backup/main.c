/*
 * gitaly-backup: `create` and `restore` for GitLab's backup task. Reads one
 * repository per line on stdin (job.h) and asks the server holding it (a
 * gitaly or a praefect) to back it up or restore it, -parallel calls at a
 * time and -parallel-storage per storage: server-side (-server-side) or
 * client-side into -path (local.c); docs/technical/backups.md, "gitaly-backup".
 */
#include "backup.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "cli/cli.h"
#include "grpc/auth.h"
#include "grpc/client.h"
#include "rpc/registry.h"
#include "repository.pb-c.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include "base/banned.h"

#define LINE_MAX_BYTES (1024 * 1024)

static const char BACKUP_METHOD[] = "/gitaly.RepositoryService/BackupRepository";
static const char RESTORE_METHOD[] = "/gitaly.RepositoryService/RestoreRepository";
static const char REMOVE_ALL_METHOD[] = "/gitaly.RepositoryService/RemoveAll";

/* --- logging: JSON lines on stdout, as upstream's logger --- */

static void log_line(const char *level, const char *msg, const struct backup_job *job, const char *error)
{
	char stamp[40];
	struct timespec ts;
	struct tm tm;
	json_t *o = json_object();
	char *s;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + strlen(stamp), sizeof(stamp) - strlen(stamp), ".%03ldZ", ts.tv_nsec / 1000000);
	json_object_set_new(o, "level", json_string(level));
	json_object_set_new(o, "msg", json_string(msg));
	json_object_set_new(o, "time", json_string(stamp));
	if (job) {
		json_object_set_new(o, "storage_name", json_string(job->storage_name));
		json_object_set_new(o, "relative_path", json_string(job->relative_path));
		json_object_set_new(o, "gl_project_path", json_string(job->gl_project_path));
	}
	if (error)
		json_object_set_new(o, "error", json_string(error));
	s = json_dumps(o, JSON_COMPACT);
	if (s) {
		fprintf(stdout, "%s\n", s);
		fflush(stdout);
		free(s);
	}
	json_decref(o);
}

/* --- calls --- */

struct grpc_channel *backup_channel(struct run *r, const char *address)
{
	for (size_t i = 0; i < r->nr_chans; i++)
		if (!strcmp(r->chans[i].address, address))
			return r->chans[i].ch;
	r->chans = xrealloc(r->chans, (r->nr_chans + 1) * sizeof(*r->chans));
	r->chans[r->nr_chans].address = xstrdup(address);
	if (grpc_channel_new(r->loop, address, NULL, &r->chans[r->nr_chans].ch) < 0) {
		free(r->chans[r->nr_chans].address);
		return NULL;
	}
	return r->chans[r->nr_chans++].ch;
}

struct call {
	struct run *r;
	size_t job;                /* (size_t)-1: RemoveAll */
	const char *storage;
};

static void pump(struct run *r);

static void call_close(struct grpc_client_call *gc, enum grpc_code code, const char *message,
		       const struct grpc_metadata *trailers)
{
	struct call *c = grpc_client_call_user(gc);
	struct run *r = c->r;
	struct strbuf m = STRBUF_INIT;

	if (c->job == (size_t)-1) {
		r->removing--;
		if (code != GRPC_OK) {
			strbuf_addf(&m, "rpc error: code = %s desc = %s", grpc_code_name(code), message ? message : "");
			log_line("warning", "failed to remove all repositories", NULL, m.buf);
		}
		strbuf_release(&m);
		free(c);
		pump(r);
		return;
	}
	strbuf_release(&m);
	{
		size_t job = c->job;
		free(c);
		backup_job_done(r, job, code, message);
	}
}

void backup_job_done(struct run *r, size_t i, int code, const char *message)
{
	const struct backup_job *job = &r->jobs[i];
	const char *what = r->restore ? "restore" : "create";
	struct strbuf m = STRBUF_INIT;

	r->state[i] = 2;
	r->running--;
	{
		if (code == GRPC_OK) {
			strbuf_addf(&m, "completed %s", what);
			log_line("info", m.buf, job, NULL);
		} else if ((code == GRPC_FAILED_PRECONDITION && message && strstr(message, "repository skipped")) ||
			   (!r->restore && code == GRPC_NOT_FOUND)) {
			/* upstream's ErrSkipped: nothing to back up, or no backup to restore */
			strbuf_addf(&m, "skipped %s", what);
			log_line("warning", m.buf, job, message);
		} else {
			struct strbuf e = STRBUF_INIT;
			r->failures++;
			strbuf_addf(&e, "%s: rpc error: code = %s desc = %s",
				    r->path ? what : r->restore ? "restore repository" : "server-side create",
				    grpc_code_name((enum grpc_code)code), message ? message : "");
			strbuf_addf(&m, "%s failed", what);
			log_line("error", m.buf, job, e.buf);
			strbuf_release(&e);
		}
	}
	strbuf_release(&m);
	pump(r);
}

static const struct grpc_client_ops call_ops = { .on_close = call_close };

int backup_call(struct run *r, const struct backup_job *job, const char *method, const struct grpc_client_ops *ops,
		void *user, struct grpc_client_call **out)
{
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct grpc_channel *ch = backup_channel(r, job->address);
	int rc = -1;

	if (!ch)
		return -1;
	if (job->token && *job->token)
		auth_v2_add(&md, job->token);
	if (grpc_channel_call(ch, method, &md, 0, GRPC_CALL_WAIT_FOR_READY, ops, user, out) == 0)
		rc = 0;
	grpc_metadata_release(&md);
	return rc;
}

/* Start one unary call; 0, or -1 (nothing fires). */
static int start_call(struct run *r, struct call *c, const struct backup_job *job, const char *method,
		      const ProtobufCMessage *req)
{
	struct grpc_client_call *gc;
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = xmalloc(len ? len : 1);
	int rc;

	protobuf_c_message_pack(req, buf);
	rc = backup_call(r, job, method, &call_ops, c, &gc);
	if (rc == 0) {
		grpc_client_call_send(gc, buf, len);
		grpc_client_call_close_send(gc);
	}
	free(buf);
	return rc;
}

static size_t running_on(const struct run *r, const char *storage)
{
	size_t n = 0;
	for (size_t i = 0; i < r->nr_jobs; i++)
		if (r->state[i] == 1 && !strcmp(r->jobs[i].storage_name, storage))
			n++;
	return n;
}

static void start_job(struct run *r, size_t i)
{
	struct backup_job *job = &r->jobs[i];
	Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
	struct call *c = xcalloc(1, sizeof(*c));
	struct strbuf m = STRBUF_INIT;
	int rc;

	repo.storage_name = job->storage_name;
	repo.relative_path = job->relative_path;
	repo.gl_project_path = job->gl_project_path;
	c->r = r;
	c->job = i;
	r->state[i] = 1;
	r->running++;
	strbuf_addf(&m, "started %s", r->restore ? "restore" : "create");
	log_line("info", m.buf, job, NULL);
	if (r->path) {
		free(c);
		strbuf_release(&m);
		local_start(r, i);
		return;
	}
	if (r->restore) {
		Gitaly__RestoreRepositoryRequest req = GITALY__RESTORE_REPOSITORY_REQUEST__INIT;
		req.repository = &repo;
		req.vanity_repository = &repo;
		req.backup_id = (char *)r->backup_id;
		req.always_create = job->always_create;
		rc = start_call(r, c, job, RESTORE_METHOD, &req.base);
	} else {
		Gitaly__BackupRepositoryRequest req = GITALY__BACKUP_REPOSITORY_REQUEST__INIT;
		req.repository = &repo;
		req.vanity_repository = &repo;
		req.backup_id = (char *)r->backup_id;
		req.incremental = r->incremental;
		rc = start_call(r, c, job, BACKUP_METHOD, &req.base);
	}
	if (rc < 0) {
		r->state[i] = 2;
		r->running--;
		r->failures++;
		strbuf_reset(&m);
		strbuf_addf(&m, "invalid address \"%s\"", job->address);
		log_line("error", r->restore ? "restore failed" : "create failed", job, m.buf);
		free(c);
	}
	strbuf_release(&m);
}

/* Start what the limits allow; the loop ends once nothing runs. */
static void pump(struct run *r)
{
	if (r->removing)
		return;
	for (size_t i = 0; i < r->nr_jobs && (r->parallel <= 0 || (long)r->running < r->parallel); i++) {
		if (r->state[i] != 0)
			continue;
		if (r->parallel_storage > 0 && (long)running_on(r, r->jobs[i].storage_name) >= r->parallel_storage)
			continue;
		start_job(r, i);
	}
	if (!r->running) {
		for (size_t i = 0; i < r->nr_chans; i++)
			grpc_channel_close(r->chans[i].ch);
	}
}

/* -remove-all-repositories: RemoveAll on every named storage, through the server of a job on it. */
static void remove_all(struct run *r, const char *list)
{
	char *copy = xstrdup(list);
	for (char *name = copy; *name;) {
		size_t n = strcspn(name, ",");
		int last = name[n] == '\0';
		name[n] = '\0';
		for (size_t i = 0; i < r->nr_jobs && *name; i++) {
			if (strcmp(r->jobs[i].storage_name, name))
				continue;
			{
				Gitaly__RemoveAllRequest req = GITALY__REMOVE_ALL_REQUEST__INIT;
				struct call *c = xcalloc(1, sizeof(*c));
				c->r = r;
				c->job = (size_t)-1;
				req.storage_name = name;
				r->removing++;
				if (start_call(r, c, &r->jobs[i], REMOVE_ALL_METHOD, &req.base) < 0) {
					r->removing--;
					free(c);
				}
			}
			break;
		}
		if (last)
			break;
		name += n + 1;
	}
	/* the calls copied the request; `copy` may go */
	free(copy);
}

/* --- the commands --- */

static int read_jobs(struct run *r, const char *what)
{
	struct strbuf line = STRBUF_INIT, err = STRBUF_INIT;
	size_t alloc = 0;
	int c, rc = 0;

	for (;;) {
		strbuf_reset(&line);
		while ((c = getchar()) != EOF && c != '\n') {
			if (line.len >= LINE_MAX_BYTES) {
				fprintf(stderr, "%s: input line longer than %d bytes\n", what, LINE_MAX_BYTES);
				rc = -1;
				goto out;
			}
			strbuf_addch(&line, (char)c);
		}
		if (line.len && strspn(line.buf, " \t\r") != line.len) {
			struct backup_job job;
			if (backup_job_parse(line.buf, line.len, &job, &err) < 0) {
				log_line("error", err.buf, NULL, NULL);
				fprintf(stderr, "%s: %s\n", what, err.buf);
				rc = -1;
				goto out;
			}
			ALLOC_GROW(r->jobs, r->nr_jobs + 1, alloc);
			r->jobs[r->nr_jobs++] = job;
		}
		if (c == EOF)
			break;
	}
out:
	strbuf_release(&line);
	strbuf_release(&err);
	return rc;
}

static int parse_count(const char *flag, const char *v, long *out)
{
	char *end;
	long n = strtol(v, &end, 10);
	if (!*v || *end) {
		fprintf(stderr, "invalid value \"%s\" for flag -%s: parse error\n", v, flag);
		return -1;
	}
	*out = n;
	return 0;
}

static int run(int argc, char **argv, int restore)
{
	const char *what = restore ? "restore" : "create";
	const char *path = NULL, *parallel = NULL, *parallel_storage = "2", *layout = "pointer", *id = NULL,
		   *remove = NULL;
	int incremental = 0, server_side = 0, next = 0, rc;
	char stamp[32];
	struct strbuf err = STRBUF_INIT;
	struct cli_flag create_flags[] = {
		{ "path", NULL, CLI_STRING, &path, NULL, "value", "repository backup path" },
		{ "parallel", NULL, CLI_STRING, &parallel, NULL, "value", "maximum number of parallel backups" },
		{ "parallel-storage", NULL, CLI_STRING, &parallel_storage, NULL, "value",
		  "maximum number of parallel backups per storage" },
		{ "layout", NULL, CLI_STRING, &layout, NULL, "value", "how backup files are located. Either pointer or legacy." },
		{ "incremental", NULL, CLI_BOOL, NULL, &incremental, NULL, "creates an incremental backup if possible." },
		{ "id", NULL, CLI_STRING, &id, NULL, "value", "the backup ID used when creating a full backup." },
		{ "server-side", NULL, CLI_BOOL, NULL, &server_side, NULL, "use server-side backups." },
	};
	struct cli_flag restore_flags[] = {
		{ "path", NULL, CLI_STRING, &path, NULL, "value", "repository backup path" },
		{ "parallel", NULL, CLI_STRING, &parallel, NULL, "value", "maximum number of parallel restores" },
		{ "parallel-storage", NULL, CLI_STRING, &parallel_storage, NULL, "value",
		  "maximum number of parallel restores per storage" },
		{ "layout", NULL, CLI_STRING, &layout, NULL, "value", "how backup files are located. Either pointer or legacy." },
		{ "remove-all-repositories", NULL, CLI_STRING, &remove, NULL, "value",
		  "comma-separated list of storage names to have all repositories removed from before restoring." },
		{ "id", NULL, CLI_STRING, &id, NULL, "value",
		  "ID of full backup to restore. If not specified, the latest backup is restored." },
		{ "server-side", NULL, CLI_BOOL, NULL, &server_side, NULL, "use server-side backups." },
	};
	struct run r = { 0 };

	rc = restore ? cli_parse(what, restore_flags, ARRAY_SIZE(restore_flags), 0, argc, argv, &next, &err)
		     : cli_parse(what, create_flags, ARRAY_SIZE(create_flags), 0, argc, argv, &next, &err);
	if (rc == CLI_EHELP) {
		struct strbuf u = STRBUF_INIT;
		if (restore)
			cli_usage_flags(&u, restore_flags, ARRAY_SIZE(restore_flags));
		else
			cli_usage_flags(&u, create_flags, ARRAY_SIZE(create_flags));
		printf("NAME:\n   gitaly-backup %s\n\nOPTIONS:\n%s", what, u.buf);
		strbuf_release(&u);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "%s\n", err.buf);
		strbuf_release(&err);
		return 1;
	}
	strbuf_release(&err);
	r.parallel = sysconf(_SC_NPROCESSORS_ONLN);
	if ((parallel && parse_count("parallel", parallel, &r.parallel) < 0) ||
	    parse_count("parallel-storage", parallel_storage, &r.parallel_storage) < 0)
		return 1;
	if (server_side && path && *path) {
		log_line("error", restore ? "restore: path cannot be used with server-side backups" :
			 "create: path cannot be used with server-side backups", NULL, NULL);
		return 1;
	}
	if (!server_side && (!path || !*path)) {
		log_line("error", restore ? "restore: resolve sink: empty path" : "create: resolve sink: empty path",
			 NULL, NULL);
		return 1;
	}
	if (!server_side && incremental) {
		log_line("error", "create: client-side incremental backups are not implemented", NULL, NULL);
		return 1;
	}
	if (!server_side)
		r.path = path;
	if (strcmp(layout, "pointer") && strcmp(layout, "legacy") && strcmp(layout, "manifest")) {
		fprintf(stderr, "%s: resolve locator: unknown layout: \"%s\"\n", what, layout);
		return 1;
	}
	if (!id || !*id) {
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
		id = restore ? "" : stamp;
	}
	if (!rpc_lookup(BACKUP_METHOD, strlen(BACKUP_METHOD)) || !rpc_lookup(RESTORE_METHOD, strlen(RESTORE_METHOD)) ||
	    !rpc_lookup(REMOVE_ALL_METHOD, strlen(REMOVE_ALL_METHOD))) {
		fprintf(stderr, "%s: method not in the RPC registry\n", what);
		return 1;
	}
	r.restore = restore;
	r.backup_id = id;
	r.incremental = incremental;
	if (read_jobs(&r, what) < 0)
		return 1;
	r.state = xcalloc(r.nr_jobs ? r.nr_jobs : 1, sizeof(*r.state));
	signal(SIGPIPE, SIG_IGN);
	r.loop = uv_default_loop();
	if (restore && remove && *remove)
		remove_all(&r, remove);
	pump(&r);
	uv_run(r.loop, UV_RUN_DEFAULT);
	uv_loop_close(r.loop);
	for (size_t i = 0; i < r.nr_chans; i++)
		free(r.chans[i].address);
	free(r.chans);
	for (size_t i = 0; i < r.nr_jobs; i++)
		backup_job_release(&r.jobs[i]);
	free(r.jobs);
	free(r.state);
	if (r.failures) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "%s: pipeline: %zu failures encountered", what, r.failures);
		log_line("error", m.buf, NULL, NULL);
		strbuf_release(&m);
		return 1;
	}
	return 0;
}

static int cmd_create(int argc, char **argv, void *ctx) { return run(argc, argv, 0); }
static int cmd_restore(int argc, char **argv, void *ctx) { return run(argc, argv, 1); }

static const struct cli_command commands[] = {
	{ "create", cmd_create, "Create backup file" },
	{ "restore", cmd_restore, "Restore backup file" },
};

int main(int argc, char **argv)
{
	const struct cli_command *cmd = argc > 1 ? cli_command_find(commands, ARRAY_SIZE(commands), argv[1]) : NULL;
	if (!cmd) {
		struct strbuf u = STRBUF_INIT;
		cli_usage_commands(&u, commands, ARRAY_SIZE(commands), 0);
		fprintf(argc > 1 ? stderr : stdout, "NAME:\n   gitaly-backup - create and restore repository backups\n\n"
			"USAGE:\n   gitaly-backup command [command options]\n\nCOMMANDS:\n%s", u.buf);
		strbuf_release(&u);
		return argc > 1 ? 1 : 0;
	}
	return cmd->run(argc - 2, argv + 2, NULL);
}

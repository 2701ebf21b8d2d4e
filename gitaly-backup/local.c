/*
 * Client-side backups: gitaly-backup itself reads the repository over
 * gRPC into -path (ListRefs, CreateBundle, GetCustomHooks) and writes it
 * back (RemoveRepository, CreateRepository or CreateRepositoryFromBundle,
 * FetchBundle, SetCustomHooks), in the pointer layout the server-side
 * backups use (docs/technical/backups.md).
 */
#include "backup.h"
#include "base/fs.h"
#include "base/pb.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "ref.pb-c.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

#define CHUNK (128 * 1024)
#define REFS_MAX (256 * 1024 * 1024)

enum stage {
	C_LIST, C_BUNDLE, C_HOOKS,                 /* create */
	R_REMOVE, R_CREATE, R_FETCH, R_HOOKS,      /* restore */
};

struct local {
	struct run *r;
	size_t job;
	enum stage stage;
	Gitaly__Repository repo;
	struct strbuf base;        /* <path>/<relative path without .git> */
	struct strbuf dir;         /* <base>/<backup directory> */
	struct strbuf refs;
	struct strbuf file;        /* the file being written or sent */
	struct strbuf msg;
	FILE *fp;
	unsigned steps, cur;
	struct grpc_client_call *call;
	int sending;               /* a file streams to the call */
	int eof;
	int failed;                /* writing the received data failed */
};

static void local_free(struct local *l)
{
	if (l->fp)
		fclose(l->fp);
	strbuf_release(&l->base);
	strbuf_release(&l->dir);
	strbuf_release(&l->refs);
	strbuf_release(&l->file);
	strbuf_release(&l->msg);
	free(l);
}

static void finish(struct local *l, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void finish(struct local *l, int code, const char *fmt, ...)
{
	struct strbuf m = STRBUF_INIT;
	struct run *r = l->r;
	size_t job = l->job;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		strbuf_vaddf(&m, fmt, ap);
		va_end(ap);
	}
	local_free(l);
	backup_job_done(r, job, code, m.buf);
	strbuf_release(&m);
}

static void step_file(struct local *l, unsigned step, const char *ext)
{
	strbuf_reset(&l->file);
	strbuf_addf(&l->file, "%s/%03u.%s", l->dir.buf, step, ext);
}

static int write_small(const char *path, const void *data, size_t len)
{
	struct strbuf d = STRBUF_INIT;
	const char *slash = strrchr(path, '/');
	int rc;
	strbuf_add(&d, path, slash ? (size_t)(slash - path) : 0);
	rc = fs_mkdir_p(d.buf, 0755);
	if (rc == 0)
		rc = fs_write_atomic(path, data, len, 0644);
	strbuf_release(&d);
	return rc;
}

/* --- calls: one request, a stream of responses --- */

static void on_message(struct grpc_client_call *call, const uint8_t *msg, size_t len);
static void on_writable(struct grpc_client_call *call);
static void on_close(struct grpc_client_call *call, enum grpc_code code, const char *message,
		     const struct grpc_metadata *trailers);
static const struct grpc_client_ops ops = { .on_message = on_message, .on_writable = on_writable, .on_close = on_close };

static void next(struct local *l);

static int start(struct local *l, enum stage st, const char *method, const ProtobufCMessage *req, int close_send)
{
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = xmalloc(len ? len : 1);
	protobuf_c_message_pack(req, buf);
	l->stage = st;
	if (backup_call(l->r, &l->r->jobs[l->job], method, &ops, l, &l->call) < 0) {
		free(buf);
		return -1;
	}
	grpc_client_call_send(l->call, buf, len);
	if (close_send)
		grpc_client_call_close_send(l->call);
	free(buf);
	return 0;
}

/* A response's bytes field 1 (CreateBundle, GetCustomHooks) goes to l->fp. */
static void take_data(struct local *l, const uint8_t *msg, size_t len)
{
	const uint8_t *d;
	size_t dl;
	if (l->failed || pb_find_bytes(msg, len, 1, &d, &dl) < 0 || (dl && fwrite(d, 1, dl, l->fp) != dl)) {
		l->failed = 1;
		grpc_client_call_cancel(l->call);
	}
}

static void on_message(struct grpc_client_call *call, const uint8_t *msg, size_t len)
{
	struct local *l = grpc_client_call_user(call);
	if (l->stage == C_LIST) {
		Gitaly__ListRefsResponse *resp = gitaly__list_refs_response__unpack(NULL, len, msg);
		if (!resp) {
			l->failed = 1;
			grpc_client_call_cancel(call);
			return;
		}
		for (size_t i = 0; i < resp->n_references && l->refs.len < REFS_MAX; i++) {
			strbuf_addf(&l->refs, "%s ", resp->references[i]->target);
			strbuf_add(&l->refs, resp->references[i]->name.data, resp->references[i]->name.len);
			strbuf_addch(&l->refs, '\n');
		}
		gitaly__list_refs_response__free_unpacked(resp, NULL);
	} else if (l->stage == C_BUNDLE || l->stage == C_HOOKS) {
		take_data(l, msg, len);
	}
}

/* Stream l->fp as the `data` (field 2) of messages, with backpressure; half-close at the end. */
static void on_writable(struct grpc_client_call *call)
{
	struct local *l = grpc_client_call_user(call);
	char *buf;
	if (!l->sending || l->eof)
		return;
	buf = xmalloc(CHUNK);
	while (!l->eof && !grpc_client_call_send_full(call)) {
		size_t n = fread(buf, 1, CHUNK, l->fp);
		if (n) {
			strbuf_reset(&l->msg);
			pb_put_bytes(&l->msg, 2, buf, n);
			grpc_client_call_send(call, l->msg.buf, l->msg.len);
		}
		if (n < CHUNK) {
			l->eof = 1;
			grpc_client_call_close_send(call);
		}
	}
	free(buf);
}

static void send_file(struct local *l, enum stage st, const char *method, const ProtobufCMessage *first)
{
	l->fp = fopen(l->file.buf, "rbe");
	if (!l->fp) {
		finish(l, GRPC_INTERNAL, "open %s: %s", l->file.buf, strerror(errno));
		return;
	}
	l->sending = 1;
	l->eof = 0;
	if (start(l, st, method, first, 0) < 0) {
		finish(l, GRPC_INVALID_ARGUMENT, "invalid address \"%s\"", l->r->jobs[l->job].address);
		return;
	}
	on_writable(l->call);
}

/* --- create --- */

static void create_commit(struct local *l)
{
	struct strbuf p = STRBUF_INIT, v = STRBUF_INIT;
	int rc;
	strbuf_addf(&p, "%s/LATEST", l->dir.buf);
	rc = write_small(p.buf, "001", 3);
	if (rc == 0) {
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/LATEST", l->base.buf);
		rc = write_small(p.buf, l->r->backup_id, strlen(l->r->backup_id));
	}
	strbuf_release(&p);
	strbuf_release(&v);
	if (rc < 0)
		finish(l, GRPC_INTERNAL, "pointer locator: commit: write latest: %s", strerror(-rc));
	else
		finish(l, GRPC_OK, NULL);
}

static void start_download(struct local *l, enum stage st, const char *ext, const char *method,
			   const ProtobufCMessage *req)
{
	step_file(l, 1, ext);
	strbuf_addstr(&l->file, ".tmp");
	l->fp = fopen(l->file.buf, "wbe");
	if (!l->fp) {
		finish(l, GRPC_INTERNAL, "write %s: %s", l->file.buf, strerror(errno));
		return;
	}
	if (start(l, st, method, req, 1) < 0)
		finish(l, GRPC_INVALID_ARGUMENT, "invalid address \"%s\"", l->r->jobs[l->job].address);
}

/* The downloaded file is complete: keep it (a non-empty hooks archive, any bundle) or drop it. */
static int keep_download(struct local *l, int keep_empty)
{
	struct strbuf dst = STRBUF_INIT;
	long size;
	int rc = 0;
	fflush(l->fp);
	size = ftell(l->fp);
	if (fsync(fileno(l->fp)) < 0)
		rc = -errno;
	fclose(l->fp);
	l->fp = NULL;
	strbuf_add(&dst, l->file.buf, l->file.len - 4);
	if (rc == 0 && (size > 0 || keep_empty)) {
		if (rename(l->file.buf, dst.buf) < 0)
			rc = -errno;
	} else {
		unlink(l->file.buf);
	}
	strbuf_release(&dst);
	return rc;
}

/* --- restore --- */

static void restore_hooks(struct local *l)
{
	Gitaly__SetCustomHooksRequest req = GITALY__SET_CUSTOM_HOOKS_REQUEST__INIT;
	struct stat st;
	for (unsigned i = l->steps; i >= 1; i--) {
		step_file(l, i, "custom_hooks.tar");
		if (stat(l->file.buf, &st) == 0) {
			req.repository = &l->repo;
			send_file(l, R_HOOKS, "/gitaly.RepositoryService/SetCustomHooks", &req.base);
			return;
		}
	}
	finish(l, GRPC_OK, NULL);
}

/* Step l->cur: its bundle (when its refs are not empty) into the repository. */
static void restore_step(struct local *l)
{
	struct stat st;
	for (; l->cur <= l->steps; l->cur++) {
		step_file(l, l->cur, "refs");
		if (stat(l->file.buf, &st) < 0) {
			finish(l, GRPC_INTERNAL, "read refs: %s", strerror(errno));
			return;
		}
		if (st.st_size == 0)
			continue;
		step_file(l, l->cur, "bundle");
		{
			Gitaly__FetchBundleRequest req = GITALY__FETCH_BUNDLE_REQUEST__INIT;
			req.repository = &l->repo;
			req.update_head = 1;
			l->cur++;
			send_file(l, R_FETCH, "/gitaly.RepositoryService/FetchBundle", &req.base);
		}
		return;
	}
	restore_hooks(l);
}

static void restore_create(struct local *l)
{
	struct stat st;
	step_file(l, 1, "refs");
	if (stat(l->file.buf, &st) < 0 && !l->r->jobs[l->job].always_create) {
		finish(l, GRPC_FAILED_PRECONDITION, "manager: repository skipped: read refs: doesn't exist");
		return;
	}
	if (stat(l->file.buf, &st) < 0 || st.st_size == 0) {
		Gitaly__CreateRepositoryRequest req = GITALY__CREATE_REPOSITORY_REQUEST__INIT;
		req.repository = &l->repo;
		l->cur = 2;
		if (start(l, R_CREATE, "/gitaly.RepositoryService/CreateRepository", &req.base, 1) < 0)
			finish(l, GRPC_INVALID_ARGUMENT, "invalid address \"%s\"", l->r->jobs[l->job].address);
		return;
	}
	step_file(l, 1, "bundle");
	{
		Gitaly__CreateRepositoryFromBundleRequest req = GITALY__CREATE_REPOSITORY_FROM_BUNDLE_REQUEST__INIT;
		req.repository = &l->repo;
		l->cur = 2;
		send_file(l, R_CREATE, "/gitaly.RepositoryService/CreateRepositoryFromBundle", &req.base);
	}
}

static void on_close(struct grpc_client_call *call, enum grpc_code code, const char *message,
		     const struct grpc_metadata *trailers)
{
	struct local *l = grpc_client_call_user(call);
	const char *m = message ? message : "";
	int rc;

	l->call = NULL;
	if (l->sending) {
		l->sending = 0;
		if (l->fp) {
			fclose(l->fp);
			l->fp = NULL;
		}
	}
	switch (l->stage) {
	case C_LIST:
		if (code == GRPC_NOT_FOUND) {
			finish(l, code, "manager: repository not found: repository skipped");
		} else if (code != GRPC_OK || l->failed) {
			finish(l, code ? (int)code : GRPC_INTERNAL, "manager: list refs: %s", m);
		} else if ((rc = (step_file(l, 1, "refs"), write_small(l->file.buf, l->refs.buf, l->refs.len))) < 0) {
			finish(l, GRPC_INTERNAL, "manager: write refs: %s", strerror(-rc));
		} else if (l->refs.len) {
			Gitaly__CreateBundleRequest req = GITALY__CREATE_BUNDLE_REQUEST__INIT;
			req.repository = &l->repo;
			start_download(l, C_BUNDLE, "bundle", "/gitaly.RepositoryService/CreateBundle", &req.base);
		} else {
			next(l);
		}
		return;
	case C_BUNDLE:
		if (code != GRPC_OK || l->failed) {
			fclose(l->fp);
			l->fp = NULL;
			unlink(l->file.buf);
			finish(l, code ? (int)code : GRPC_INTERNAL, "manager: write bundle: %s", m);
		} else if ((rc = keep_download(l, 1)) < 0) {
			finish(l, GRPC_INTERNAL, "manager: write bundle: %s", strerror(-rc));
		} else {
			next(l);
		}
		return;
	case C_HOOKS:
		if (code != GRPC_OK || l->failed) {
			fclose(l->fp);
			l->fp = NULL;
			unlink(l->file.buf);
			finish(l, code ? (int)code : GRPC_INTERNAL, "manager: write custom hooks: %s", m);
		} else if ((rc = keep_download(l, 0)) < 0) {
			finish(l, GRPC_INTERNAL, "manager: write custom hooks: %s", strerror(-rc));
		} else {
			create_commit(l);
		}
		return;
	case R_REMOVE:
		if (code != GRPC_OK && code != GRPC_NOT_FOUND)
			finish(l, code, "manager: remove repository: %s", m);
		else
			restore_create(l);
		return;
	case R_CREATE:
	case R_FETCH:
		if (code != GRPC_OK)
			finish(l, code, "manager: restore bundle: %s", m);
		else
			restore_step(l);
		return;
	case R_HOOKS:
		if (code != GRPC_OK)
			finish(l, code, "manager: restore custom hooks: %s", m);
		else
			finish(l, GRPC_OK, NULL);
		return;
	}
}

/* After the bundle (or without one): the custom hooks. */
static void next(struct local *l)
{
	Gitaly__GetCustomHooksRequest req = GITALY__GET_CUSTOM_HOOKS_REQUEST__INIT;
	req.repository = &l->repo;
	start_download(l, C_HOOKS, "custom_hooks.tar", "/gitaly.RepositoryService/GetCustomHooks", &req.base);
}

/* The pointer files: 0 with l->dir and l->steps set, or -1 (finished). */
static int find_backup(struct local *l)
{
	struct strbuf p = STRBUF_INIT, v = STRBUF_INIT;
	int rc = 0;
	if (*l->r->backup_id) {
		strbuf_addstr(&v, l->r->backup_id);
	} else {
		strbuf_addf(&p, "%s/LATEST", l->base.buf);
		if (fs_read_file(p.buf, 4096, &v) < 0) {
			finish(l, GRPC_FAILED_PRECONDITION, "manager: repository skipped: pointer locator: find latest: "
			       "find latest ID: doesn't exist");
			rc = -1;
			goto out;
		}
		strbuf_setlen(&v, strcspn(v.buf, "\r\n"));
	}
	if (!v.len || strchr(v.buf, '/') || !strcmp(v.buf, "..")) {
		finish(l, GRPC_INTERNAL, "manager: pointer locator: invalid backup ID \"%s\"", v.buf);
		rc = -1;
		goto out;
	}
	strbuf_addf(&l->dir, "%s/%s", l->base.buf, v.buf);
	strbuf_reset(&p);
	strbuf_reset(&v);
	strbuf_addf(&p, "%s/LATEST", l->dir.buf);
	if (fs_read_file(p.buf, 4096, &v) < 0) {
		finish(l, GRPC_FAILED_PRECONDITION, "manager: repository skipped: pointer locator: find: doesn't exist");
		rc = -1;
		goto out;
	}
	strbuf_setlen(&v, strcspn(v.buf, "\r\n"));
	l->steps = (unsigned)strtoul(v.buf, NULL, 10);
	if (!l->steps || l->steps > 999 || strspn(v.buf, "0123456789") != v.len) {
		finish(l, GRPC_INTERNAL, "manager: pointer locator: find: determine increment ID: \"%s\"", v.buf);
		rc = -1;
	}
out:
	strbuf_release(&p);
	strbuf_release(&v);
	return rc;
}

void local_start(struct run *r, size_t i)
{
	struct local *l = xcalloc(1, sizeof(*l));
	struct backup_job *job = &r->jobs[i];
	size_t rl = strlen(job->relative_path);

	l->r = r;
	l->job = i;
	gitaly__repository__init(&l->repo);
	l->repo.storage_name = job->storage_name;
	l->repo.relative_path = job->relative_path;
	l->repo.gl_project_path = job->gl_project_path;
	strbuf_init(&l->base, 0);
	strbuf_init(&l->dir, 0);
	strbuf_init(&l->refs, 0);
	strbuf_init(&l->file, 0);
	strbuf_init(&l->msg, 0);
	if (!rl || job->relative_path[0] == '/' || strstr(job->relative_path, "..")) {
		finish(l, GRPC_INVALID_ARGUMENT, "invalid relative path \"%s\"", job->relative_path);
		return;
	}
	if (rl > 4 && !strcmp(job->relative_path + rl - 4, ".git"))
		rl -= 4;
	strbuf_addf(&l->base, "%s/%.*s", r->path, (int)rl, job->relative_path);
	if (!r->restore) {
		Gitaly__ListRefsRequest req = GITALY__LIST_REFS_REQUEST__INIT;
		ProtobufCBinaryData pat = { 5, (uint8_t *)"refs/" };
		int rc;
		strbuf_addf(&l->dir, "%s/%s", l->base.buf, r->backup_id);
		if ((rc = fs_mkdir_p(l->dir.buf, 0755)) < 0) {
			finish(l, GRPC_INTERNAL, "create directory %s: %s", l->dir.buf, strerror(-rc));
			return;
		}
		req.repository = &l->repo;
		req.n_patterns = 1;
		req.patterns = &pat;
		if (start(l, C_LIST, "/gitaly.RefService/ListRefs", &req.base, 1) < 0)
			finish(l, GRPC_INVALID_ARGUMENT, "invalid address \"%s\"", job->address);
		return;
	}
	if (find_backup(l) < 0)
		return;
	{
		Gitaly__RemoveRepositoryRequest req = GITALY__REMOVE_REPOSITORY_REQUEST__INIT;
		req.repository = &l->repo;
		if (start(l, R_REMOVE, "/gitaly.RepositoryService/RemoveRepository", &req.base, 1) < 0)
			finish(l, GRPC_INVALID_ARGUMENT, "invalid address \"%s\"", job->address);
	}
}

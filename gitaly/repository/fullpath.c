/*
 * RepositoryService/SetFullPath and FullPath: the project's full path kept in
 * the repository's config under gitlab.fullpath. SetFullPath lets `git
 * config` edit a copy of the config in the storage's temporary directory
 * (upstream too edits a seeded copy and locks only to commit it), then
 * writes the result over the config as a locked file whose contents are
 * voted on (reposvc_write_locked()), so through praefect every replica
 * agrees on the same bytes. docs/technical/gitaly-repository.md, "Full path".
 */
#include "repository/repository.h"
#include "read/read.h"
#include "core/cleanup.h"
#include "base/fs.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FULLPATH_KEY "gitlab.fullpath"
/* A repository config larger than this is not ours to rewrite. */
#define CONFIG_MAX (16u * 1024 * 1024)

/* --- FullPath --- */

static void fullpath_read(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	Gitaly__FullPathResponse resp = GITALY__FULL_PATH_RESPONSE__INIT;
	struct strbuf sb = STRBUF_INIT;
	(void)err;
	if (status != 0) {
		gitaly_describe_status(&sb, status);
		rd_finish(rd, GRPC_INTERNAL, "fetch config: %s", sb.buf);
		strbuf_release(&sb);
		return;
	}
	if (out->len && out->buf[out->len - 1] == '\n')
		strbuf_setlen(out, out->len - 1);
	resp.path = out->buf;
	rd_send(rd, &resp);
	rd_ok(rd);
}

void reposvc_full_path(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	static const char *const args[] = { FULLPATH_KEY, NULL };
	Gitaly__FullPathRequest *req = msg_unpack(call, &gitaly__full_path_request__descriptor, buf, len);
	struct git_call gc;
	struct rd *rd;
	if (!req)
		return;
	if (!(rd = rd_start(data, call, sizeof(*rd), req, req->repository)))
		return;
	rd_git_call(rd, &gc, "config");
	gc.args = args;
	rd_capture(rd, &gc, 1024 * 1024, fullpath_read);
}

/* --- SetFullPath --- */

struct set_fullpath {
	struct gitaly_call op;
	Gitaly__SetFullPathRequest *req;
	struct strbuf repo, copy;    /* repository path; the config copy git edits */
	struct git_cmd *cmd;
	struct cleanup_writer *writer;   /* from the start to the release (core/cleanup.h) */
};

static void sfp_release(struct gitaly_call *op)
{
	struct set_fullpath *x = container_of(op, struct set_fullpath, op);
	cleanup_writer_leave(x->writer);   /* git config exited, the config lock is released */
	if (x->copy.len)
		unlink(x->copy.buf);
	strbuf_release(&x->repo);
	strbuf_release(&x->copy);
	msg_free(x->req);
	free(x);
}

static void sfp_cancel(struct gitaly_call *op)
{
	reposvc_kill(container_of(op, struct set_fullpath, op)->cmd);
}

static void sfp_written(struct gitaly_call *op, enum grpc_code code, const char *msg)
{
	Gitaly__SetFullPathResponse resp = GITALY__SET_FULL_PATH_RESPONSE__INIT;
	if (code == GRPC_OK)
		reposvc_reply(op, &resp);
	else
		reposvc_finishf(op, code == GRPC_CANCELLED ? code : GRPC_INTERNAL, "setting config: committing config: %s", msg);
}

static void sfp_edited(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct set_fullpath *x = arg;
	struct strbuf data = STRBUF_INIT, path = STRBUF_INIT, msg = STRBUF_INIT;
	(void)out;
	(void)err;
	x->cmd = NULL;
	if (gitaly_call_gone(&x->op)) {
		reposvc_finish(&x->op, GRPC_CANCELLED, "context canceled");
		goto out;
	}
	/* git config: 1 is a bad section or name, 2 a missing one (the key is ours: neither happens) */
	if (status != 0) {
		gitaly_describe_status(&msg, status);
		reposvc_finishf(&x->op, GRPC_INTERNAL, "setting config: %s", msg.buf);
		goto out;
	}
	if (fs_read_file(x->copy.buf, CONFIG_MAX, &data) < 0) {
		reposvc_finishf(&x->op, GRPC_INTERNAL, "setting config: reading edited config: %s", strerror(errno));
		goto out;
	}
	strbuf_addf(&path, "%s/config", x->repo.buf);
	if (reposvc_write_locked(&x->op, path.buf, data.buf, data.len, 0644, sfp_written, &msg) < 0)
		reposvc_finishf(&x->op, GRPC_INTERNAL, "setting config: committing config: %s", msg.buf);
out:
	strbuf_release(&data);
	strbuf_release(&path);
	strbuf_release(&msg);
}

/* A private copy of the config for git to edit; 0 or -1 with `msg` set. */
static int copy_config(struct set_fullpath *x, struct strbuf *msg)
{
	const struct gitaly_storage *st;
	struct strbuf data = STRBUF_INIT, src = STRBUF_INIT;
	int fd, rc = -1;

	strbuf_addf(&src, "%s/config", x->repo.buf);
	if (fs_read_file(src.buf, CONFIG_MAX, &data) < 0 && errno != ENOENT) {
		strbuf_addf(msg, "creating config writer: %s", strerror(errno));
		goto out;
	}
	if (gitaly_storage(x->op.g, x->req->repository->storage_name, &st, msg) != GRPC_OK)
		goto out;
	if (gitaly_tmp_dir(x->op.g, st, &x->copy) < 0) {
		strbuf_addf(msg, "creating config writer: %s", strerror(errno));
		strbuf_reset(&x->copy);
		goto out;
	}
	strbuf_addstr(&x->copy, "/config-XXXXXX");
	if ((fd = mkstemp(x->copy.buf)) < 0) {
		strbuf_addf(msg, "creating config writer: %s", strerror(errno));
		strbuf_reset(&x->copy);
		goto out;
	}
	if (write(fd, data.buf, data.len) != (ssize_t)data.len) {
		strbuf_addf(msg, "creating config writer: %s", strerror(errno));
		close(fd);
		goto out;
	}
	close(fd);
	rc = 0;
out:
	strbuf_release(&data);
	strbuf_release(&src);
	return rc;
}

/* The repository is ours to write (no cleanup pass runs in it): edit a copy of the config. */
static void sfp_go(void *arg)
{
	struct set_fullpath *x = arg;
	struct strbuf msg = STRBUF_INIT, file = STRBUF_INIT;
	const char *flags[3], *args[3];
	struct git_call gc = { 0 };

	if (gitaly_call_gone(&x->op)) {
		reposvc_finish(&x->op, GRPC_CANCELLED, "context canceled");
		return;
	}
	if (copy_config(x, &msg) < 0) {
		reposvc_finishf(&x->op, GRPC_INTERNAL, "setting config: %s", msg.buf);
		goto out;
	}
	strbuf_addf(&file, "--file=%s", x->copy.buf);
	flags[0] = "--replace-all";
	flags[1] = file.buf;
	flags[2] = NULL;
	args[0] = FULLPATH_KEY;
	args[1] = x->req->path;
	args[2] = NULL;
	gc.git_dir = x->repo.buf;
	gc.repo = x->req->repository;
	gc.subcmd = "config";
	gc.flags = flags;
	gc.args = args;
	gc.rpc = x->op.call;
	if (gitaly_git_capture(x->op.g, &gc, NULL, 0, 4096, sfp_edited, x, &x->cmd, &msg) < 0)
		reposvc_finishf(&x->op, GRPC_INTERNAL, "setting config: %s", msg.buf);
out:
	strbuf_release(&msg);
	strbuf_release(&file);
}

void reposvc_set_full_path(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__SetFullPathRequest *req = msg_unpack(call, &gitaly__set_full_path_request__descriptor, buf, len);
	struct strbuf msg = STRBUF_INIT, path = STRBUF_INIT;
	struct set_fullpath *x;
	enum grpc_code code;

	if (!req)
		return;
	if ((code = gitaly_locate(data, req->repository, 0, &path, &msg)) != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		msg_free(req);
		goto out;
	}
	if (!req->path || !*req->path) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "no path provided", NULL);
		msg_free(req);
		goto out;
	}
	x = xcalloc(1, sizeof(*x));
	x->req = req;
	strbuf_init(&x->repo, 0);
	strbuf_init(&x->copy, 0);
	strbuf_add(&x->repo, path.buf, path.len);
	reposvc_init(&x->op, data, call, sfp_release);
	x->op.cancel = sfp_cancel;
	gitaly_call_watch(&x->op);
	x->writer = cleanup_writer_enter(data, x->repo.buf, sfp_go, x);
out:
	strbuf_release(&msg);
	strbuf_release(&path);
}

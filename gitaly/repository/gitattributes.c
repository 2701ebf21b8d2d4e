/*
 * ApplyGitattributes (deprecated upstream, still served): info/attributes
 * becomes the .gitattributes blob of a commit, or goes away when the commit
 * has none. Either way two votes: on the blob's contents (the locked write
 * of repository.h) or, for the removal, on the zero object id.
 */
#include "repository/repository.h"
#include "base/fs.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/banned.h"

/* info/attributes is buffered whole (as GetInfoAttributes streams it) */
#define ATTRIBUTES_CAP (16 * 1024 * 1024)

struct attr_op {
	struct gitaly_call op;
	Gitaly__ApplyGitattributesRequest *req;
	char *path;
	struct git_cmd *cmd;
	struct strbuf spec;     /* "<revision>:.gitattributes" */
	struct strbuf file;     /* <repo>/info/attributes */
	struct strbuf lock;
};

static void attr_release(struct gitaly_call *op)
{
	struct attr_op *a = container_of(op, struct attr_op, op);
	msg_free(a->req);
	free(a->path);
	strbuf_release(&a->spec);
	strbuf_release(&a->file);
	strbuf_release(&a->lock);
	free(a);
}

static void attr_cancel(struct gitaly_call *op)
{
	reposvc_kill(container_of(op, struct attr_op, op)->cmd);
}

static void attr_end(struct attr_op *a, enum grpc_code code, const char *msg)
{
	if (gitaly_call_gone(&a->op)) {
		reposvc_finish(&a->op, GRPC_CANCELLED, "context canceled");
	} else if (code == GRPC_OK) {
		Gitaly__ApplyGitattributesResponse resp = GITALY__APPLY_GITATTRIBUTES_RESPONSE__INIT;
		reposvc_reply(&a->op, &resp);
	} else {
		reposvc_finish(&a->op, code, msg);
	}
}

static void written(struct gitaly_call *op, enum grpc_code code, const char *msg)
{
	struct attr_op *a = container_of(op, struct attr_op, op);
	struct strbuf m = STRBUF_INIT;
	if (code != GRPC_OK)
		strbuf_addf(&m, "committing gitattributes: %s", msg);
	attr_end(a, code, m.buf);
	strbuf_release(&m);
}

static void removal_committed(void *arg, enum grpc_code code, const char *msg)
{
	struct attr_op *a = arg;
	struct strbuf m = STRBUF_INIT;
	unlink(a->lock.buf);
	if (code != GRPC_OK)
		strbuf_addf(&m, "postimage vote: %s", msg);
	attr_end(a, code == GRPC_OK ? code : GRPC_INTERNAL, m.buf);
	strbuf_release(&m);
}

static void removal_prepared(void *arg, enum grpc_code code, const char *msg)
{
	static const uint8_t zero[20];
	struct attr_op *a = arg;
	struct strbuf m = STRBUF_INIT;

	if (code != GRPC_OK || gitaly_call_gone(&a->op)) {
		unlink(a->lock.buf);
		strbuf_addf(&m, "preimage vote: %s", msg ? msg : "context canceled");
		attr_end(a, code == GRPC_OK ? GRPC_CANCELLED : GRPC_INTERNAL, m.buf);
		strbuf_release(&m);
		return;
	}
	if (unlink(a->file.buf) < 0 && errno != ENOENT) {
		unlink(a->lock.buf);
		attr_end(a, GRPC_INTERNAL, strerror(errno));
		return;
	}
	vote_cast(a->op.g, a->op.call, VOTE_PHASE_COMMITTED, zero, removal_committed, a);
}

/* The commit has no .gitattributes blob: remove info/attributes under its lock. */
static void remove_attributes(struct attr_op *a)
{
	static const uint8_t zero[20];
	int fd = open(a->lock.buf, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "locking gitattributes: %s", errno == EEXIST ? "file already locked" : strerror(errno));
		attr_end(a, GRPC_INTERNAL, m.buf);
		strbuf_release(&m);
		return;
	}
	close(fd);
	vote_cast(a->op.g, a->op.call, VOTE_PHASE_PREPARED, zero, removal_prepared, a);
}

/* `git cat-file --batch` answered for "<revision>:.gitattributes". */
static void blob_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct attr_op *a = arg;
	struct strbuf m = STRBUF_INIT, dir = STRBUF_INIT;
	const char *nl, *sp;
	size_t size;

	a->cmd = NULL;
	if (gitaly_call_gone(&a->op)) {
		attr_end(a, GRPC_CANCELLED, NULL);
		return;
	}
	if (status != 0) {
		gitaly_describe_status(&m, status);
		attr_end(a, GRPC_INTERNAL, m.buf);
		strbuf_release(&m);
		return;
	}
	strbuf_addf(&dir, "%s/info", a->path);
	fs_mkdir_p(dir.buf, 0755);
	strbuf_release(&dir);
	nl = memchr(out->buf, '\n', out->len);
	sp = nl ? memchr(out->buf, ' ', (size_t)(nl - out->buf)) : NULL;
	/* "<oid> blob <size>\n<data>\n"; "... missing" or another type: no attributes */
	if (!sp || strncmp(sp, " blob ", 6)) {
		remove_attributes(a);
		return;
	}
	size = strtoull(sp + 6, NULL, 10);
	if (size > (size_t)(out->buf + out->len - nl - 1)) {
		attr_end(a, GRPC_INTERNAL, "gitattributes blob too large");
		return;
	}
	if (reposvc_write_locked(&a->op, a->file.buf, nl + 1, size, 0644, written, &m) < 0)
		attr_end(a, GRPC_INTERNAL, m.buf);
	strbuf_release(&m);
}

static void resolved(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const flags[] = { "--batch", NULL };
	struct attr_op *a = arg;
	struct strbuf m = STRBUF_INIT;
	struct git_call gc = { 0 };

	a->cmd = NULL;
	if (gitaly_call_gone(&a->op)) {
		attr_end(a, GRPC_CANCELLED, NULL);
		return;
	}
	if (status != 0) {
		attr_end(a, GRPC_INVALID_ARGUMENT, "revision does not exist");
		return;
	}
	strbuf_addf(&a->spec, "%.*s:.gitattributes\n", (int)a->req->revision.len, (const char *)a->req->revision.data);
	gc.git_dir = a->path;
	gc.repo = a->req->repository;
	gc.subcmd = "cat-file";
	gc.flags = flags;
	if (gitaly_git_capture(a->op.g, &gc, a->spec.buf, a->spec.len, ATTRIBUTES_CAP + 4096, blob_done, a, &a->cmd,
			       &m) < 0)
		attr_end(a, GRPC_INTERNAL, m.buf);
	strbuf_release(&m);
}

void reposvc_apply_gitattributes(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	static const char *const flags[] = { "--verify", "--quiet", NULL };
	struct gitaly *g = data;
	Gitaly__ApplyGitattributesRequest *req =
		msg_unpack(call, &gitaly__apply_gitattributes_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT, rev = STRBUF_INIT;
	struct git_call gc = { 0 };
	struct attr_op *a;
	const char *args[2];
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto fail;
	}
	if (gitaly_check_revision((const char *)req->revision.data, req->revision.len, &msg) < 0) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "revision: %s", msg.buf);
		goto fail;
	}
	a = xcalloc(1, sizeof(*a));
	reposvc_init(&a->op, g, call, attr_release);
	a->op.cancel = attr_cancel;
	a->req = req;
	a->path = strbuf_detach(&path, NULL);
	strbuf_init(&a->spec, 0);
	strbuf_init(&a->file, 0);
	strbuf_init(&a->lock, 0);
	strbuf_addf(&a->file, "%s/info/attributes", a->path);
	strbuf_addf(&a->lock, "%s.lock", a->file.buf);
	strbuf_addf(&rev, "%.*s^{commit}", (int)req->revision.len, (const char *)req->revision.data);
	args[0] = rev.buf;
	args[1] = NULL;
	gc.git_dir = a->path;
	gc.repo = req->repository;
	gc.subcmd = "rev-parse";
	gc.flags = flags;
	gc.args = args;
	gitaly_call_watch(&a->op);
	if (gitaly_git_capture(g, &gc, NULL, 0, 4096, resolved, a, &a->cmd, &msg) < 0)
		attr_end(a, GRPC_INTERNAL, msg.buf);
	goto out;
fail:
	msg_free(req);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	strbuf_release(&rev);
}

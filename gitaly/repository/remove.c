/* RemoveRepository: locked, voted, staged removal. */
#include "repository/repository.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

struct remove_op {
	struct gitaly_call op;
	char *path, *lock, *staged, *rel;
	char *tmpdir;                  /* <storage>/+gitaly/tmp */
	uv_work_t work;
	enum grpc_code code;
	struct strbuf msg;
};

static void remove_release(struct gitaly_call *op)
{
	struct remove_op *r = container_of(op, struct remove_op, op);
	free(r->path);
	free(r->lock);
	free(r->staged);
	free(r->rel);
	free(r->tmpdir);
	strbuf_release(&r->msg);
	free(r);
}

static void remove_end(struct remove_op *r)
{
	unlink(r->lock);
	if (r->code == GRPC_OK) {
		Gitaly__RemoveRepositoryResponse resp = GITALY__REMOVE_REPOSITORY_RESPONSE__INIT;
		reposvc_reply(&r->op, &resp);
	} else {
		reposvc_finish(&r->op, r->code, r->msg.buf);
	}
}

static void staged_removed(uv_work_t *w, int status)
{
	remove_end(w->data);
}

static void remove_staged(uv_work_t *w)
{
	struct remove_op *r = w->data;
	if (fs_remove_tree(r->staged) < 0)
		log_msgf(LOG_ERROR, "failed removing repository from temporary directory \"%s\"", r->staged);
}

static void removal_vote_hash(const char *step, const char *rel, uint8_t out[20])
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "%s %s", step, rel);
	gitaly_sha1(sb.buf, sb.len, out);
	strbuf_release(&sb);
}

static void post_remove_voted(void *arg, enum grpc_code code, const char *msg)
{
	struct remove_op *r = arg;
	if (code != GRPC_OK) {
		r->code = GRPC_INTERNAL;
		strbuf_addf(&r->msg, "vote on finalizing: %s", msg);
	}
	/* the repository is gone from its place either way: delete the staged copy */
	if (uv_queue_work(r->op.g->loop, &r->work, remove_staged, staged_removed) < 0) {
		remove_staged(&r->work);
		remove_end(r);
	}
}

static void pre_remove_voted(void *arg, enum grpc_code code, const char *msg)
{
	struct remove_op *r = arg;
	struct strbuf tmp = STRBUF_INIT, dest = STRBUF_INIT;
	uint8_t vote[20];
	const char *base;

	if (code != GRPC_OK) {
		r->code = GRPC_INTERNAL;
		strbuf_addf(&r->msg, "vote on rename: %s", msg);
		remove_end(r);
		return;
	}
	if (gitaly_call_gone(&r->op)) {
		r->code = GRPC_CANCELLED;
		strbuf_addstr(&r->msg, "context canceled");
		remove_end(r);
		return;
	}
	base = strrchr(r->path, '/');
	base = base ? base + 1 : r->path;
	strbuf_addstr(&tmp, r->tmpdir);
	strbuf_addf(&tmp, "/%s+removed-XXXXXX", base);
	if (!mkdtemp(tmp.buf)) {
		r->code = GRPC_INTERNAL;
		strbuf_addf(&r->msg, "mkdir temp: %s", strerror(errno));
		remove_end(r);
		goto out;
	}
	r->staged = xstrdup(tmp.buf);
	strbuf_addf(&dest, "%s/repo", tmp.buf);
	if (rename(r->path, dest.buf) < 0) {
		r->code = GRPC_INTERNAL;
		strbuf_addf(&r->msg, "staging repository for removal: %s", strerror(errno));
		rmdir(r->staged);
		remove_end(r);
		goto out;
	}
	{
		char *slash = strrchr(r->path, '/');
		struct strbuf parent = STRBUF_INIT;
		strbuf_add(&parent, r->path, slash && slash != r->path ? (size_t)(slash - r->path) : 1);
		fs_fsync_dir(parent.buf);
		strbuf_release(&parent);
	}
	removal_vote_hash("post-remove", r->rel, vote);
	vote_cast(r->op.g, r->op.call, VOTE_PHASE_COMMITTED, vote, post_remove_voted, r);
out:
	strbuf_release(&tmp);
	strbuf_release(&dest);
}

void reposvc_remove_repository(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__RemoveRepositoryRequest *req = msg_unpack(call, &gitaly__remove_repository_request__descriptor,
							 buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT, tmp = STRBUF_INIT, lock = STRBUF_INIT;
	const struct gitaly_storage *s;
	struct remove_op *r;
	struct stat st;
	enum grpc_code code;
	uint8_t vote[20];
	int fd;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, LOCATE_NO_EXIST_CHECK, &path, &msg);
	if (code == GRPC_OK)
		code = gitaly_storage(g, req->repository->storage_name, &s, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	if (gitaly_tmp_dir(g, s, &tmp) < 0) {
		grpc_call_finishf(call, GRPC_INTERNAL, "temporary directory: %s", strerror(errno));
		goto out;
	}
	if (lstat(path.buf, &st) < 0) {
		if (errno == ENOENT)
			grpc_call_finish(call, GRPC_NOT_FOUND, "repository does not exist", NULL);
		else
			grpc_call_finishf(call, GRPC_INTERNAL, "statting repository: %s", strerror(errno));
		goto out;
	}
	strbuf_addf(&lock, "%s.lock", path.buf);
	fd = open(lock.buf, O_CREAT | O_EXCL | O_RDONLY | O_CLOEXEC, 0400);
	if (fd < 0) {
		if (errno == EEXIST)
			grpc_call_finish(call, GRPC_FAILED_PRECONDITION, "repository is already locked", NULL);
		else
			grpc_call_finishf(call, GRPC_INTERNAL, "locking repository for removal: %s", strerror(errno));
		goto out;
	}
	close(fd);
	if (lstat(path.buf, &st) < 0) {
		unlink(lock.buf);
		grpc_call_finish(call, GRPC_NOT_FOUND, "repository was concurrently removed", NULL);
		goto out;
	}

	r = xcalloc(1, sizeof(*r));
	reposvc_init(&r->op, g, call, remove_release);
	r->path = strbuf_detach(&path, NULL);
	r->lock = strbuf_detach(&lock, NULL);
	r->tmpdir = strbuf_detach(&tmp, NULL);
	r->rel = xstrdup(req->repository->relative_path);
	r->work.data = r;
	r->code = GRPC_OK;
	strbuf_init(&r->msg, 0);
	gitaly_call_watch(&r->op);
	removal_vote_hash("pre-remove", r->rel, vote);
	vote_cast(g, call, VOTE_PHASE_PREPARED, vote, pre_remove_voted, r);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	strbuf_release(&tmp);
	strbuf_release(&lock);
	msg_free(req);
}

/* ObjectPoolService's shared pieces: the call base, pool paths, alternates (pool.h). */
#include "objectpool/pool.h"
#include "housekeeping/housekeeping.h"
#include "read/read.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

static void objpool_release(struct gitaly_call *op)
{
	struct objpool_call *c = container_of(op, struct objpool_call, op);
	msg_free(c->req);
	free(c->pool_path);
	free(c->repo_path);
	free(c->tmp_path);
	strbuf_release(&c->msg);
	strbuf_release(&c->aux);
	free(c);
}

static void objpool_cancel(struct gitaly_call *op)
{
	struct objpool_call *c = container_of(op, struct objpool_call, op);
	reposvc_kill(c->cmd);
	hk_cancel(c->hk);
	reposvc_create_cancel(c->rc);
}

struct objpool_call *objpool_call_new(struct gitaly *g, struct grpc_call *call, void *req)
{
	struct objpool_call *c = xcalloc(1, sizeof(*c));
	reposvc_init(&c->op, g, call, objpool_release);
	c->op.cancel = objpool_cancel;
	c->req = req;
	c->work.data = c;
	strbuf_init(&c->msg, 0);
	strbuf_init(&c->aux, 0);
	return c;
}

void objpool_call_abort(struct objpool_call *c, enum grpc_code code, const char *msg)
{
	grpc_call_finish(c->op.call, code, msg, NULL);
	objpool_release(&c->op);
}

void objpool_call_watch(struct objpool_call *c)
{
	gitaly_call_watch(&c->op);
}

void objpool_end(struct objpool_call *c, enum grpc_code code, const char *msg, const void *resp)
{
	if (gitaly_call_gone(&c->op))
		reposvc_finish(&c->op, GRPC_CANCELLED, "context canceled");
	else if (code == GRPC_OK)
		reposvc_reply(&c->op, resp);
	else
		reposvc_finish(&c->op, code, msg);
}

enum grpc_code objpool_locate(struct gitaly *g, const Gitaly__ObjectPool *pool, unsigned flags,
			      struct strbuf *path, struct strbuf *msg)
{
	const struct gitaly_storage *st;
	struct strbuf tmp = STRBUF_INIT, ignored = STRBUF_INIT;
	enum grpc_code code;

	if (!pool || !pool->repository) {
		strbuf_addstr(msg, "no object pool repository");
		return GRPC_INVALID_ARGUMENT;
	}
	code = gitaly_locate(g, pool->repository, LOCATE_NO_EXIST_CHECK, path, msg);
	if (code != GRPC_OK)
		return code;
	if (!objpool_is_pool_path(pool->repository->relative_path)) {
		/* pools being created live under the temporary directory */
		int inside = gitaly_storage(g, pool->repository->storage_name, &st, msg) == GRPC_OK &&
			     gitaly_tmp_dir(g, st, &tmp) == 0 && !strncmp(path->buf, tmp.buf, tmp.len);
		strbuf_release(&tmp);
		if (!inside) {
			strbuf_reset(msg);
			strbuf_addstr(msg, "invalid object pool directory");
			return GRPC_INVALID_ARGUMENT;
		}
	}
	strbuf_reset(path);
	code = gitaly_locate(g, pool->repository, 0, path, &ignored);
	strbuf_release(&ignored);
	if (code != GRPC_OK) {
		if (flags & OBJPOOL_MISSING_OK)
			return GRPC_NOT_FOUND;
		strbuf_addstr(msg, "object pool is not a valid git repository");
		return GRPC_FAILED_PRECONDITION;
	}
	return GRPC_OK;
}

char *objpool_of(struct gitaly *g, const Gitaly__Repository *repo, const char *repo_path)
{
	const struct gitaly_storage *st;
	struct strbuf alt = STRBUF_INIT, p = STRBUF_INIT, msg = STRBUF_INIT, pool_path = STRBUF_INIT;
	struct strbuf joined = STRBUF_INIT;
	Gitaly__Repository pool = GITALY__REPOSITORY__INIT;
	char *rel = NULL, *slash;
	size_t sl;

	if (gitaly_storage(g, repo->storage_name, &st, &msg) != GRPC_OK)
		goto out;
	strbuf_addf(&p, "%s/objects/info/alternates", repo_path);
	if (fs_read_file(p.buf, 1024 * 1024, &alt) < 0)
		goto out;
	strbuf_setlen(&alt, strcspn(alt.buf, "\n"));
	if (alt.buf[0] == '#' || !alt.len)
		goto out;
	/* joined under objects/ even when absolute, as upstream's path join does */
	strbuf_addf(&joined, "%s/objects/%s", repo_path, alt.buf);
	strbuf_reset(&p);
	go_path_clean(&p, joined.buf, joined.len);   /* absolute, as repo_path is */
	/* the pool repository is the directory holding that object directory */
	slash = strrchr(p.buf, '/');
	if (!slash)
		goto out;
	strbuf_setlen(&p, (size_t)(slash - p.buf));
	sl = strlen(st->path);
	if (strncmp(p.buf, st->path, sl) || p.buf[sl] != '/')
		goto out;
	pool.storage_name = repo->storage_name;
	pool.relative_path = p.buf + sl + 1;
	if (gitaly_locate(g, &pool, 0, &pool_path, &msg) != GRPC_OK) {
		log_msgf(LOG_WARN, "alternates file does not point to valid git repository: \"%s\"", alt.buf);
		goto out;
	}
	if (!objpool_is_pool_path(pool.relative_path)) {
		/* only pools being created in the temporary directory may live elsewhere */
		struct strbuf tmp = STRBUF_INIT;
		strbuf_addf(&tmp, "%s/+gitaly/tmp", st->path);
		if (strncmp(p.buf, tmp.buf, tmp.len)) {
			strbuf_release(&tmp);
			goto out;
		}
		strbuf_release(&tmp);
	}
	rel = xstrdup(pool.relative_path);
out:
	strbuf_release(&alt);
	strbuf_release(&p);
	strbuf_release(&msg);
	strbuf_release(&pool_path);
	strbuf_release(&joined);
	return rel;
}

/*
 * ReplicateRepository, step 7: object pool membership (docs/technical/object-pools.md,
 * "Replication"). The source names its pool (GetObjectPool); the target
 * links to the pool at the same relative path in its own storage, which
 * praefect keeps identical on every node (@cluster/pools/..). A missing
 * pool is first created from the source pool's snapshot. When the target
 * itself was created from the source's snapshot in this call, it holds the
 * pool's objects too: after linking, `git repack -adl` keeps only its own
 * packed objects, and its loose objects that the pool has loose as well go.
 */
#include "repository/replicate.h"
#include "objectpool/pool.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

#define POOL_ERR "replicating repository: synchronizing object pools: "

/*
 * Thread pool: a loose object file is named by its object id, so one that
 * the pool also holds loose is the same object, still reachable through
 * the alternates once ours is gone.
 */
static void drop_pool_loose(uv_work_t *w)
{
	struct repl *r = w->data;
	struct strbuf dir = STRBUF_INIT, mine = STRBUF_INIT, theirs = STRBUF_INIT;
	struct stat st;

	for (int i = 0; i < 256; i++) {
		struct dirent *de;
		DIR *d;
		strbuf_reset(&dir);
		strbuf_addf(&dir, "%s/objects/%02x", r->path, i);
		if (!(d = opendir(dir.buf)))
			continue;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.' || strspn(de->d_name, "0123456789abcdef") != strlen(de->d_name))
				continue;
			strbuf_reset(&theirs);
			strbuf_addf(&theirs, "%s/objects/%02x/%s", r->pool_path, i, de->d_name);
			if (stat(theirs.buf, &st) < 0)
				continue;
			strbuf_reset(&mine);
			strbuf_addf(&mine, "%s/%s", dir.buf, de->d_name);
			unlink(mine.buf);
		}
		closedir(d);
	}
	strbuf_release(&dir);
	strbuf_release(&mine);
	strbuf_release(&theirs);
}

static void pool_loose_dropped(uv_work_t *w, int status)
{
	struct repl *r = w->data;
	if (gitaly_call_gone(&r->op))
		repl_fail(r, GRPC_CANCELLED, "context canceled");
	else
		r->pool_next(r);
}

static void repacked(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct repl *r = arg;
	r->cmd = NULL;
	if (gitaly_call_gone(&r->op)) {
		repl_fail(r, GRPC_CANCELLED, "context canceled");
		return;
	}
	if (status != 0) {
		/* the repository is linked and complete; only the duplicates stay */
		log_msgf(LOG_WARN, "repacking replicated pool member \"%s\" failed: %.*s", r->path,
			 (int)MIN(err->len, 1024), err->buf);
		r->pool_next(r);
		return;
	}
	r->pool_work.data = r;
	if (uv_queue_work(r->op.g->loop, &r->pool_work, drop_pool_loose, pool_loose_dropped) < 0)
		r->pool_next(r);
}

static void linked(struct repl *r)
{
	static const char *const flags[] = { "-a", "-d", "-l", "-q", NULL };
	static const char *const config[] = { "repack.writeBitmaps=false" };
	struct strbuf msg = STRBUF_INIT;
	struct git_call gc = { 0 };

	if (!r->created_here) {
		r->pool_next(r);
		return;
	}
	gc.git_dir = r->path;
	gc.repo = r->req->repository;
	gc.subcmd = "repack";
	gc.flags = flags;
	gc.config = config;
	gc.nr_config = ARRAY_SIZE(config);
	if (gitaly_git_capture(r->op.g, &gc, NULL, 0, 64 * 1024, repacked, r, &r->cmd, &msg) < 0)
		repl_fail(r, GRPC_INTERNAL, POOL_ERR "%s", msg.buf);
	strbuf_release(&msg);
}

static void alternates_written(struct gitaly_call *op, enum grpc_code code, const char *msg)
{
	struct repl *r = container_of(op, struct repl, op);
	if (code != GRPC_OK) {
		repl_fail(r, code, POOL_ERR "link target object pool: committing alternates: %s", msg);
		return;
	}
	linked(r);
}

static void link_target(struct repl *r)
{
	struct strbuf line = STRBUF_INIT, msg = STRBUF_INIT, path = STRBUF_INIT;
	int state;

	if (gitaly_call_gone(&r->op)) {
		repl_fail(r, GRPC_CANCELLED, "context canceled");
		goto out;
	}
	objpool_alternate_line(r->path, r->pool_path, &line);
	state = objpool_link_state(r->path, r->pool_path, line.buf, &msg);
	if (state < 0) {
		repl_fail(r, GRPC_INTERNAL, POOL_ERR "link target object pool: %s", msg.buf);
		goto out;
	}
	if (state == 1) {
		linked(r);
		goto out;
	}
	strbuf_addf(&path, "%s/objects/info", r->path);
	fs_mkdir_p(path.buf, 0755);
	strbuf_addstr(&path, "/alternates");
	if (reposvc_write_locked(&r->op, path.buf, line.buf, line.len, 0644, alternates_written, &msg) < 0)
		repl_fail(r, GRPC_INTERNAL, POOL_ERR "link target object pool: %s", msg.buf);
out:
	strbuf_release(&line);
	strbuf_release(&msg);
	strbuf_release(&path);
}

/* --- the pool itself, from the source pool's snapshot --- */

static void pool_fed(struct repl *r)
{
	struct reposvc_create *rc = r->rc;
	struct strbuf msg = STRBUF_INIT;

	if (gitaly_call_gone(&r->op)) {
		reposvc_create_seeded(rc, GRPC_CANCELLED, "context canceled");
	} else if (r->call_code != GRPC_OK) {
		strbuf_addf(&msg, "extracting snapshot: %s", r->call_msg.buf);
		reposvc_create_seeded(rc, r->call_code, msg.buf);
	} else if (!r->got_msg || !r->cmd_started || r->cmd_status != 0) {
		strbuf_addstr(&msg, "extracting snapshot: wait for tar: ");
		if (r->cmd_started)
			gitaly_describe_status(&msg, r->cmd_status);
		else
			strbuf_addstr(&msg, "empty snapshot");
		reposvc_create_seeded(rc, GRPC_INTERNAL, msg.buf);
	} else {
		reposvc_create_seeded(rc, GRPC_OK, NULL);
	}
	strbuf_release(&msg);
}

static void pool_seed(struct reposvc_create *rc, const char *tmp_path, const Gitaly__Repository *tmp_repo)
{
	struct repl *r = reposvc_create_data(rc);
	Gitaly__GetSnapshotRequest req = GITALY__GET_SNAPSHOT_REQUEST__INIT;
	Gitaly__Repository src = GITALY__REPOSITORY__INIT;
	const char *argv[] = { "tar", "-C", tmp_path, "-xvf", "-", NULL };
	struct strbuf msg = STRBUF_INIT;

	r->rc = rc;
	r->got_msg = 0;
	r->cmd_started = 0;
	r->cmd_status = 0;
	src.storage_name = r->req->source->storage_name;
	src.relative_path = r->pool_rel;
	req.repository = &src;
	if (repl_feed_start(r, gitaly_out[OUT_GET_SNAPSHOT], &req, 0, argv, pool_fed) < 0) {
		strbuf_addf(&msg, "extracting snapshot: %s", r->call_msg.buf);
		reposvc_create_seeded(rc, GRPC_INTERNAL, msg.buf);
	}
	strbuf_release(&msg);
}

static void pool_created(struct reposvc_create *rc, enum grpc_code code, const char *msg)
{
	struct repl *r = reposvc_create_data(rc);
	Gitaly__ObjectPool pool = GITALY__OBJECT_POOL__INIT;
	struct strbuf path = STRBUF_INIT, m = STRBUF_INIT;

	r->rc = NULL;
	pool.repository = &r->pool_repo;
	if (code == GRPC_ALREADY_EXISTS) {
		/* another replication created it meanwhile: it must be a valid pool now */
		code = objpool_locate(r->op.g, &pool, 0, &path, &m);
		msg = m.buf;
	}
	if (code != GRPC_OK)
		repl_fail(r, code, POOL_ERR "replicate object pool: %s", msg);
	else
		link_target(r);
	strbuf_release(&path);
	strbuf_release(&m);
}

/* --- the source's answer --- */

static void disconnected(void *arg, enum grpc_code code, const char *msg)
{
	struct repl *r = arg;
	if (code != GRPC_OK) {
		repl_fail(r, code, POOL_ERR "disconnect target from object pool: %s", msg);
		return;
	}
	r->pool_next(r);
}

static void source_pool(struct repl *r)
{
	Gitaly__GetObjectPoolResponse *resp;
	Gitaly__ObjectPool pool = GITALY__OBJECT_POOL__INIT;
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct reposvc_create_opts opts = { 0 };
	enum grpc_code code;
	char *target_pool;

	if (r->call_code != GRPC_OK) {
		repl_fail(r, r->call_code, POOL_ERR "get source object pool: %s", r->call_msg.buf);
		return;
	}
	resp = gitaly__get_object_pool_response__unpack(NULL, r->buf.len, (const uint8_t *)r->buf.buf);
	if (!resp) {
		repl_fail(r, GRPC_INTERNAL, POOL_ERR "get source object pool: malformed response");
		return;
	}
	if (!resp->object_pool || !resp->object_pool->repository || !resp->object_pool->repository->relative_path ||
	    !*resp->object_pool->repository->relative_path) {
		gitaly__get_object_pool_response__free_unpacked(resp, NULL);
		/* the source has no pool: neither may the target */
		objpool_disconnect_start(&r->op, r->path, r->req->repository, &r->cmd, disconnected, r);
		return;
	}
	r->pool_rel = xstrdup(resp->object_pool->repository->relative_path);
	gitaly__get_object_pool_response__free_unpacked(resp, NULL);

	target_pool = objpool_of(r->op.g, r->req->repository, r->path);
	if (target_pool) {
		int same = !strcmp(target_pool, r->pool_rel);
		free(target_pool);
		if (!same)
			repl_fail(r, GRPC_FAILED_PRECONDITION, POOL_ERR "target repository links to different object pool");
		else
			r->pool_next(r);
		return;
	}
	r->pool_repo.storage_name = r->req->repository->storage_name;
	r->pool_repo.relative_path = r->pool_rel;
	pool.repository = &r->pool_repo;
	code = objpool_locate(r->op.g, &pool, OBJPOOL_MISSING_OK, &path, &msg);
	if (code == GRPC_OK) {
		r->pool_path = strbuf_detach(&path, NULL);
		link_target(r);
		goto out;
	}
	if (code != GRPC_NOT_FOUND) {
		repl_fail(r, code, POOL_ERR "get target object pool: %s", msg.buf);
		goto out;
	}
	/* the pool's path on this node, whether it exists yet or not */
	strbuf_reset(&path);
	strbuf_reset(&msg);
	if (gitaly_locate(r->op.g, &r->pool_repo, LOCATE_NO_EXIST_CHECK, &path, &msg) != GRPC_OK) {
		repl_fail(r, GRPC_INTERNAL, POOL_ERR "get target object pool: %s", msg.buf);
		goto out;
	}
	r->pool_path = strbuf_detach(&path, NULL);
	opts.seed = pool_seed;
	opts.done = pool_created;
	opts.data = r;
	code = reposvc_create_start(&r->op, &r->pool_repo, &opts, &r->rc, &msg);
	if (code == GRPC_ALREADY_EXISTS)   /* something in the way that is no valid repository */
		repl_fail(r, GRPC_FAILED_PRECONDITION,
			  POOL_ERR "get target object pool: object pool is not a valid git repository");
	else if (code != GRPC_OK)
		repl_fail(r, code, POOL_ERR "replicate object pool: %s", msg.buf);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
}

void repl_sync_pool(struct repl *r, void (*next)(struct repl *r))
{
	Gitaly__GetObjectPoolRequest req = GITALY__GET_OBJECT_POOL_REQUEST__INIT;
	r->pool_next = next;
	req.repository = r->req->source;
	if (repl_call_start(r, gitaly_out[OUT_GET_OBJECT_POOL], &req, 1, repl_collect_message, source_pool) < 0)
		repl_fail(r, GRPC_INTERNAL, POOL_ERR "%s", r->call_msg.buf);
}

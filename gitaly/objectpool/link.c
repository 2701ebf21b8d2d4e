/*
 * LinkRepositoryToObjectPool: point the member's objects/info/alternates at
 * the pool (a path relative to the member's objects/, so that a storage
 * may move), written as a voted locked file. A member already linked only
 * votes "repository linked"; one linked elsewhere is refused.
 */
#include "objectpool/pool.h"
#include "read/read.h"
#include "base/fs.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/banned.h"

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !strcmp(s + n - m, suffix);
}

/* Paths of objects/pack/pack-*.bitmap under `repo_path`; 1 if any. */
static int bitmaps(const char *repo_path, struct strvec *out)
{
	struct strbuf dir = STRBUF_INIT;
	struct dirent *de;
	DIR *d;
	int found = 0;

	strbuf_addf(&dir, "%s/objects/pack", repo_path);
	d = opendir(dir.buf);
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, "pack-", 5) || !ends_with(de->d_name, ".bitmap"))
			continue;
		found = 1;
		if (out)
			strvec_pushf(out, "%s/%s", dir.buf, de->d_name);
	}
	if (d)
		closedir(d);
	strbuf_release(&dir);
	return found;
}

/* A member's bitmap would hide the pool's objects from it: drop it when the pool has one. */
static void remove_member_bitmaps(const char *pool_path, const char *repo_path)
{
	struct strvec v = STRVEC_INIT;
	if (bitmaps(pool_path, NULL) && bitmaps(repo_path, &v))
		for (size_t i = 0; i < v.nr; i++)
			unlink(v.v[i]);
	strvec_clear(&v);
}

static void alternates_written(struct gitaly_call *op, enum grpc_code code, const char *msg)
{
	struct objpool_call *c = container_of(op, struct objpool_call, op);
	Gitaly__LinkRepositoryToObjectPoolResponse resp = GITALY__LINK_REPOSITORY_TO_OBJECT_POOL_RESPONSE__INIT;
	struct strbuf m = STRBUF_INIT;

	if (code != GRPC_OK) {
		strbuf_addf(&m, "committing alternates: %s", msg);
		objpool_end(c, code == GRPC_CANCELLED ? code : GRPC_INTERNAL, m.buf, NULL);
	} else {
		remove_member_bitmaps(c->pool_path, c->repo_path);
		objpool_end(c, GRPC_OK, NULL, &resp);
	}
	strbuf_release(&m);
}

static void linked_voted(void *arg, enum grpc_code code, const char *msg)
{
	struct objpool_call *c = arg;
	Gitaly__LinkRepositoryToObjectPoolResponse resp = GITALY__LINK_REPOSITORY_TO_OBJECT_POOL_RESPONSE__INIT;
	struct strbuf m = STRBUF_INIT;
	if (code != GRPC_OK)
		strbuf_addf(&m, "vote on linked repository: %s", msg);
	objpool_end(c, code == GRPC_OK ? code : GRPC_INTERNAL, m.buf, &resp);
	strbuf_release(&m);
}

int objpool_link_state(const char *repo_path, const char *pool_path, const char *expected, struct strbuf *msg)
{
	struct strbuf alt = STRBUF_INIT, p = STRBUF_INIT, clean = STRBUF_INIT, want = STRBUF_INIT;
	int rc = 0;

	strbuf_addf(&p, "%s/objects/info/alternates", repo_path);
	if (fs_read_file(p.buf, 1024 * 1024, &alt) < 0)
		goto out;        /* no alternates: not linked */
	strbuf_setlen(&alt, strcspn(alt.buf, "\n"));
	if (alt.buf[0] == '#')
		goto out;
	if (!strcmp(alt.buf, expected)) {
		rc = 1;
		goto out;
	}
	go_path_clean(&clean, alt.buf, alt.len);
	strbuf_addf(&want, "%s/objects", pool_path);
	if (strcmp(clean.buf, want.buf)) {
		strbuf_addf(msg, "unexpected alternates content: \"%s\"", alt.buf);
		rc = -1;
	}
out:
	strbuf_release(&alt);
	strbuf_release(&p);
	strbuf_release(&clean);
	strbuf_release(&want);
	return rc;
}

void objpool_link(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__LinkRepositoryToObjectPoolRequest *req =
		msg_unpack(call, &gitaly__link_repository_to_object_pool_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, pool = STRBUF_INIT, msg = STRBUF_INIT, line = STRBUF_INIT;
	struct objpool_call *c;
	enum grpc_code code;
	uint8_t vote[20];
	int state;

	if (!req)
		return;
	c = objpool_call_new(g, call, req);
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code == GRPC_OK)
		code = objpool_locate(g, req->object_pool, 0, &pool, &msg);
	if (code != GRPC_OK) {
		objpool_call_abort(c, code, msg.buf);
		goto out;
	}
	c->repo_path = strbuf_detach(&path, NULL);
	c->pool_path = strbuf_detach(&pool, NULL);
	objpool_alternate_line(c->repo_path, c->pool_path, &line);
	state = objpool_link_state(c->repo_path, c->pool_path, line.buf, &msg);
	if (state < 0) {
		objpool_call_abort(c, GRPC_INTERNAL, msg.buf);
		goto out;
	}
	objpool_call_watch(c);
	if (state == 1) {
		gitaly_sha1("repository linked", 17, vote);
		vote_cast(g, call, VOTE_PHASE_COMMITTED, vote, linked_voted, c);
		goto out;
	}
	strbuf_addf(&path, "%s/objects/info", c->repo_path);
	fs_mkdir_p(path.buf, 0755);
	strbuf_addstr(&path, "/alternates");
	if (reposvc_write_locked(&c->op, path.buf, line.buf, line.len, 0644, alternates_written, &msg) < 0)
		objpool_end(c, GRPC_INTERNAL, msg.buf, NULL);
out:
	strbuf_release(&path);
	strbuf_release(&pool);
	strbuf_release(&msg);
	strbuf_release(&line);
}

/*
 * ObjectPoolService: GetObjectPool. A repository belongs to a
 * pool when the first line of objects/info/alternates leads to a valid
 * repository in the same storage whose path is a pool path (Rails
 * "@pools/xx/yy/<64 hex>.git" or praefect "@cluster/pools/xx/yy/<id>").
 * Anything else, a broken alternates file included, is "no pool".
 */
#include "core/gitaly.h"
#include "read/read.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "objectpool.pb-c.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

static int hex_run(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!(isdigit((unsigned char)s[i]) || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* `s` ends with "@pools/ab/cd/<64 hex>.git" where the hash starts with "abcd". */
static int is_rails_pool(const char *s)
{
	size_t n = strlen(s), tail = 7 + 3 + 3 + 64 + 4;
	const char *p;
	if (n < tail)
		return 0;
	p = s + n - tail;
	return !strncmp(p, "@pools/", 7) && hex_run(p + 7, 2) && p[9] == '/' && hex_run(p + 10, 2) &&
	       p[12] == '/' && hex_run(p + 13, 64) && !strcmp(p + 77, ".git") && !memcmp(p + 13, p + 7, 2) &&
	       !memcmp(p + 15, p + 10, 2);
}

/* `s` ends with "@cluster/pools/ab/cd/<digits>". */
static int is_praefect_pool(const char *s)
{
	const char *p = strstr(s, "@cluster/pools/");
	while (p) {
		const char *q = p + 15;
		size_t digits;
		if (hex_run(q, 2) && q[2] == '/' && hex_run(q + 3, 2) && q[5] == '/') {
			digits = strspn(q + 6, "0123456789");
			if (digits && q[6 + digits] == '\0')
				return 1;
		}
		p = strstr(p + 1, "@cluster/pools/");
	}
	return 0;
}

/* The pool's relative path, or NULL when the repository has none. */
static char *pool_of(struct gitaly *g, const Gitaly__Repository *repo, const char *repo_path)
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
	if (!is_rails_pool(pool.relative_path) && !is_praefect_pool(pool.relative_path)) {
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

static void get_object_pool(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__GetObjectPoolRequest *req = msg_unpack(call, &gitaly__get_object_pool_request__descriptor, buf, len);
	Gitaly__GetObjectPoolResponse resp = GITALY__GET_OBJECT_POOL_RESPONSE__INIT;
	Gitaly__ObjectPool pool = GITALY__OBJECT_POOL__INIT;
	Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	enum grpc_code code;
	char *rel;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	rel = pool_of(g, req->repository, path.buf);
	if (rel) {
		repo.storage_name = req->repository->storage_name;
		repo.relative_path = rel;
		pool.repository = &repo;
		resp.object_pool = &pool;
	}
	msg_reply(call, &resp);
	free(rel);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	msg_free(req);
}

void gitaly_register_objectpool(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.ObjectPoolService/GetObjectPool", get_object_pool, g);
}

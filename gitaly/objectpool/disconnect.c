/*
 * DisconnectGitAlternates: make a member self-contained again. Every file of
 * the alternate object directory (its info/ aside) is hard-linked into the
 * member's objects/, packs before their indexes so that git never sees an
 * index without its pack; then the alternates file is moved aside and `git
 * rev-list --objects --all` must succeed without it, or the file comes back.
 * Four votes, upstream's: "migrate objects" and "disconnect alternate",
 * each prepared then committed ("no alternates" alone when nothing is linked).
 */
#include "objectpool/pool.h"
#include "base/fs.h"
#include "base/util.h"
#include "read/read.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "base/banned.h"

static void fail(struct objpool_call *c, const char *fmt, const char *why)
{
	struct strbuf m = STRBUF_INIT;
	strbuf_addf(&m, fmt, why);
	objpool_end(c, GRPC_INTERNAL, m.buf, NULL);
	strbuf_release(&m);
}

static void voted_ok(void *arg, enum grpc_code code, const char *msg)
{
	struct objpool_call *c = arg;
	Gitaly__DisconnectGitAlternatesResponse resp = GITALY__DISCONNECT_GIT_ALTERNATES_RESPONSE__INIT;
	if (code != GRPC_OK)
		fail(c, "%s", msg);
	else
		objpool_end(c, GRPC_OK, NULL, &resp);
}

static void vote_str(struct objpool_call *c, const char *what, enum vote_phase phase, vote_done_fn done)
{
	uint8_t h[20];
	gitaly_sha1(what, strlen(what), h);
	vote_cast(c->op.g, c->op.call, phase, h, done, c);
}

static void alternates_path(struct objpool_call *c, struct strbuf *out)
{
	strbuf_addf(out, "%s/objects/info/alternates", c->repo_path);
}

/* Put the alternates file back from its backup (c->aux), keeping the backup. */
static void rollback(struct objpool_call *c)
{
	struct strbuf alt = STRBUF_INIT, tmp = STRBUF_INIT;
	alternates_path(c, &alt);
	strbuf_addf(&tmp, "%s.2", c->aux.buf);
	if (link(c->aux.buf, tmp.buf) == 0)
		rename(tmp.buf, alt.buf);
	strbuf_release(&alt);
	strbuf_release(&tmp);
}

static void disconnect_committed(void *arg, enum grpc_code code, const char *msg)
{
	struct objpool_call *c = arg;
	Gitaly__DisconnectGitAlternatesResponse resp = GITALY__DISCONNECT_GIT_ALTERNATES_RESPONSE__INIT;
	if (code != GRPC_OK) {
		rollback(c);
		fail(c, "committing vote for disconnecting alternate: %s", msg);
		return;
	}
	objpool_end(c, GRPC_OK, NULL, &resp);
}

static void rev_list_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct objpool_call *c = arg;
	struct strbuf m = STRBUF_INIT;

	c->cmd = NULL;
	if (status != 0 || gitaly_call_gone(&c->op)) {
		rollback(c);
		gitaly_describe_status(&m, status);
		fail(c, "git connectivity error while disconnected: %s", m.buf);
		strbuf_release(&m);
		return;
	}
	vote_str(c, "disconnect alternate", VOTE_PHASE_COMMITTED, disconnect_committed);
}

static void disconnect_prepared(void *arg, enum grpc_code code, const char *msg)
{
	static const char *const flags[] = { "--objects", "--all", "--quiet", NULL };
	struct objpool_call *c = arg;
	struct strbuf alt = STRBUF_INIT, m = STRBUF_INIT;
	struct git_call gc = { 0 };
	uint8_t rnd[6];
	char hex[13];

	if (code != GRPC_OK) {
		fail(c, "preparatory vote for disconnecting alternate: %s", msg);
		return;
	}
	if (gitaly_call_gone(&c->op)) {
		objpool_end(c, GRPC_CANCELLED, "context canceled", NULL);
		return;
	}
	alternates_path(c, &alt);
	for (size_t i = 0; i < sizeof(rnd); i++)
		rnd[i] = (uint8_t)random();
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
	strbuf_reset(&c->aux);
	strbuf_addf(&c->aux, "%s.%lld.%s", alt.buf, (long long)time(NULL), hex);
	if (rename(alt.buf, c->aux.buf) < 0) {
		fail(c, "%s", strerror(errno));
		goto out;
	}
	gc.git_dir = c->repo_path;
	gc.repo = c->repo;
	gc.subcmd = "rev-list";
	gc.flags = flags;
	if (gitaly_git_capture(c->op.g, &gc, NULL, 0, 64 * 1024, rev_list_done, c, &c->cmd, &m) < 0) {
		rollback(c);
		fail(c, "%s", m.buf);
	}
out:
	strbuf_release(&alt);
	strbuf_release(&m);
}

static void migrate_committed(void *arg, enum grpc_code code, const char *msg)
{
	struct objpool_call *c = arg;
	if (code != GRPC_OK) {
		fail(c, "committed vote for migrating objects: %s", msg);
		return;
	}
	vote_str(c, "disconnect alternate", VOTE_PHASE_PREPARED, disconnect_prepared);
}

/* Sort key of an object file: loose objects, then keep, pack, idx, the rest (upstream's order). */
static int priority(const char *name)
{
	size_t n = strlen(name);
	if (strncmp(name, "pack", 4))
		return 0;
	if (n >= 5 && !strcmp(name + n - 5, ".keep"))
		return 1;
	if (n >= 5 && !strcmp(name + n - 5, ".pack"))
		return 2;
	if (n >= 4 && !strcmp(name + n - 4, ".idx"))
		return 3;
	return 4;
}

static int by_priority(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	int px = priority(x), py = priority(y);
	return px != py ? px - py : strcmp(x, y);
}

/* Files under `root`/`rel`, relative to `root`, info/ left out. 0 or -errno. */
static int walk(const char *root, const char *rel, struct strvec *out)
{
	struct strbuf dir = STRBUF_INIT, sub = STRBUF_INIT;
	struct dirent *de;
	struct stat st;
	DIR *d;
	int rc = 0;

	strbuf_addf(&dir, "%s%s%s", root, *rel ? "/" : "", rel);
	d = opendir(dir.buf);
	if (!d) {
		rc = -errno;
		goto out;
	}
	while (!rc && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		strbuf_reset(&sub);
		strbuf_addf(&sub, "%s%s%s", rel, *rel ? "/" : "", de->d_name);
		if (!strcmp(sub.buf, "info"))
			continue;
		strbuf_reset(&dir);
		strbuf_addf(&dir, "%s/%s", root, sub.buf);
		if (lstat(dir.buf, &st) < 0)
			rc = -errno;
		else if (S_ISDIR(st.st_mode))
			rc = walk(root, sub.buf, out);
		else
			strvec_push(out, sub.buf);
	}
	closedir(d);
out:
	strbuf_release(&dir);
	strbuf_release(&sub);
	return rc;
}

/* Thread pool: hard-link the alternate's files (c->aux holds its directory). */
static void migrate(uv_work_t *w)
{
	struct objpool_call *c = w->data;
	struct strvec files = STRVEC_INIT;
	struct strbuf src = STRBUF_INIT, dst = STRBUF_INIT;
	int rc = walk(c->aux.buf, "", &files);

	if (!rc)
		qsort(files.v, files.nr, sizeof(*files.v), by_priority);
	for (size_t i = 0; !rc && i < files.nr; i++) {
		char *slash;
		strbuf_reset(&src);
		strbuf_reset(&dst);
		strbuf_addf(&src, "%s/%s", c->aux.buf, files.v[i]);
		strbuf_addf(&dst, "%s/objects/%s", c->repo_path, files.v[i]);
		slash = strrchr(dst.buf, '/');
		*slash = '\0';
		rc = fs_mkdir_p(dst.buf, 0755);
		*slash = '/';
		if (rc < 0)
			break;
		if (link(src.buf, dst.buf) < 0 && errno != EEXIST)
			rc = -errno;
	}
	c->work_rc = rc;
	strvec_clear(&files);
	strbuf_release(&src);
	strbuf_release(&dst);
}

static void migrated(uv_work_t *w, int status)
{
	struct objpool_call *c = w->data;
	if (c->work_rc < 0) {
		fail(c, "%s", strerror(-c->work_rc));
		return;
	}
	vote_str(c, "migrate objects", VOTE_PHASE_COMMITTED, migrate_committed);
}

static void migrate_prepared(void *arg, enum grpc_code code, const char *msg)
{
	struct objpool_call *c = arg;
	struct stat st;

	if (code != GRPC_OK) {
		fail(c, "preparatory vote for migrating objects: %s", msg);
		return;
	}
	if (gitaly_call_gone(&c->op)) {
		objpool_end(c, GRPC_CANCELLED, "context canceled", NULL);
		return;
	}
	if (c->work_rc > 1) {
		fail(c, "%s", "multiple alternate object directories");
		return;
	}
	if (stat(c->aux.buf, &st) < 0) {
		fail(c, "%s", strerror(errno));
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		fail(c, "%s", "alternate object entry is not a directory");
		return;
	}
	c->work_rc = 0;
	if (uv_queue_work(c->op.g->loop, &c->work, migrate, migrated) < 0)
		fail(c, "%s", "cannot queue the object migration");
}

/* The object directories the alternates file names (absolute): their count, the first in c->aux. */
static int alternate_dirs(struct objpool_call *c)
{
	struct strbuf alt = STRBUF_INIT, p = STRBUF_INIT, joined = STRBUF_INIT;
	const char *line, *end;
	int n = 0;

	alternates_path(c, &p);
	if (fs_read_file(p.buf, 1024 * 1024, &alt) < 0)
		goto out;
	for (line = alt.buf; *line; line = *end ? end + 1 : end) {
		size_t len;
		end = strchrnul(line, '\n');
		len = (size_t)(end - line);
		if (!len || line[0] == '#')
			continue;
		if (n++)
			continue;
		strbuf_reset(&joined);
		if (line[0] == '/')
			strbuf_add(&joined, line, len);
		else
			strbuf_addf(&joined, "%s/objects/%.*s", c->repo_path, (int)len, line);
		go_path_clean(&c->aux, joined.buf, joined.len);
	}
out:
	strbuf_release(&alt);
	strbuf_release(&p);
	strbuf_release(&joined);
	return n;
}

void objpool_disconnect(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__DisconnectGitAlternatesRequest *req =
		msg_unpack(call, &gitaly__disconnect_git_alternates_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct objpool_call *c;
	enum grpc_code code;

	if (!req)
		return;
	c = objpool_call_new(g, call, req);
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		objpool_call_abort(c, code, msg.buf);
		goto out;
	}
	c->repo_path = strbuf_detach(&path, NULL);
	c->repo = req->repository;
	objpool_call_watch(c);
	c->work_rc = alternate_dirs(c);
	if (!c->work_rc)
		vote_str(c, "no alternates", VOTE_PHASE_COMMITTED, voted_ok);
	else
		vote_str(c, "migrate objects", VOTE_PHASE_PREPARED, migrate_prepared);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
}

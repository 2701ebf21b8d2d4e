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
#include "git/objfiles.h"
#include "read/read.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "base/banned.h"

struct disc {
	struct gitaly_call *op;
	const char *repo_path;
	const Gitaly__Repository *repo;
	struct git_cmd **cmd;
	uv_work_t work;
	int work_rc;
	struct strbuf alt_dir, backup;
	objpool_disconnected_fn done;
	void *arg;
};

static void disc_end(struct disc *d, enum grpc_code code, const char *fmt, const char *why)
{
	struct strbuf m = STRBUF_INIT;
	objpool_disconnected_fn done = d->done;
	void *arg = d->arg;
	if (gitaly_call_gone(d->op))
		code = GRPC_CANCELLED;
	if (fmt)
		strbuf_addf(&m, fmt, why);
	strbuf_release(&d->alt_dir);
	strbuf_release(&d->backup);
	free(d);
	done(arg, code, m.buf);
	strbuf_release(&m);
}

static void fail(struct disc *d, const char *fmt, const char *why)
{
	disc_end(d, GRPC_INTERNAL, fmt, why);
}

static void vote_str(struct disc *d, const char *what, enum vote_phase phase, vote_done_fn done)
{
	uint8_t h[20];
	if (gitaly_call_gone(d->op)) {
		done(d, GRPC_CANCELLED, "context canceled");
		return;
	}
	gitaly_sha1(what, strlen(what), h);
	vote_cast(d->op->g, d->op->call, phase, h, done, d);
}

static void alternates_path(struct disc *d, struct strbuf *out)
{
	strbuf_addf(out, "%s/objects/info/alternates", d->repo_path);
}

/* Put the alternates file back from its backup, keeping the backup. */
static void rollback(struct disc *d)
{
	struct strbuf alt = STRBUF_INIT, tmp = STRBUF_INIT;
	alternates_path(d, &alt);
	strbuf_addf(&tmp, "%s.2", d->backup.buf);
	if (link(d->backup.buf, tmp.buf) == 0)
		rename(tmp.buf, alt.buf);
	strbuf_release(&alt);
	strbuf_release(&tmp);
}

static void voted_ok(void *arg, enum grpc_code code, const char *msg)
{
	struct disc *d = arg;
	if (code != GRPC_OK)
		fail(d, "vote on missing alternates: %s", msg);
	else
		disc_end(d, GRPC_OK, NULL, NULL);
}

static void disconnect_committed(void *arg, enum grpc_code code, const char *msg)
{
	struct disc *d = arg;
	if (code != GRPC_OK) {
		rollback(d);
		fail(d, "committing vote for disconnecting alternate: %s", msg);
		return;
	}
	disc_end(d, GRPC_OK, NULL, NULL);
}

static void rev_list_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct disc *d = arg;
	struct strbuf m = STRBUF_INIT;

	*d->cmd = NULL;
	if (status != 0 || gitaly_call_gone(d->op)) {
		rollback(d);
		gitaly_describe_status(&m, status);
		fail(d, "git connectivity error while disconnected: %s", m.buf);
		strbuf_release(&m);
		return;
	}
	vote_str(d, "disconnect alternate", VOTE_PHASE_COMMITTED, disconnect_committed);
}

static void disconnect_prepared(void *arg, enum grpc_code code, const char *msg)
{
	static const char *const flags[] = { "--objects", "--all", "--quiet", NULL };
	struct disc *d = arg;
	struct strbuf alt = STRBUF_INIT, m = STRBUF_INIT;
	struct git_call gc = { 0 };
	char hex[13];

	if (code != GRPC_OK) {
		fail(d, "preparatory vote for disconnecting alternate: %s", msg);
		return;
	}
	alternates_path(d, &alt);
	for (size_t i = 0; i < 6; i++)
		snprintf(hex + 2 * i, 3, "%02x", (unsigned)(random() & 0xff));
	strbuf_addf(&d->backup, "%s.%lld.%s", alt.buf, (long long)time(NULL), hex);
	if (rename(alt.buf, d->backup.buf) < 0) {
		fail(d, "%s", strerror(errno));
		goto out;
	}
	gc.git_dir = d->repo_path;
	gc.repo = d->repo;
	gc.subcmd = "rev-list";
	gc.flags = flags;
	if (gitaly_git_capture(d->op->g, &gc, NULL, 0, 64 * 1024, rev_list_done, d, d->cmd, &m) < 0) {
		rollback(d);
		fail(d, "%s", m.buf);
	}
out:
	strbuf_release(&alt);
	strbuf_release(&m);
}

static void migrate_committed(void *arg, enum grpc_code code, const char *msg)
{
	struct disc *d = arg;
	if (code != GRPC_OK) {
		fail(d, "committed vote for migrating objects: %s", msg);
		return;
	}
	vote_str(d, "disconnect alternate", VOTE_PHASE_PREPARED, disconnect_prepared);
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

/* Thread pool: hard-link the alternate's files into the repository. */
static void migrate(uv_work_t *w)
{
	struct disc *d = w->data;
	struct strvec files = STRVEC_INIT;
	struct strbuf src = STRBUF_INIT, dst = STRBUF_INIT;
	int rc = walk(d->alt_dir.buf, "", &files);

	if (!rc)
		git_objfiles_sort(files.v, files.nr);
	for (size_t i = 0; !rc && i < files.nr; i++) {
		char *slash;
		strbuf_reset(&src);
		strbuf_reset(&dst);
		strbuf_addf(&src, "%s/%s", d->alt_dir.buf, files.v[i]);
		strbuf_addf(&dst, "%s/objects/%s", d->repo_path, files.v[i]);
		slash = strrchr(dst.buf, '/');
		*slash = '\0';
		rc = fs_mkdir_p(dst.buf, 0755);
		*slash = '/';
		if (rc < 0)
			break;
		if (link(src.buf, dst.buf) < 0 && errno != EEXIST)
			rc = -errno;
	}
	d->work_rc = rc;
	strvec_clear(&files);
	strbuf_release(&src);
	strbuf_release(&dst);
}

static void migrated(uv_work_t *w, int status)
{
	struct disc *d = w->data;
	if (d->work_rc < 0) {
		fail(d, "%s", strerror(-d->work_rc));
		return;
	}
	vote_str(d, "migrate objects", VOTE_PHASE_COMMITTED, migrate_committed);
}

static void migrate_prepared(void *arg, enum grpc_code code, const char *msg)
{
	struct disc *d = arg;
	struct stat st;

	if (code != GRPC_OK) {
		fail(d, "preparatory vote for migrating objects: %s", msg);
		return;
	}
	if (d->work_rc > 1) {
		fail(d, "%s", "multiple alternate object directories");
		return;
	}
	if (stat(d->alt_dir.buf, &st) < 0) {
		fail(d, "%s", strerror(errno));
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		fail(d, "%s", "alternate object entry is not a directory");
		return;
	}
	d->work_rc = 0;
	if (uv_queue_work(d->op->g->loop, &d->work, migrate, migrated) < 0)
		fail(d, "%s", "cannot queue the object migration");
}

/* The object directories the alternates file names: their count, the first (absolute) in d->alt_dir. */
static int alternate_dirs(struct disc *d)
{
	struct strbuf alt = STRBUF_INIT, p = STRBUF_INIT, joined = STRBUF_INIT;
	const char *line, *end;
	int n = 0;

	alternates_path(d, &p);
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
		if (line[0] == '/')
			strbuf_add(&joined, line, len);
		else
			strbuf_addf(&joined, "%s/objects/%.*s", d->repo_path, (int)len, line);
		go_path_clean(&d->alt_dir, joined.buf, joined.len);
	}
out:
	strbuf_release(&alt);
	strbuf_release(&p);
	strbuf_release(&joined);
	return n;
}

void objpool_disconnect_start(struct gitaly_call *op, const char *repo_path, const Gitaly__Repository *repo,
			      struct git_cmd **cmd, objpool_disconnected_fn done, void *arg)
{
	struct disc *d = xcalloc(1, sizeof(*d));
	d->op = op;
	d->repo_path = repo_path;
	d->repo = repo;
	d->cmd = cmd;
	d->done = done;
	d->arg = arg;
	d->work.data = d;
	strbuf_init(&d->alt_dir, 0);
	strbuf_init(&d->backup, 0);
	d->work_rc = alternate_dirs(d);
	if (!d->work_rc)
		vote_str(d, "no alternates", VOTE_PHASE_COMMITTED, voted_ok);
	else
		vote_str(d, "migrate objects", VOTE_PHASE_PREPARED, migrate_prepared);
}

static void disconnected(void *arg, enum grpc_code code, const char *msg)
{
	struct objpool_call *c = arg;
	Gitaly__DisconnectGitAlternatesResponse resp = GITALY__DISCONNECT_GIT_ALTERNATES_RESPONSE__INIT;
	objpool_end(c, code, msg, &resp);
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
	objpool_disconnect_start(&c->op, c->repo_path, c->repo, &c->cmd, disconnected, c);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
}

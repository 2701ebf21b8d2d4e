/*
 * FetchRemote: fetch a remote given by URL into the repository, atomically
 * and with votes (docs/technical/remotes.md, "FetchRemote").
 *
 * The fetch runs in a scratch repository: a copy of the repository's refs
 * whose object directory is a quarantine, with the repository's objects as
 * alternates. Comparing the scratch refs before and after tells which
 * references the fetch would prune and update. The repository then gets
 * them in two `git update-ref` transactions, each voted on by the
 * reference-transaction hook: the prunes first (so that pruning resolves
 * file/directory conflicts), then the quarantined objects move in, then the
 * updates. Nothing reaches the repository before that, and a diverged ref
 * the fetch refused stays as it is while the others move on.
 */
#include "repository/repository.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

#define FR_REFS_CAP (256 * 1024 * 1024)   /* for-each-ref output of a huge repository */
#define FR_ERR_CAP (64 * 1024)

struct fetch_remote {
	struct gitaly_call op;
	Gitaly__FetchRemoteRequest *req;
	char *path;                       /* the repository */
	struct strbuf scratch;            /* the scratch repository, removed at release */
	struct strbuf alternates;         /* GIT_ALTERNATE_OBJECT_DIRECTORIES=... for the scratch */
	struct reposvc_remote remote;
	struct cleanup_writer *writer;
	struct git_cmd *cmd;
	size_t hexlen;
	struct strbuf before;             /* for-each-ref of the repository */
	struct strbuf updates;            /* update-ref -z input: the updates */
	int tags_changed;
	uint8_t refs_hash[20];            /* the vote when nothing changed */
	int voted_prepared;
	uv_timer_t timer;
	int timer_open, timed_out;
};

static void fr_release(struct gitaly_call *op)
{
	struct fetch_remote *x = container_of(op, struct fetch_remote, op);
	if (x->scratch.len)
		fs_remove_tree(x->scratch.buf);
	cleanup_writer_leave(x->writer);
	msg_free(x->req);
	free(x->path);
	strbuf_release(&x->scratch);
	strbuf_release(&x->alternates);
	reposvc_remote_release(&x->remote);
	strbuf_release(&x->before);
	strbuf_release(&x->updates);
	free(x);
}

static void fr_cancel(struct gitaly_call *op)
{
	reposvc_kill(container_of(op, struct fetch_remote, op)->cmd);
}

static void timer_closed(uv_handle_t *h)
{
	struct fetch_remote *x = h->data;
	gitaly_call_drop(&x->op);
}

static void timer_stop(struct fetch_remote *x)
{
	if (!x->timer_open)
		return;
	x->timer_open = 0;
	uv_close((uv_handle_t *)&x->timer, timer_closed);
}

static void fr_finish(struct fetch_remote *x, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Every message that may quote git passes the redaction. */
static void fr_finish(struct fetch_remote *x, enum grpc_code code, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	reposvc_remote_redact(&x->remote, &sb);
	timer_stop(x);
	reposvc_finish(&x->op, code, sb.buf);
	strbuf_release(&sb);
}

static int fr_gone(struct fetch_remote *x)
{
	if (!gitaly_call_gone(&x->op))
		return 0;
	timer_stop(x);
	reposvc_finish(&x->op, GRPC_CANCELLED, "context canceled");
	return 1;
}

static void fr_run(struct fetch_remote *x, struct git_call *gc, const char *in, size_t inlen, git_capture_fn done)
{
	struct strbuf msg = STRBUF_INIT;
	gc->rpc = x->op.call;
	if (gitaly_git_capture(x->op.g, gc, in ? in : "", inlen, FR_REFS_CAP, done, x, &x->cmd, &msg) < 0)
		fr_finish(x, GRPC_INTERNAL, "%s", msg.buf);
	strbuf_release(&msg);
}

/* git's complaint without "fatal: "/"error: " and the trailing newline. */
static void git_error(struct strbuf *out, const struct strbuf *err, int status)
{
	const char *e = err->buf;
	size_t n = err->len;
	if (!n) {
		gitaly_describe_status(out, status);
		return;
	}
	if (!strncmp(e, "fatal: ", 7) || !strncmp(e, "error: ", 7)) {
		e += 7;
		n -= 7;
	}
	while (n && (e[n - 1] == '\n' || e[n - 1] == '\r'))
		n--;
	strbuf_add(out, e, MIN(n, (size_t)FR_ERR_CAP));
}

/* --- step 6: the updates, with the objects moved in first --- */

static void updates_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct fetch_remote *x = arg;
	Gitaly__FetchRemoteResponse resp = GITALY__FETCH_REMOTE_RESPONSE__INIT;
	struct strbuf m = STRBUF_INIT;

	(void)out;
	x->cmd = NULL;
	if (fr_gone(x))
		return;
	if (status != 0) {
		git_error(&m, err, status);
		fr_finish(x, strstr(err->buf, "transaction") ? GRPC_ABORTED : GRPC_INTERNAL,
			  "preparing reference update: %s", m.buf);
		strbuf_release(&m);
		return;
	}
	/* without check_tags_changed upstream answers true: "maybe" */
	resp.tags_changed = x->req->check_tags_changed ? x->tags_changed : 1;
	timer_stop(x);
	reposvc_reply(&x->op, &resp);
}

static void start_updates(struct fetch_remote *x)
{
	static const char *const flags[] = { "-z", "--stdin", NULL };
	struct strbuf src = STRBUF_INIT, dst = STRBUF_INIT, err = STRBUF_INIT;
	struct git_call gc = { 0 };
	const Gitaly__Repository *r = x->req->repository;

	strbuf_addf(&src, "%s/objects", x->scratch.buf);
	strbuf_addf(&dst, "%s/%s", x->path,
		    r->git_object_directory && *r->git_object_directory ? r->git_object_directory : "objects");
	if (gitaly_migrate_objects(src.buf, dst.buf, &err) < 0) {
		fr_finish(x, GRPC_INTERNAL, "migrating quarantined objects: %s", err.buf);
		goto out;
	}
	gc.git_dir = x->path;
	gc.repo = r;
	gc.subcmd = "update-ref";
	gc.flags = flags;
	gc.hooks = HOOK_REFERENCE_TRANSACTION;
	fr_run(x, &gc, x->updates.buf, x->updates.len, updates_done);
out:
	strbuf_release(&src);
	strbuf_release(&dst);
	strbuf_release(&err);
}

/* --- step 5: the prunes, in a transaction of their own --- */

static void prunes_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct fetch_remote *x = arg;
	struct strbuf m = STRBUF_INIT;

	(void)out;
	x->cmd = NULL;
	if (fr_gone(x))
		return;
	if (status != 0) {
		git_error(&m, err, status);
		fr_finish(x, strstr(err->buf, "transaction") ? GRPC_ABORTED : GRPC_INTERNAL,
			  "preparing reference prune: %s", m.buf);
		strbuf_release(&m);
		return;
	}
	start_updates(x);
}

/* --- step 5b: nothing to change, and still a vote --- */

/*
 * With no reference to prune or update there is no transaction for the hook
 * to vote on, and praefect would count the replicas that fetched nothing as
 * outdated. So they vote on the references they now hold, PREPARED then
 * COMMITTED, as upstream's non-atomic fetch does.
 */
static void vote_done(void *arg, enum grpc_code code, const char *msg)
{
	struct fetch_remote *x = arg;
	Gitaly__FetchRemoteResponse resp = GITALY__FETCH_REMOTE_RESPONSE__INIT;

	if (gitaly_call_drop(&x->op) || fr_gone(x))
		return;
	if (code != GRPC_OK) {
		fr_finish(x, GRPC_ABORTED, "failed vote on refs: %s", msg ? msg : "");
		return;
	}
	if (!x->voted_prepared) {
		x->voted_prepared = 1;
		gitaly_call_hold(&x->op);
		vote_cast(x->op.g, x->op.call, VOTE_PHASE_COMMITTED, x->refs_hash, vote_done, x);
		return;
	}
	resp.tags_changed = x->req->check_tags_changed ? 0 : 1;
	timer_stop(x);
	reposvc_reply(&x->op, &resp);
}

/* --- step 4: what the fetch changed in the scratch refs --- */

struct ref_line {
	const char *oid, *name, *symref;
	size_t oidlen, namelen;
};

/* One "<oid> <name> [<symref target>]" line of for-each-ref; 0 at the end. */
static int next_ref(const char **p, const char *end, struct ref_line *l)
{
	while (*p < end) {
		const char *nl = memchr(*p, '\n', (size_t)(end - *p));
		const char *s = *p, *e = nl ? nl : end, *sp1, *sp2;
		*p = nl ? nl + 1 : end;
		sp1 = memchr(s, ' ', (size_t)(e - s));
		if (!sp1)
			continue;
		sp2 = memchr(sp1 + 1, ' ', (size_t)(e - sp1 - 1));
		l->oid = s;
		l->oidlen = (size_t)(sp1 - s);
		l->name = sp1 + 1;
		l->namelen = (size_t)((sp2 ? sp2 : e) - l->name);
		l->symref = sp2 && sp2 + 1 < e ? sp2 + 1 : NULL;
		return 1;
	}
	return 0;
}

static int cmp_name(const struct ref_line *a, const struct ref_line *b)
{
	size_t n = MIN(a->namelen, b->namelen);
	int c = memcmp(a->name, b->name, n);
	return c ? c : a->namelen < b->namelen ? -1 : a->namelen > b->namelen;
}

static int is_tag(const struct ref_line *l)
{
	return l->namelen > 10 && !memcmp(l->name, "refs/tags/", 10);
}

static void add_cmd(struct strbuf *in, const char *verb, const struct ref_line *l, const char *new_oid, size_t newlen,
		    const char *old_oid, size_t oldlen)
{
	strbuf_addf(in, "%s ", verb);
	strbuf_add(in, l->name, l->namelen);
	strbuf_addch(in, '\0');
	if (new_oid) {
		strbuf_add(in, new_oid, newlen);
		strbuf_addch(in, '\0');
	}
	strbuf_add(in, old_oid, oldlen);
	strbuf_addch(in, '\0');
}

static void after_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char zeros[] = "0000000000000000000000000000000000000000000000000000000000000000";
	static const char *const flags[] = { "-z", "--stdin", NULL };
	struct fetch_remote *x = arg;
	const char *a = x->before.buf, *ae = a + x->before.len, *b = out->buf, *be = b + out->len;
	struct ref_line la, lb;
	int ha, hb;
	struct strbuf prunes = STRBUF_INIT;
	struct git_call gc = { 0 };

	x->cmd = NULL;
	if (fr_gone(x))
		return;
	if (status != 0) {
		struct strbuf m = STRBUF_INIT;
		git_error(&m, err, status);
		fr_finish(x, GRPC_INTERNAL, "scanning fetch output: %s", m.buf);
		strbuf_release(&m);
		return;
	}
	/* both lists are sorted by name (for-each-ref's order, which we wrote the scratch refs in) */
	ha = next_ref(&a, ae, &la);
	hb = next_ref(&b, be, &lb);
	while (ha || hb) {
		int c = !ha ? 1 : !hb ? -1 : cmp_name(&la, &lb);
		if (c < 0) {
			if (!la.symref)   /* pruned */
				add_cmd(&prunes, "delete", &la, NULL, 0, la.oid, la.oidlen);
			ha = next_ref(&a, ae, &la);
		} else if (c > 0) {
			if (!lb.symref) { /* new */
				add_cmd(&x->updates, "update", &lb, lb.oid, lb.oidlen, zeros, x->hexlen);
				x->tags_changed |= is_tag(&lb);
			}
			hb = next_ref(&b, be, &lb);
		} else {
			if (!la.symref && !lb.symref &&
			    (la.oidlen != lb.oidlen || memcmp(la.oid, lb.oid, la.oidlen))) {
				add_cmd(&x->updates, "update", &lb, lb.oid, lb.oidlen, la.oid, la.oidlen);
				x->tags_changed |= is_tag(&lb);
			}
			ha = next_ref(&a, ae, &la);
			hb = next_ref(&b, be, &lb);
		}
	}
	if (!prunes.len && !x->updates.len) {
		gitaly_sha1(out->buf, out->len, x->refs_hash);
		gitaly_call_hold(&x->op);
		vote_cast(x->op.g, x->op.call, VOTE_PHASE_PREPARED, x->refs_hash, vote_done, x);
		strbuf_release(&prunes);
		return;
	}
	if (!prunes.len) {
		start_updates(x);
		strbuf_release(&prunes);
		return;
	}
	gc.git_dir = x->path;
	gc.repo = x->req->repository;
	gc.subcmd = "update-ref";
	gc.flags = flags;
	gc.hooks = HOOK_REFERENCE_TRANSACTION;
	fr_run(x, &gc, prunes.buf, prunes.len, prunes_done);
	strbuf_release(&prunes);
}

/* --- step 3: the fetch, into the scratch repository --- */

static const char *const refs_format[] = { "--format=%(objectname) %(refname) %(symref)", NULL };

static void fetch_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct fetch_remote *x = arg;
	const char *env[] = { x->alternates.buf, NULL };
	struct git_call gc = { 0 };
	struct strbuf text = STRBUF_INIT;

	(void)out;
	x->cmd = NULL;
	if (fr_gone(x))
		return;
	if (x->timed_out) {
		fr_finish(x, GRPC_INTERNAL, "fetch remote: signal: terminated: context deadline exceeded");
		return;
	}
	timer_stop(x);
	/*
	 * Exit 1 with nothing said (--quiet) is git refusing some updates
	 * (diverged refs without force): the others still apply, as upstream's
	 * atomic fetch does. Anything else is a failure.
	 */
	if (status != 0 && (err->len || status != 1)) {
		struct strbuf m = STRBUF_INIT;
		struct log_entry e;
		strbuf_add(&text, err->buf, MIN(err->len, (size_t)FR_ERR_CAP));
		reposvc_remote_redact(&x->remote, &text);
		if (log_begin(&e, LOG_WARN, "fetch remote failed")) {
			log_strn(&e, "stderr", text.buf, text.len);
			log_end(&e);
		}
		if (text.len) {
			strbuf_add_json_string(&m, text.buf, text.len);
			strbuf_addstr(&m, ": ");
		}
		gitaly_describe_status(&m, status);
		fr_finish(x, GRPC_INTERNAL, "fetch remote: %s", m.buf);
		strbuf_release(&m);
		strbuf_release(&text);
		return;
	}
	gc.git_dir = x->scratch.buf;
	gc.subcmd = "for-each-ref";
	gc.flags = refs_format;
	gc.env = env;
	fr_run(x, &gc, NULL, 0, after_done);
}

static void on_timeout(uv_timer_t *t)
{
	struct fetch_remote *x = t->data;
	x->timed_out = 1;
	reposvc_kill(x->cmd);
}

static void start_fetch(struct fetch_remote *x)
{
	const Gitaly__FetchRemoteRequest *req = x->req;
	struct strvec flags = STRVEC_INIT, env = STRVEC_INIT;
	static const char *const args[] = { "inmemory", NULL };
	struct git_call gc = { 0 };

	reposvc_remote_config(&x->remote, "advice.fetchShowForcedUpdates", "false");
	strvec_push(&flags, "--no-write-fetch-head");
	strvec_push(&flags, "--quiet");
	if (!req->no_prune)
		strvec_push(&flags, "--prune");
	if (req->force) {
		strvec_push(&flags, "--force");
		strvec_push(&flags, "--no-show-forced-updates");
	}
	strvec_push(&flags, req->no_tags ? "--no-tags" : "--tags");
	strvec_pushv(&env, reposvc_remote_env(&x->remote));
	strvec_push(&env, x->alternates.buf);

	gc.git_dir = x->scratch.buf;
	gc.subcmd = "fetch";
	gc.flags = flags.v;
	gc.args = args;
	gc.env = env.v;
	/* hooks off: nothing in the scratch repository is voted on, the repository's update-ref is */
	fr_run(x, &gc, NULL, 0, fetch_done);
	if (x->cmd && req->timeout > 0) {
		uv_timer_init(x->op.g->loop, &x->timer);
		x->timer.data = x;
		x->timer_open = 1;
		gitaly_call_hold(&x->op);   /* until the timer handle closed */
		uv_timer_start(&x->timer, on_timeout, (uint64_t)req->timeout * 1000, 0);
	}
	strvec_clear(&flags);
	strvec_clear(&env);
}

/* --- step 2: the scratch repository --- */

static int write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ssize_t n = 0;
	if (fd < 0)
		return -errno;
	while (len) {
		n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		data += n;
		len -= (size_t)n;
	}
	close(fd);
	return len ? -EIO : 0;
}

static int build_scratch(struct fetch_remote *x, struct strbuf *err)
{
	static const char *const dirs[] = { "objects", "objects/pack", "objects/info", "refs", "refs/heads",
					    "refs/tags", NULL };
	const Gitaly__Repository *r = x->req->repository;
	const struct gitaly_storage *st;
	struct strbuf p = STRBUF_INIT, packed = STRBUF_INIT, head = STRBUF_INIT, cfg = STRBUF_INIT;
	const char *a = x->before.buf, *ae = a + x->before.len;
	struct ref_line l;
	int rc = -1, e;

	if (gitaly_storage(x->op.g, r->storage_name, &st, err) != GRPC_OK || gitaly_tmp_dir(x->op.g, st, &p) < 0) {
		if (!err->len)
			strbuf_addstr(err, strerror(errno));
		goto out;
	}
	strbuf_addstr(&p, "/fetch-remote-XXXXXX");
	if (!mkdtemp(p.buf)) {
		strbuf_addstr(err, strerror(errno));
		goto out;
	}
	strbuf_add(&x->scratch, p.buf, p.len);
	for (size_t i = 0; dirs[i]; i++) {
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/%s", x->scratch.buf, dirs[i]);
		if (mkdir(p.buf, 0755) < 0) {
			strbuf_addf(err, "creating \"%s\": %s", dirs[i], strerror(errno));
			goto out;
		}
	}

	strbuf_addf(&cfg, "[core]\n\trepositoryformatversion = %d\n\tbare = true\n", x->hexlen == 64 ? 1 : 0);
	if (x->hexlen == 64)
		strbuf_addstr(&cfg, "[extensions]\n\tobjectformat = sha256\n");
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/config", x->scratch.buf);
	if ((e = write_file(p.buf, cfg.buf, cfg.len)) < 0)
		goto write_failed;

	/* HEAD as the repository has it: fetch neither prunes nor updates it */
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/HEAD", x->path);
	if (fs_read_file(p.buf, 64 * 1024, &head) < 0 || !head.len) {
		strbuf_reset(&head);
		strbuf_addstr(&head, "ref: refs/heads/main\n");
	}
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/HEAD", x->scratch.buf);
	if ((e = write_file(p.buf, head.buf, head.len)) < 0)
		goto write_failed;

	/* the refs, in for-each-ref's (sorted) order */
	strbuf_addstr(&packed, "# pack-refs with: sorted \n");
	while (next_ref(&a, ae, &l)) {
		if (l.symref) {
			/* symbolic refs stay loose: packed-refs cannot hold them */
			struct strbuf f = STRBUF_INIT, t = STRBUF_INIT;
			char *slash;
			strbuf_addf(&f, "%s/%.*s", x->scratch.buf, (int)l.namelen, l.name);
			slash = strrchr(f.buf, '/');
			*slash = '\0';
			fs_mkdir_p(f.buf, 0755);
			*slash = '/';
			strbuf_addf(&t, "ref: %s\n", l.symref);
			e = write_file(f.buf, t.buf, t.len);
			strbuf_release(&f);
			strbuf_release(&t);
			if (e < 0)
				goto write_failed;
			continue;
		}
		strbuf_add(&packed, l.oid, l.oidlen);
		strbuf_addch(&packed, ' ');
		strbuf_add(&packed, l.name, l.namelen);
		strbuf_addch(&packed, '\n');
	}
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/packed-refs", x->scratch.buf);
	if ((e = write_file(p.buf, packed.buf, packed.len)) < 0)
		goto write_failed;
	rc = 0;
	goto out;
write_failed:
	strbuf_addf(err, "writing \"%s\": %s", p.buf, strerror(-e));
out:
	strbuf_release(&p);
	strbuf_release(&packed);
	strbuf_release(&head);
	strbuf_release(&cfg);
	return rc;
}

static void before_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct fetch_remote *x = arg;
	struct strbuf m = STRBUF_INIT;

	x->cmd = NULL;
	if (fr_gone(x))
		return;
	if (status != 0) {
		git_error(&m, err, status);
		fr_finish(x, GRPC_INTERNAL, "listing references: %s", m.buf);
		strbuf_release(&m);
		return;
	}
	strbuf_add(&x->before, out->buf, out->len);
	if (build_scratch(x, &m) < 0) {
		fr_finish(x, GRPC_INTERNAL, "creating quarantine directory: %s", m.buf);
		strbuf_release(&m);
		return;
	}
	strbuf_release(&m);
	start_fetch(x);
}

/* --- step 1: object format and the repository's refs --- */

static void format_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct fetch_remote *x = arg;
	struct git_call gc = { 0 };

	x->cmd = NULL;
	if (fr_gone(x))
		return;
	if (status != 0) {
		struct strbuf m = STRBUF_INIT;
		git_error(&m, err, status);
		fr_finish(x, GRPC_INTERNAL, "detecting object hash: %s", m.buf);
		strbuf_release(&m);
		return;
	}
	x->hexlen = !strncmp(out->buf, "sha256", 6) ? 64 : 40;
	gc.git_dir = x->path;
	gc.repo = x->req->repository;
	gc.subcmd = "for-each-ref";
	gc.flags = refs_format;
	fr_run(x, &gc, NULL, 0, before_done);
}

static void fr_go(void *arg)
{
	static const char *const flags[] = { "--show-object-format", NULL };
	struct fetch_remote *x = arg;
	struct git_call gc = { 0 };

	if (fr_gone(x))
		return;
	gc.git_dir = x->path;
	gc.repo = x->req->repository;
	gc.subcmd = "rev-parse";
	gc.flags = flags;
	fr_run(x, &gc, NULL, 0, format_done);
}

/* mirror_refmaps as upstream reads them: shorthands or refspecs; none means a mirror of everything */
static void add_refspecs(struct reposvc_remote *r, const Gitaly__Remote *rp)
{
	if (!rp->n_mirror_refmaps) {
		reposvc_remote_config(r, "remote.inmemory.fetch", "refs/*:refs/*");
		return;
	}
	for (size_t i = 0; i < rp->n_mirror_refmaps; i++) {
		const char *m = rp->mirror_refmaps[i];
		if (!strcmp(m, "all_refs"))
			m = "refs/*:refs/*";
		else if (!strcmp(m, "heads"))
			m = "refs/heads/*:refs/heads/*";
		else if (!strcmp(m, "tags"))
			m = "refs/tags/*:refs/tags/*";
		reposvc_remote_config(r, "remote.inmemory.fetch", m);
	}
}

void reposvc_fetch_remote(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__FetchRemoteRequest *req = msg_unpack(call, &gitaly__fetch_remote_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	const Gitaly__Repository *r;
	struct fetch_remote *x;
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		msg_free(req);
		goto out;
	}
	if (!req->remote_params) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "missing remote params", NULL);
		msg_free(req);
		goto out;
	}
	if (!req->remote_params->url || !*req->remote_params->url) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "blank or empty remote URL", NULL);
		msg_free(req);
		goto out;
	}
	x = xcalloc(1, sizeof(*x));
	reposvc_init(&x->op, g, call, fr_release);
	x->op.cancel = fr_cancel;
	x->req = req;
	x->path = strbuf_detach(&path, NULL);
	strbuf_init(&x->scratch, 0);
	strbuf_init(&x->alternates, 0);
	strbuf_init(&x->before, 0);
	strbuf_init(&x->updates, 0);
	reposvc_remote_init(&x->remote);
	gitaly_call_watch(&x->op);

	r = req->repository;
	/* the scratch repository borrows every object the repository has */
	strbuf_addf(&x->alternates, "GIT_ALTERNATE_OBJECT_DIRECTORIES=%s/%s", x->path,
		    r->git_object_directory && *r->git_object_directory ? r->git_object_directory : "objects");
	for (size_t i = 0; i < r->n_git_alternate_object_directories; i++)
		strbuf_addf(&x->alternates, ":%s/%s", x->path, r->git_alternate_object_directories[i]);
	add_refspecs(&x->remote, req->remote_params);
	if (reposvc_remote_setup(&x->remote, "inmemory", req->remote_params->url,
				 req->remote_params->http_authorization_header, req->remote_params->resolved_address,
				 &msg) < 0 ||
	    reposvc_remote_ssh(&x->remote, g->runtime_dir, req->ssh_key, req->known_hosts, &msg) < 0) {
		reposvc_finish(&x->op, GRPC_INTERNAL, msg.buf);
		goto out;
	}
	/* our update-ref takes locks in the repository: stale ones go first */
	x->writer = cleanup_writer_enter(g, x->path, fr_go, x);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
}

/* The repository creation routine every creator shares, and CreateRepository; see docs/technical/gitaly-repository.md. */
#include "repository/repository.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

/* --- the creation routine --- */

struct reposvc_create {
	struct gitaly_call *op;
	struct reposvc_create_opts opts;
	char *initial_branch, *object_format;
	char *storage_path;
	char *target;                  /* where the repository ends up */
	char *lock;                    /* <target>.lock */
	char *tmp;                     /* the temporary repository */
	char *tmp_rel;                 /* its path relative to the storage */
	Gitaly__Repository tmp_repo;
	struct git_cmd *init;          /* git init while it runs */
	uv_work_t work;
	uint8_t vote[20];
	int locked, moved;
	/* results of thread-pool jobs and of the routine */
	int err;
	enum grpc_code code;
	struct strbuf msg;
};

void *reposvc_create_data(const struct reposvc_create *rc) { return rc->opts.data; }
struct gitaly_call *reposvc_create_op(const struct reposvc_create *rc) { return rc->op; }

void reposvc_create_cancel(struct reposvc_create *rc)
{
	if (rc && rc->init)
		reposvc_kill(rc->init);
}

static void create_free(struct reposvc_create *rc)
{
	free(rc->initial_branch);
	free(rc->object_format);
	free(rc->storage_path);
	free(rc->target);
	free(rc->lock);
	free(rc->tmp);
	free(rc->tmp_rel);
	strbuf_release(&rc->msg);
	free(rc);
}

static void create_report(struct reposvc_create *rc)
{
	if (rc->locked)
		unlink(rc->lock);
	rc->opts.done(rc, rc->code, rc->msg.buf);
	create_free(rc);
}

static void cleanup_work(uv_work_t *w)
{
	struct reposvc_create *rc = w->data;
	fs_remove_tree(rc->tmp);
}

static void cleanup_after(uv_work_t *w, int status)
{
	create_report(w->data);
}

/* Fail: drop the temporary repository (off the loop: it may be large), unlock, report. */
static void create_fail(struct reposvc_create *rc, enum grpc_code code, const char *msg)
{
	rc->code = code;
	strbuf_reset(&rc->msg);
	strbuf_addstr(&rc->msg, msg);
	if (rc->moved || uv_queue_work(rc->op->g->loop, &rc->work, cleanup_work, cleanup_after) < 0) {
		if (!rc->moved)
			fs_remove_tree(rc->tmp);
		create_report(rc);
	}
}

static void create_failf(struct reposvc_create *rc, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void create_failf(struct reposvc_create *rc, enum grpc_code code, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	/* formatted apart: the arguments may point into rc->msg, which create_fail() rewrites */
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	create_fail(rc, code, sb.buf);
	strbuf_release(&sb);
}

static int cancelled(struct reposvc_create *rc)
{
	if (!gitaly_call_gone(rc->op))
		return 0;
	create_fail(rc, GRPC_CANCELLED, "context canceled");
	return 1;
}

/* Run `work` on the thread pool, then `after` on the loop; not when the call went away. */
static void queue_job(struct reposvc_create *rc, uv_work_cb work, uv_after_work_cb after)
{
	if (cancelled(rc))
		return;
	rc->err = 0;
	strbuf_reset(&rc->msg);
	if (uv_queue_work(rc->op->g->loop, &rc->work, work, after) < 0)
		create_fail(rc, GRPC_INTERNAL, "cannot queue work");
}

/* After a job: 1 when the creation ends here (the job failed, or the call went away). */
static int job_failed(struct reposvc_create *rc)
{
	if (rc->err) {
		create_failf(rc, GRPC_INTERNAL, "%s", rc->msg.buf);
		return 1;
	}
	return cancelled(rc);
}

static void committed_voted(void *arg, enum grpc_code code, const char *msg)
{
	struct reposvc_create *rc = arg;
	if (code != GRPC_OK) {
		create_failf(rc, GRPC_FAILED_PRECONDITION, "committing vote: %s", msg);
		return;
	}
	rc->code = GRPC_OK;
	strbuf_reset(&rc->msg);
	create_report(rc);
}

static void move_work(uv_work_t *w)
{
	struct reposvc_create *rc = w->data;
	int rc2;

	if ((rc2 = reposvc_fsync_tree(rc->tmp)) < 0) {
		rc->err = rc2;
		strbuf_addf(&rc->msg, "sync recursive: %s", strerror(-rc2));
		return;
	}
	if (rename(rc->tmp, rc->target) < 0) {
		rc->err = -errno;
		strbuf_addf(&rc->msg, "moving repository into place: %s", strerror(errno));
		return;
	}
	rc->moved = 1;
	if ((rc2 = reposvc_fsync_hierarchy(rc->storage_path, rc->target)) < 0) {
		rc->err = rc2;
		strbuf_addf(&rc->msg, "sync hierarchy: %s", strerror(-rc2));
	}
}

static void move_after(uv_work_t *w, int status)
{
	struct reposvc_create *rc = w->data;
	if (job_failed(rc))
		return;
	vote_cast(rc->op->g, rc->op->call, VOTE_PHASE_COMMITTED, rc->vote, committed_voted, rc);
}

static void prepared_voted(void *arg, enum grpc_code code, const char *msg)
{
	struct reposvc_create *rc = arg;
	if (code != GRPC_OK) {
		create_failf(rc, GRPC_FAILED_PRECONDITION, "preparatory vote: %s", msg);
		return;
	}
	queue_job(rc, move_work, move_after);
}

/* Contents of every non-directory below `dir`, depth first in byte order, minus objects/ and FETCH_HEAD. */
static int hash_tree(EVP_MD_CTX *ctx, const char *dir, int top, struct strbuf *err)
{
	char **names;
	size_t nr;
	struct strbuf sub = STRBUF_INIT;
	int rc = reposvc_list_dir(dir, &names, &nr);

	if (rc < 0) {
		strbuf_addf(err, "walking repository: open %s: %s", dir, strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < nr && rc == 0; i++) {
		struct stat st;
		if (top && (!strcmp(names[i], "objects") || !strcmp(names[i], "FETCH_HEAD")))
			continue;
		strbuf_reset(&sub);
		strbuf_addf(&sub, "%s/%s", dir, names[i]);
		if (lstat(sub.buf, &st) < 0) {
			rc = -errno;
			strbuf_addf(err, "walking repository: lstat %s: %s", sub.buf, strerror(errno));
		} else if (S_ISDIR(st.st_mode)) {
			rc = hash_tree(ctx, sub.buf, 0, err);
		} else if ((rc = reposvc_hash_file(ctx, sub.buf)) < 0) {
			strbuf_addf(err, "walking repository: hashing %s: %s", names[i], strerror(-rc));
		}
	}
	reposvc_free_names(names, nr);
	strbuf_release(&sub);
	return rc;
}

static void hash_work(uv_work_t *w)
{
	struct reposvc_create *rc = w->data;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	struct strbuf ts = STRBUF_INIT;
	int fd;

	EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
	rc->err = hash_tree(ctx, rc->tmp, 1, &rc->msg);
	EVP_DigestFinal_ex(ctx, rc->vote, &n);
	EVP_MD_CTX_free(ctx);
	if (rc->err)
		return;
	/* written after hashing: housekeeping state, not part of the vote */
	strbuf_addf(&ts, "%s/.gitaly-full-repack-timestamp", rc->tmp);
	fd = open(ts.buf, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc->err = -errno;
		strbuf_addf(&rc->msg, "creating full-repack timestamp: %s", strerror(errno));
	} else {
		close(fd);
	}
	strbuf_release(&ts);
}

static void hash_after(uv_work_t *w, int status)
{
	struct reposvc_create *rc = w->data;
	struct stat st;
	struct strbuf parent = STRBUF_INIT;
	char *slash;
	int fd;

	if (job_failed(rc))
		return;

	/* the critical section: lock the target path, make sure it is still free, vote */
	strbuf_addstr(&parent, rc->target);
	slash = strrchr(parent.buf, '/');
	if (slash && slash != parent.buf)
		strbuf_setlen(&parent, (size_t)(slash - parent.buf));
	fs_mkdir_p(parent.buf, 0770);
	strbuf_release(&parent);
	fd = open(rc->lock, O_CREAT | O_EXCL | O_RDONLY | O_CLOEXEC, 0400);
	if (fd < 0) {
		create_failf(rc, GRPC_INTERNAL, "locking repository: %s",
			     errno == EEXIST ? "file already locked" : strerror(errno));
		return;
	}
	close(fd);
	rc->locked = 1;
	if (lstat(rc->target, &st) == 0 || errno != ENOENT) {
		create_fail(rc, GRPC_ALREADY_EXISTS, "repository exists already");
		return;
	}
	vote_cast(rc->op->g, rc->op->call, VOTE_PHASE_PREPARED, rc->vote, prepared_voted, rc);
}

void reposvc_create_seeded(struct reposvc_create *rc, enum grpc_code code, const char *msg)
{
	if (code != GRPC_OK) {
		create_fail(rc, code, msg);
		return;
	}
	queue_job(rc, hash_work, hash_after);
}

static void seed(struct reposvc_create *rc)
{
	if (cancelled(rc))
		return;
	if (rc->opts.seed)
		rc->opts.seed(rc, rc->tmp, &rc->tmp_repo);
	else
		reposvc_create_seeded(rc, GRPC_OK, NULL);
}

static void init_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct reposvc_create *rc = arg;
	rc->init = NULL;
	if (status != 0) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addstr(&m, "creating repository: ");
		gitaly_describe_status(&m, status);
		strbuf_addstr(&m, ", stderr: ");
		strbuf_add_json_string(&m, err->buf, err->len);
		create_fail(rc, GRPC_INTERNAL, m.buf);
		strbuf_release(&m);
		return;
	}
	seed(rc);
}

static void noop_work(uv_work_t *w) { }
static void deferred_seed(uv_work_t *w, int status) { seed(w->data); }

enum grpc_code reposvc_create_start(struct gitaly_call *op, const Gitaly__Repository *repo,
				    const struct reposvc_create_opts *opts, struct reposvc_create **out,
				    struct strbuf *msg)
{
	struct gitaly *g = op->g;
	const struct gitaly_storage *s;
	struct strbuf path = STRBUF_INIT, tmp = STRBUF_INIT;
	struct reposvc_create *rc;
	enum grpc_code code;
	struct stat st;
	int rc2;

	if (out)
		*out = NULL;
	code = gitaly_locate(g, repo, LOCATE_NO_EXIST_CHECK, &path, msg);
	if (code != GRPC_OK)
		goto fail;
	code = gitaly_storage(g, repo->storage_name, &s, msg);
	if (code != GRPC_OK)
		goto fail;
	if (lstat(path.buf, &st) == 0 || errno != ENOENT) {
		strbuf_addstr(msg, "repository exists already");
		code = GRPC_ALREADY_EXISTS;
		goto fail;
	}
	if ((rc2 = gitaly_tmp_dir(g, s, &tmp)) < 0) {
		strbuf_addf(msg, "creating temporary repository: %s", strerror(-rc2));
		code = GRPC_INTERNAL;
		goto fail;
	}
	strbuf_addstr(&tmp, "/repoXXXXXX");
	if (!mkdtemp(tmp.buf)) {
		strbuf_addf(msg, "creating temporary repository: %s", strerror(errno));
		code = GRPC_INTERNAL;
		goto fail;
	}

	rc = xcalloc(1, sizeof(*rc));
	rc->op = op;
	rc->opts = *opts;
	rc->initial_branch = opts->initial_branch ? xstrdup(opts->initial_branch) : NULL;
	rc->object_format = opts->object_format ? xstrdup(opts->object_format) : NULL;
	rc->storage_path = xstrdup(s->path);
	rc->target = xstrdup(path.buf);
	strbuf_addstr(&path, ".lock");
	rc->lock = strbuf_detach(&path, NULL);
	rc->tmp = strbuf_detach(&tmp, NULL);
	rc->tmp_rel = xstrdup(rc->tmp + strlen(s->path) + 1);
	gitaly__repository__init(&rc->tmp_repo);
	rc->tmp_repo.storage_name = s->name;
	rc->tmp_repo.relative_path = rc->tmp_rel;
	rc->work.data = rc;
	strbuf_init(&rc->msg, 0);
	if (out)
		*out = rc;

	if (opts->skip_init) {
		/* the seeding command (git clone) insists on creating the directory itself */
		rmdir(rc->tmp);
		if (uv_queue_work(g->loop, &rc->work, noop_work, deferred_seed) < 0)
			goto spawn_fail;
	} else {
		const char *flags[8];
		const char *args[] = { rc->tmp, NULL };
		struct git_call gc = { 0 };
		size_t nf = 0;

		flags[nf++] = "--bare";
		flags[nf++] = "--quiet";
		if (rc->initial_branch) {
			flags[nf++] = "--initial-branch";
			flags[nf++] = rc->initial_branch;
		}
		if (rc->object_format) {
			flags[nf++] = "--object-format";
			flags[nf++] = rc->object_format;
		}
		flags[nf] = NULL;
		gc.subcmd = "init";
		gc.flags = flags;
		gc.args = args;
		if (gitaly_git_capture(g, &gc, NULL, 0, 64 * 1024, init_done, rc, &rc->init, msg) < 0)
			goto spawn_fail;
	}
	return GRPC_OK;

spawn_fail:
	fs_remove_tree(rc->tmp);
	if (!msg->len)
		strbuf_addstr(msg, "cannot start creating the repository");
	if (out)
		*out = NULL;
	create_free(rc);
	return GRPC_INTERNAL;
fail:
	strbuf_release(&path);
	strbuf_release(&tmp);
	return code;
}

/* --- CreateRepository --- */

struct create_op {
	struct gitaly_call op;
	struct reposvc_create *rc;
};

static void create_op_release(struct gitaly_call *op)
{
	free(container_of(op, struct create_op, op));
}

static void create_op_cancel(struct gitaly_call *op)
{
	reposvc_create_cancel(container_of(op, struct create_op, op)->rc);
}

static void create_repository_done(struct reposvc_create *rc, enum grpc_code code, const char *msg)
{
	struct create_op *c = reposvc_create_data(rc);
	c->rc = NULL;
	if (code == GRPC_OK) {
		Gitaly__CreateRepositoryResponse resp = GITALY__CREATE_REPOSITORY_RESPONSE__INIT;
		reposvc_reply(&c->op, &resp);
	} else {
		reposvc_finishf(&c->op, code, "creating repository: %s", msg);
	}
}

void reposvc_create_repository(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__CreateRepositoryRequest *req = msg_unpack(call, &gitaly__create_repository_request__descriptor,
							 buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT, branch = STRBUF_INIT;
	struct reposvc_create_opts opts = { 0 };
	struct create_op *c;
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, LOCATE_NO_EXIST_CHECK, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	switch (req->object_format) {
	case GITALY__OBJECT_FORMAT__OBJECT_FORMAT_UNSPECIFIED:
	case GITALY__OBJECT_FORMAT__OBJECT_FORMAT_SHA1:
		opts.object_format = "sha1";
		break;
	case GITALY__OBJECT_FORMAT__OBJECT_FORMAT_SHA256:
		opts.object_format = "sha256";
		break;
	default:
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "unknown object format: \"%d\"", (int)req->object_format);
		goto out;
	}
	if (req->default_branch.len) {
		if (memchr(req->default_branch.data, '\0', req->default_branch.len)) {
			grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "default branch contains NUL", NULL);
			goto out;
		}
		strbuf_add(&branch, req->default_branch.data, req->default_branch.len);
		opts.initial_branch = branch.buf;
	}

	c = xcalloc(1, sizeof(*c));
	reposvc_init(&c->op, g, call, create_op_release);
	c->op.cancel = create_op_cancel;
	opts.done = create_repository_done;
	opts.data = c;
	code = reposvc_create_start(&c->op, req->repository, &opts, &c->rc, &msg);
	if (code != GRPC_OK) {
		grpc_call_finishf(call, code, "creating repository: %s", msg.buf);
		free(c);
		goto out;
	}
	gitaly_call_watch(&c->op);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	strbuf_release(&branch);
	msg_free(req);
}

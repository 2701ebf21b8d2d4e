/*
 * Git bundles: CreateBundle and CreateBundleFromRefList stream `git bundle
 * create` out; FetchBundle and CreateRepositoryFromBundle take a bundle in
 * (client streaming) into a file under the storage's temporary directory,
 * then fetch from it or clone it. Behaviour and messages:
 * docs/technical/backups.md, "Bundles".
 */
#include "repository/repository.h"
#include "repository/backup_parse.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

#define EMPTY_BUNDLE_STDERR "fatal: Refusing to create empty bundle."
#define LIST_MAX (64 * 1024 * 1024)

/* --- bundles out --- */

struct bundle_out {
	struct gitaly_call op;
	int from_ref_list;
	int started;
};

static void bundle_out_release(struct gitaly_call *op)
{
	free(container_of(op, struct bundle_out, op));
}

static void bundle_created(struct gitaly_pipe *p, struct grpc_call *call, int status, const struct strbuf *err)
{
	struct bundle_out *b = gitaly_pipe_data(p);
	struct strbuf m = STRBUF_INIT;

	if (status == 0) {
		grpc_call_finish(call, GRPC_OK, NULL, NULL);
		return;
	}
	if (status == 128 && !strncmp(err->buf, EMPTY_BUNDLE_STDERR, strlen(EMPTY_BUNDLE_STDERR))) {
		/* upstream: a plain error (UNKNOWN) for CreateBundle, FAILED_PRECONDITION for the ref list */
		grpc_call_finish(call, b->from_ref_list ? GRPC_FAILED_PRECONDITION : GRPC_UNKNOWN,
				 "create bundle: refusing to create empty bundle", NULL);
		return;
	}
	strbuf_addstr(&m, "create bundle: ");
	gitaly_describe_status(&m, status);
	strbuf_addstr(&m, ": stderr: ");
	strbuf_add_json_string(&m, err->buf, err->len);
	grpc_call_finish(call, b->from_ref_list ? GRPC_INTERNAL : GRPC_UNKNOWN, m.buf, NULL);
	strbuf_release(&m);
}

/*
 * Start git bundle create on `call`. With patterns (`first`: the first
 * request's, later ones through the pipe) git reads them on stdin.
 */
static void start_bundle(struct bundle_out *b, struct grpc_call *call, const Gitaly__Repository *repo,
			 const Gitaly__CreateBundleFromRefListRequest *first)
{
	static const char *const all[] = { "create", "-", "--all", NULL };
	static const char *const stdin_flags[] = { "create", "-", "--ignore-missing", "--stdin", NULL };
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct gitaly_pipe_opts opts = { 0 };
	struct git_call gc = { 0 };
	enum grpc_code code;

	code = gitaly_locate(b->op.g, repo, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	gc.git_dir = path.buf;
	gc.repo = repo;
	gc.subcmd = "bundle";
	gc.flags = first ? stdin_flags : all;
	gc.rpc = call;
	opts.stdout_field = 1;
	opts.on_exit = bundle_created;
	opts.data = b;
	if (first) {
		opts.stdin_field = 2;
		opts.stdin_lines = 1;
	}
	code = gitaly_pipe_run(b->op.g, call, &gc, &opts, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	if (first) {
		struct gitaly_pipe *p = grpc_call_user(call);
		for (size_t i = 0; i < first->n_patterns; i++) {
			gitaly_pipe_write(p, first->patterns[i].data, first->patterns[i].len);
			gitaly_pipe_write(p, "\n", 1);
		}
	}
out:
	strbuf_release(&path);
	strbuf_release(&msg);
}

static void out_closed(struct grpc_call *call, enum grpc_code code, void *arg)
{
	gitaly_call_closed(arg);
}

static void create_bundle(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__CreateBundleRequest *req = msg_unpack(call, &gitaly__create_bundle_request__descriptor, buf, len);
	struct bundle_out *b;

	if (!req)
		return;
	b = xcalloc(1, sizeof(*b));
	gitaly_call_init(&b->op, data, call, bundle_out_release);
	grpc_call_on_close(call, out_closed, &b->op);
	start_bundle(b, call, req->repository, NULL);
	msg_free(req);
}

static void ref_list_message(struct grpc_call *call, const uint8_t *buf, size_t len)
{
	struct bundle_out *b = grpc_call_user(call);
	Gitaly__CreateBundleFromRefListRequest *req;

	if (b->started)
		return;
	b->started = 1;
	req = msg_unpack(call, &gitaly__create_bundle_from_ref_list_request__descriptor, buf, len);
	if (!req)
		return;
	start_bundle(b, call, req->repository, req);
	msg_free(req);
}

static void ref_list_half_close(struct grpc_call *call)
{
	struct bundle_out *b = grpc_call_user(call);
	if (!b->started)
		grpc_call_finish(call, GRPC_INTERNAL, "EOF", NULL);
}

static const struct grpc_call_ops ref_list_ops = {
	.on_message = ref_list_message,
	.on_half_close = ref_list_half_close,
};

static void create_bundle_from_ref_list(struct grpc_call *call, void *data)
{
	struct bundle_out *b = xcalloc(1, sizeof(*b));
	gitaly_call_init(&b->op, data, call, bundle_out_release);
	b->from_ref_list = 1;
	grpc_call_set_ops(call, &ref_list_ops, b);
	grpc_call_on_close(call, out_closed, &b->op);
}

/* --- bundles in --- */

enum bundle_in_kind { FETCH_BUNDLE, CREATE_FROM_BUNDLE };

struct bundle_in {
	struct gitaly_call op;
	enum bundle_in_kind kind;
	Gitaly__Repository *repo;       /* the first request's, kept */
	void *first;                    /* the first request message (owns repo) */
	int update_head;
	struct strbuf path;             /* the repository */
	char *tmp;                      /* our directory under the storage's temporary directory */
	struct strbuf bundle;           /* <tmp>/repo.bundle */
	int fd;
	uv_fs_t write;                  /* the write in flight */
	struct strbuf pending;          /* bytes being written */
	struct strbuf queued;           /* bytes that arrived meanwhile (a message already on its way) */
	size_t written;
	int writing, messages, half_closed, failed, proceeding;
	/* FetchBundle */
	struct cleanup_writer *writer;
	struct git_cmd *cmd;
	char head_oid[65];
	/* CreateRepositoryFromBundle */
	struct reposvc_create *rc;
	struct strbuf tmp_path;
	const Gitaly__Repository *tmp_repo;
};

static void bin_release(struct gitaly_call *op)
{
	struct bundle_in *x = container_of(op, struct bundle_in, op);
	if (x->fd >= 0)
		close(x->fd);
	if (x->tmp) {
		fs_remove_tree(x->tmp);
		free(x->tmp);
	}
	cleanup_writer_leave(x->writer);
	msg_free(x->first);
	strbuf_release(&x->path);
	strbuf_release(&x->bundle);
	strbuf_release(&x->pending);
	strbuf_release(&x->queued);
	strbuf_release(&x->tmp_path);
	free(x);
}

static void bin_fail(struct bundle_in *x, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void bin_cancel(struct gitaly_call *op)
{
	struct bundle_in *x = container_of(op, struct bundle_in, op);
	reposvc_kill(x->cmd);
	reposvc_create_cancel(x->rc);
	/* still receiving, nothing in flight: no later step will see the close, so the work ends here */
	if (!x->proceeding && !x->writing)
		bin_fail(x, GRPC_CANCELLED, "context canceled");
}

static void bin_fail(struct bundle_in *x, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void bin_fail(struct bundle_in *x, enum grpc_code code, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	if (x->failed)
		return;
	x->failed = 1;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	reposvc_finish(&x->op, gitaly_call_gone(&x->op) ? GRPC_CANCELLED : code, sb.buf);
	strbuf_release(&sb);
}

/* FetchBundle: the end, whatever it is. The writer leaves in release. */
static void fetch_fail(struct bundle_in *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fetch_fail(struct bundle_in *x, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	bin_fail(x, GRPC_INTERNAL, "fetch bundle: %s", sb.buf);
	strbuf_release(&sb);
}

static void fetch_ok(struct bundle_in *x)
{
	Gitaly__FetchBundleResponse resp = GITALY__FETCH_BUNDLE_RESPONSE__INIT;
	reposvc_reply(&x->op, &resp);
}

static void head_written(struct gitaly_call *op, enum grpc_code code, const char *msg)
{
	struct bundle_in *x = container_of(op, struct bundle_in, op);
	if (code != GRPC_OK)
		fetch_fail(x, "update head from bundle: %s", msg);
	else
		fetch_ok(x);
}

static void branches_listed(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct bundle_in *x = arg;
	struct strbuf head = STRBUF_INIT, content = STRBUF_INIT, msg = STRBUF_INIT, branch = STRBUF_INIT;

	x->cmd = NULL;
	if (gitaly_call_gone(&x->op)) {
		bin_fail(x, GRPC_CANCELLED, "context canceled");
		return;
	}
	if (status != 0) {
		strbuf_addstr(&msg, "update head from bundle: guess head: ");
		gitaly_describe_status(&msg, status);
		fetch_fail(x, "%s", msg.buf);
		goto out;
	}
	if (bundle_guess_head(out->buf, x->head_oid, &branch) < 0) {
		fetch_fail(x, "update head from bundle: guess head: reference not found");
		goto out;
	}
	strbuf_addf(&content, "ref: %s\n", branch.buf);
	strbuf_addf(&head, "%s/HEAD", x->path.buf);
	if (reposvc_write_locked(&x->op, head.buf, content.buf, content.len, 0644, head_written, &msg) < 0)
		fetch_fail(x, "update head from bundle: %s", msg.buf);
out:
	strbuf_release(&head);
	strbuf_release(&content);
	strbuf_release(&msg);
	strbuf_release(&branch);
}

static void heads_listed(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const flags[] = { "--format=%(objectname) %(refname)", NULL };
	static const char *const args[] = { "refs/heads/", NULL };
	struct bundle_in *x = arg;
	struct git_call gc = { 0 };
	struct strbuf msg = STRBUF_INIT;

	x->cmd = NULL;
	if (gitaly_call_gone(&x->op)) {
		bin_fail(x, GRPC_CANCELLED, "context canceled");
		return;
	}
	if (status != 0) {
		strbuf_addstr(&msg, "update head from bundle: find bundle HEAD: ");
		gitaly_describe_status(&msg, status);
		fetch_fail(x, "%s", msg.buf);
		goto out;
	}
	/* no HEAD in the bundle leaves HEAD alone */
	bundle_list_head(out->buf, x->head_oid);
	if (!x->head_oid[0]) {
		fetch_ok(x);
		goto out;
	}
	gc.git_dir = x->path.buf;
	gc.repo = x->repo;
	gc.subcmd = "for-each-ref";
	gc.flags = flags;
	gc.args = args;
	if (gitaly_git_capture(x->op.g, &gc, NULL, 0, LIST_MAX, branches_listed, x, &x->cmd, &msg) < 0)
		fetch_fail(x, "update head from bundle: %s", msg.buf);
out:
	strbuf_release(&msg);
}

static void fetched(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct bundle_in *x = arg;
	const char *flags[] = { "list-heads", x->bundle.buf, NULL };
	static const char *const args[] = { "HEAD", NULL };
	struct git_call gc = { 0 };
	struct strbuf msg = STRBUF_INIT;

	x->cmd = NULL;
	if (gitaly_call_gone(&x->op)) {
		bin_fail(x, GRPC_CANCELLED, "context canceled");
		return;
	}
	if (status != 0) {
		gitaly_describe_status(&msg, status);
		strbuf_addstr(&msg, ", stderr: ");
		strbuf_add_json_string(&msg, err->buf, err->len);
		fetch_fail(x, "%s", msg.buf);
		goto out;
	}
	if (!x->update_head) {
		fetch_ok(x);
		goto out;
	}
	gc.git_dir = x->path.buf;
	gc.repo = x->repo;
	gc.subcmd = "bundle";
	gc.flags = flags;
	gc.args = args;
	if (gitaly_git_capture(x->op.g, &gc, NULL, 0, LIST_MAX, heads_listed, x, &x->cmd, &msg) < 0)
		fetch_fail(x, "update head from bundle: %s", msg.buf);
out:
	strbuf_release(&msg);
}

/* Our turn as a writer: fetch every reference of the bundle, mirror style, voting on the updates. */
static void fetch_go(void *arg)
{
	static const char *const flags[] = { "--no-write-fetch-head", "--quiet", "--atomic", NULL };
	static const char *const args[] = { "inmemory", NULL };
	struct bundle_in *x = arg;
	struct strbuf url = STRBUF_INIT, msg = STRBUF_INIT;
	const char *config[] = { NULL, "remote.inmemory.fetch=+refs/*:refs/*",
				 "advice.fetchShowForcedUpdates=false" };
	struct git_call gc = { 0 };

	if (gitaly_call_gone(&x->op)) {
		bin_fail(x, GRPC_CANCELLED, "context canceled");
		return;
	}
	strbuf_addf(&url, "remote.inmemory.url=%s", x->bundle.buf);
	config[0] = url.buf;
	gc.git_dir = x->path.buf;
	gc.repo = x->repo;
	gc.subcmd = "fetch";
	gc.flags = flags;
	gc.args = args;
	gc.config = config;
	gc.nr_config = ARRAY_SIZE(config);
	gc.hooks = HOOK_REFERENCE_TRANSACTION;
	gc.rpc = x->op.call;
	if (gitaly_git_capture(x->op.g, &gc, NULL, 0, 64 * 1024, fetched, x, &x->cmd, &msg) < 0)
		fetch_fail(x, "%s", msg.buf);
	strbuf_release(&url);
	strbuf_release(&msg);
}

/* CreateRepositoryFromBundle: git clone --mirror of the bundle, then drop its origin remote. */
static void origin_removed(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct bundle_in *x = arg;
	struct strbuf m = STRBUF_INIT;
	x->cmd = NULL;
	if (status != 0) {
		strbuf_addstr(&m, "cloning bundle: waiting for git-remote: ");
		gitaly_describe_status(&m, status);
		reposvc_create_seeded(x->rc, GRPC_INTERNAL, m.buf);
	} else {
		reposvc_create_seeded(x->rc, GRPC_OK, NULL);
	}
	strbuf_release(&m);
}

static void cloned(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const args[] = { "remove", "origin", NULL };
	struct bundle_in *x = arg;
	struct git_call gc = { 0 };
	struct strbuf m = STRBUF_INIT;

	x->cmd = NULL;
	if (status != 0) {
		struct log_entry e;
		strbuf_addstr(&m, "cloning bundle: waiting for git-clone: ");
		gitaly_describe_status(&m, status);
		if (log_begin(&e, LOG_WARN, "cloning bundle failed")) {
			log_strn(&e, "stderr", err->buf, err->len);
			log_end(&e);
		}
		reposvc_create_seeded(x->rc, GRPC_INTERNAL, m.buf);
		goto out;
	}
	if (gitaly_call_gone(&x->op)) {
		reposvc_create_seeded(x->rc, GRPC_CANCELLED, "context canceled");
		goto out;
	}
	gc.git_dir = x->tmp_path.buf;
	gc.repo = x->tmp_repo;
	gc.subcmd = "remote";
	gc.args = args;
	gc.hooks = HOOK_REFERENCE_TRANSACTION;
	gc.rpc = x->op.call;
	if (gitaly_git_capture(x->op.g, &gc, NULL, 0, 64 * 1024, origin_removed, x, &x->cmd, &m) < 0)
		reposvc_create_seeded(x->rc, GRPC_INTERNAL, m.buf);
out:
	strbuf_release(&m);
}

static void clone_seed(struct reposvc_create *rc, const char *tmp_path, const Gitaly__Repository *tmp_repo)
{
	struct bundle_in *x = reposvc_create_data(rc);
	static const char *const flags[] = { "--quiet", "--mirror", NULL };
	const char *args[] = { x->bundle.buf, tmp_path, NULL };
	struct git_call gc = { 0 };
	struct strbuf m = STRBUF_INIT;

	x->rc = rc;
	strbuf_addstr(&x->tmp_path, tmp_path);
	x->tmp_repo = tmp_repo;
	gc.subcmd = "clone";
	gc.flags = flags;
	gc.args = args;
	if (gitaly_git_capture(x->op.g, &gc, NULL, 0, 64 * 1024, cloned, x, &x->cmd, &m) < 0)
		reposvc_create_seeded(rc, GRPC_INTERNAL, m.buf);
	strbuf_release(&m);
}

static void from_bundle_done(struct reposvc_create *rc, enum grpc_code code, const char *msg)
{
	struct bundle_in *x = reposvc_create_data(rc);
	x->rc = NULL;
	if (code == GRPC_OK) {
		Gitaly__CreateRepositoryFromBundleResponse resp = GITALY__CREATE_REPOSITORY_FROM_BUNDLE_RESPONSE__INIT;
		reposvc_reply(&x->op, &resp);
	} else {
		x->failed = 1;
		reposvc_finishf(&x->op, code, "creating repository: %s", msg);
	}
}

/* The whole bundle is on disk. */
static void bin_proceed(struct bundle_in *x)
{
	struct strbuf msg = STRBUF_INIT;

	if (x->failed || x->proceeding || x->writing || !x->half_closed)
		return;
	x->proceeding = 1;
	if (close(x->fd) < 0) {
		x->fd = -1;
		bin_fail(x, GRPC_INTERNAL, "create temp bundle: %s", strerror(errno));
		return;
	}
	x->fd = -1;
	if (x->kind == FETCH_BUNDLE) {
		x->writer = cleanup_writer_enter(x->op.g, x->path.buf, fetch_go, x);
	} else {
		struct reposvc_create_opts opts = { 0 };
		enum grpc_code code;
		opts.skip_init = 1;
		opts.seed = clone_seed;
		opts.done = from_bundle_done;
		opts.data = x;
		code = reposvc_create_start(&x->op, x->repo, &opts, &x->rc, &msg);
		if (code != GRPC_OK)
			bin_fail(x, code, "creating repository: %s", msg.buf);
	}
	strbuf_release(&msg);
}

static void start_write(struct bundle_in *x);

static void write_done(uv_fs_t *req)
{
	struct bundle_in *x = req->data;
	ssize_t n = req->result;

	uv_fs_req_cleanup(req);
	x->writing = 0;
	if (n < 0) {
		bin_fail(x, GRPC_INTERNAL, "create temp bundle: %s", uv_strerror((int)n));
	} else {
		x->written += (size_t)n;
		if (x->written < x->pending.len && !x->failed) {
			start_write(x);
			gitaly_call_drop(&x->op);
			return;
		}
		strbuf_reset(&x->pending);
		x->written = 0;
		if (gitaly_call_gone(&x->op) && !x->proceeding)
			bin_fail(x, GRPC_CANCELLED, "context canceled");   /* cancelled while writing */
		if (x->queued.len && !x->failed) {
			struct strbuf t = x->pending;
			x->pending = x->queued;
			x->queued = t;
			start_write(x);
			gitaly_call_drop(&x->op);
			return;
		}
		if (x->op.call && !x->failed)
			grpc_call_resume_recv(x->op.call);
		bin_proceed(x);
	}
	gitaly_call_drop(&x->op);   /* the write's hold; may release x */
}

static void start_write(struct bundle_in *x)
{
	uv_buf_t b = uv_buf_init(x->pending.buf + x->written, (unsigned)(x->pending.len - x->written));
	int rc;

	x->write.data = x;
	gitaly_call_hold(&x->op);
	x->writing = 1;
	rc = uv_fs_write(x->op.g->loop, &x->write, x->fd, &b, 1, -1, write_done);
	if (rc < 0) {
		x->writing = 0;
		bin_fail(x, GRPC_INTERNAL, "create temp bundle: %s", uv_strerror(rc));
		gitaly_call_drop(&x->op);
	}
}

static int bin_first(struct bundle_in *x)
{
	struct gitaly *g = x->op.g;
	const struct gitaly_storage *st;
	struct strbuf msg = STRBUF_INIT, tmp = STRBUF_INIT;
	enum grpc_code code;
	struct stat sb;
	int rc;

	code = gitaly_locate(g, x->repo, x->kind == CREATE_FROM_BUNDLE ? LOCATE_NO_EXIST_CHECK : 0, &x->path, &msg);
	if (code == GRPC_OK)
		code = gitaly_storage(g, x->repo->storage_name, &st, &msg);
	if (code != GRPC_OK) {
		bin_fail(x, code, "%s", msg.buf);
		goto fail;
	}
	/* refused before the bundle is read, as upstream's creation routine does */
	if (x->kind == CREATE_FROM_BUNDLE && (lstat(x->path.buf, &sb) == 0 || errno != ENOENT)) {
		bin_fail(x, GRPC_ALREADY_EXISTS, "creating repository: repository exists already");
		goto fail;
	}
	if ((rc = gitaly_tmp_dir(g, st, &tmp)) < 0) {
		bin_fail(x, GRPC_INTERNAL, "create temp bundle: %s", strerror(-rc));
		goto fail;
	}
	strbuf_addstr(&tmp, "/bundle-XXXXXX");
	if (!mkdtemp(tmp.buf)) {
		bin_fail(x, GRPC_INTERNAL, "create temp bundle: %s", strerror(errno));
		goto fail;
	}
	x->tmp = strbuf_detach(&tmp, NULL);
	strbuf_addf(&x->bundle, "%s/repo.bundle", x->tmp);
	x->fd = open(x->bundle.buf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (x->fd < 0) {
		bin_fail(x, GRPC_INTERNAL, "create temp bundle: %s", strerror(errno));
		goto fail;
	}
	strbuf_release(&msg);
	return 0;
fail:
	strbuf_release(&msg);
	strbuf_release(&tmp);
	return -1;
}

static void bin_message(struct grpc_call *call, const uint8_t *buf, size_t len)
{
	struct bundle_in *x = grpc_call_user(call);
	ProtobufCBinaryData data;
	void *req;

	if (x->failed)
		return;
	if (x->kind == FETCH_BUNDLE) {
		Gitaly__FetchBundleRequest *r = msg_unpack(call, &gitaly__fetch_bundle_request__descriptor, buf, len);
		req = r;
		if (r) {
			data = r->data;
			if (!x->messages) {
				x->repo = r->repository;
				x->update_head = r->update_head;
			}
		}
	} else {
		Gitaly__CreateRepositoryFromBundleRequest *r =
			msg_unpack(call, &gitaly__create_repository_from_bundle_request__descriptor, buf, len);
		req = r;
		if (r) {
			data = r->data;
			if (!x->messages)
				x->repo = r->repository;
		}
	}
	if (!req) {
		/* msg_unpack answered; end the work */
		x->failed = 1;
		reposvc_finish(&x->op, GRPC_INVALID_ARGUMENT, "cannot decode request");
		return;
	}
	if (!x->messages++) {
		x->first = req;
		if (bin_first(x) < 0)
			return;
	}
	if (data.len && x->writing) {
		strbuf_add(&x->queued, data.data, data.len);   /* never into the buffer being written */
	} else if (data.len) {
		strbuf_add(&x->pending, data.data, data.len);
		grpc_call_pause_recv(call);
		start_write(x);
	}
	if (req != x->first)
		msg_free(req);
}

static void bin_half_close(struct grpc_call *call)
{
	struct bundle_in *x = grpc_call_user(call);
	if (x->failed)
		return;
	if (!x->messages) {
		bin_fail(x, GRPC_INTERNAL, x->kind == FETCH_BUNDLE ? "first request: EOF" : "first request failed: EOF");
		return;
	}
	x->half_closed = 1;
	bin_proceed(x);
}

static void bin_close(struct grpc_call *call, enum grpc_code code)
{
	gitaly_call_closed(grpc_call_user(call));
}

static const struct grpc_call_ops bin_ops = {
	.on_message = bin_message,
	.on_half_close = bin_half_close,
	.on_close = bin_close,
};

static void bin_start(struct grpc_call *call, struct gitaly *g, enum bundle_in_kind kind)
{
	struct bundle_in *x = xcalloc(1, sizeof(*x));
	reposvc_init(&x->op, g, call, bin_release);
	x->op.cancel = bin_cancel;
	x->kind = kind;
	x->fd = -1;
	strbuf_init(&x->path, 0);
	strbuf_init(&x->bundle, 0);
	strbuf_init(&x->pending, 0);
	strbuf_init(&x->queued, 0);
	strbuf_init(&x->tmp_path, 0);
	grpc_call_set_ops(call, &bin_ops, x);
}

static void fetch_bundle(struct grpc_call *call, void *data)
{
	bin_start(call, data, FETCH_BUNDLE);
}

static void create_from_bundle(struct grpc_call *call, void *data)
{
	bin_start(call, data, CREATE_FROM_BUNDLE);
}

void reposvc_register_bundle(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.RepositoryService/CreateBundle", create_bundle, g);
	gitaly_add_method(s, "/gitaly.RepositoryService/CreateBundleFromRefList", create_bundle_from_ref_list, g);
	gitaly_add_method(s, "/gitaly.RepositoryService/FetchBundle", fetch_bundle, g);
	gitaly_add_method(s, "/gitaly.RepositoryService/CreateRepositoryFromBundle", create_from_bundle, g);
}

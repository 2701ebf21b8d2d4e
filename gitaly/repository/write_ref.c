/*
 * Locked-file writes with votes (docs/technical/gitaly-node.md, "Votes"), and WriteRef: HEAD
 * through such a write, other refs through `git update-ref` whose
 * reference-transaction hook votes.
 */
#include "repository/repository.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/banned.h"

/* --- locked-file writes --- */

struct locked_write {
	struct gitaly_call *op;
	char *path, *lock;
	uint8_t vote[20];
	reposvc_written_fn done;
};

static void locked_end(struct locked_write *w, enum grpc_code code, const char *msg)
{
	unlink(w->lock); /* gone already after a successful rename */
	w->done(w->op, code, msg);
	free(w->path);
	free(w->lock);
	free(w);
}

static void post_voted(void *arg, enum grpc_code code, const char *msg)
{
	struct locked_write *w = arg;
	struct strbuf m = STRBUF_INIT;
	if (code != GRPC_OK)
		strbuf_addf(&m, "postimage vote: %s", msg);
	locked_end(w, code, m.buf);
	strbuf_release(&m);
}

static void pre_voted(void *arg, enum grpc_code code, const char *msg)
{
	struct locked_write *w = arg;
	struct strbuf m = STRBUF_INIT;
	char *slash;

	if (code != GRPC_OK) {
		strbuf_addf(&m, "voting on locked file: preimage vote: %s", msg);
		locked_end(w, code, m.buf);
		goto out;
	}
	if (gitaly_call_gone(w->op)) {
		locked_end(w, GRPC_CANCELLED, "context canceled");
		goto out;
	}
	if (rename(w->lock, w->path) < 0) {
		strbuf_addf(&m, "committing file: %s", strerror(errno));
		locked_end(w, GRPC_INTERNAL, m.buf);
		goto out;
	}
	strbuf_addstr(&m, w->path);
	slash = strrchr(m.buf, '/');
	if (slash && slash != m.buf) {
		strbuf_setlen(&m, (size_t)(slash - m.buf));
		reposvc_fsync_hierarchy(m.buf, m.buf);
	}
	strbuf_reset(&m);
	vote_cast(w->op->g, w->op->call, VOTE_PHASE_COMMITTED, w->vote, post_voted, w);
out:
	strbuf_release(&m);
}

int reposvc_write_locked(struct gitaly_call *op, const char *path, const void *data, size_t len,
			 mode_t mode, reposvc_written_fn done, struct strbuf *msg)
{
	struct strbuf lock = STRBUF_INIT;
	struct locked_write *w;
	const char *p = data;
	size_t left = len;
	int fd;

	if (gitaly_call_gone(op)) {
		strbuf_addstr(msg, "context canceled");
		return -1;
	}
	strbuf_addf(&lock, "%s.lock", path);
	fd = open(lock.buf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		strbuf_addf(msg, "locking file: %s", errno == EEXIST ? "file already locked" : strerror(errno));
		strbuf_release(&lock);
		return -1;
	}
	while (left) {
		ssize_t n = write(fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		p += n;
		left -= (size_t)n;
	}
	if (left || fsync(fd) < 0) {
		strbuf_addf(msg, "writing locked file: %s", strerror(errno));
		close(fd);
		unlink(lock.buf);
		strbuf_release(&lock);
		return -1;
	}
	close(fd);
	w = xcalloc(1, sizeof(*w));
	w->op = op;
	w->path = xstrdup(path);
	w->lock = strbuf_detach(&lock, NULL);
	w->done = done;
	gitaly_sha1(data, len, w->vote);
	vote_cast(op->g, op->call, VOTE_PHASE_PREPARED, w->vote, pre_voted, w);
	return 0;
}

/* --- WriteRef --- */

struct write_ref {
	struct gitaly_call op;
	Gitaly__WriteRefRequest *req;
	char *path;
	struct git_cmd *cmd;
	unsigned hexlen;            /* 40 (sha1) or 64 (sha256) */
	struct strbuf newoid, oldoid;
	int new_zero, old_zero;
	struct cleanup_writer *writer;   /* from the start to the release (core/cleanup.h) */
};

static void write_ref_release(struct gitaly_call *op)
{
	struct write_ref *w = container_of(op, struct write_ref, op);
	cleanup_writer_leave(w->writer);   /* every process of ours exited: its done fired */
	msg_free(w->req);
	free(w->path);
	strbuf_release(&w->newoid);
	strbuf_release(&w->oldoid);
	free(w);
}

static void write_ref_cancel(struct gitaly_call *op)
{
	reposvc_kill(container_of(op, struct write_ref, op)->cmd);
}

static void reply_ok(struct write_ref *w)
{
	Gitaly__WriteRefResponse resp = GITALY__WRITE_REF_RESPONSE__INIT;
	reposvc_reply(&w->op, &resp);
}

static void head_written(struct gitaly_call *op, enum grpc_code code, const char *msg)
{
	struct write_ref *w = container_of(op, struct write_ref, op);
	if (code == GRPC_OK)
		reply_ok(w);
	else
		reposvc_finishf(op, code, "setting default branch: committing temporary HEAD: %s", msg);
}

static int all_zero(const uint8_t *s, size_t len)
{
	if (len != 40 && len != 64)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (s[i] != '0')
			return 0;
	return 1;
}

static void update_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct write_ref *w = arg;
	w->cmd = NULL;
	if (status == 0) {
		reply_ok(w);
		return;
	}
	if (strstr(err->buf, "cannot lock ref '") && strstr(err->buf, "': File exists")) {
		reposvc_finish(&w->op, GRPC_ABORTED, "reference is locked already");
		return;
	}
	while (err->len && err->buf[err->len - 1] == '\n')
		strbuf_setlen(err, err->len - 1);
	reposvc_finishf(&w->op, gitaly_call_gone(&w->op) ? GRPC_CANCELLED : GRPC_INTERNAL,
			"error when running update-ref command: %s", err->buf);
}

static void run_update_ref(struct write_ref *w)
{
	static const char *const flags[] = { "-z", "--stdin", NULL };
	struct strbuf in = STRBUF_INIT, msg = STRBUF_INIT;
	struct git_call gc = { 0 };

	if (gitaly_call_gone(&w->op)) {
		reposvc_finish(&w->op, GRPC_CANCELLED, "context canceled");
		return;
	}
	strbuf_add(&in, "start", 6);
	strbuf_addstr(&in, "update ");
	strbuf_add(&in, w->req->ref.data, w->req->ref.len);
	strbuf_addch(&in, '\0');
	strbuf_add(&in, w->newoid.buf, w->newoid.len + 1);
	strbuf_add(&in, w->oldoid.buf, w->oldoid.len + 1);
	strbuf_add(&in, "prepare", 8);
	strbuf_add(&in, "commit", 7);
	gc.git_dir = w->path;
	gc.repo = w->req->repository;
	gc.subcmd = "update-ref";
	gc.flags = flags;
	gc.hooks = HOOK_REFERENCE_TRANSACTION; /* the hook votes on the update */
	gc.rpc = w->op.call;
	if (gitaly_git_capture(w->op.g, &gc, in.buf, in.len, 64 * 1024, update_done, w, &w->cmd, &msg) < 0)
		reposvc_finishf(&w->op, GRPC_INTERNAL, "error when running creating new updater: %s", msg.buf);
	strbuf_release(&in);
	strbuf_release(&msg);
}

/* One line of rev-parse output must be a full object id. */
static int take_oid(struct write_ref *w, const char **p, const char *end, struct strbuf *oid)
{
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
	if (n != w->hexlen || strspn(*p, "0123456789abcdef") < n)
		return -1;
	strbuf_reset(oid);
	strbuf_add(oid, *p, n);
	*p += n + (nl ? 1 : 0);
	return 0;
}

static void old_resolved(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct write_ref *w = arg;
	const char *p = out->buf;
	w->cmd = NULL;
	if (status != 0 || take_oid(w, &p, out->buf + out->len, &w->oldoid) < 0) {
		reposvc_finish(&w->op, GRPC_INTERNAL, "resolving old revision: reference not found");
		return;
	}
	run_update_ref(w);
}

static void resolve(struct write_ref *w, const char *const *flags, const ProtobufCBinaryData *rev,
		    git_capture_fn done)
{
	struct strbuf r = STRBUF_INIT, msg = STRBUF_INIT;
	const char *args[2] = { NULL, NULL };
	struct git_call gc = { 0 };

	if (rev) {
		strbuf_add(&r, rev->data, rev->len);
		strbuf_addstr(&r, "^{object}");
		args[0] = r.buf;
	}
	gc.git_dir = w->path;
	gc.repo = w->req->repository;
	gc.subcmd = "rev-parse";
	gc.flags = flags;
	gc.args = args;
	if (gitaly_git_capture(w->op.g, &gc, NULL, 0, 4096, done, w, &w->cmd, &msg) < 0)
		reposvc_finishf(&w->op, GRPC_INTERNAL, "%s", msg.buf);
	strbuf_release(&r);
	strbuf_release(&msg);
}

static void new_resolved(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const verify[] = { "--verify", NULL };
	struct write_ref *w = arg;
	const char *p = out->buf, *end = out->buf + out->len;

	w->cmd = NULL;
	if (gitaly_call_gone(&w->op)) {
		reposvc_finish(&w->op, GRPC_CANCELLED, "context canceled");
		return;
	}
	/* first line: the object format, which decides what the zero object id looks like */
	if (status == 0 && !strncmp(p, "sha256\n", 7)) {
		w->hexlen = 64;
		p += 7;
	} else if (status == 0 && !strncmp(p, "sha1\n", 5)) {
		w->hexlen = 40;
		p += 5;
	}
	if (!w->hexlen || (w->new_zero && w->req->revision.len != w->hexlen) ||
	    (!w->new_zero && take_oid(w, &p, end, &w->newoid) < 0)) {
		reposvc_finish(&w->op, GRPC_INTERNAL, "resolving new revision: reference not found");
		return;
	}
	if (w->new_zero) {
		strbuf_reset(&w->newoid);
		for (unsigned i = 0; i < w->hexlen; i++)
			strbuf_addch(&w->newoid, '0');
	}
	if (w->req->old_revision.len && !(w->old_zero && w->req->old_revision.len == w->hexlen)) {
		resolve(w, verify, &w->req->old_revision, old_resolved);
		return;
	}
	strbuf_reset(&w->oldoid);
	if (w->old_zero && w->req->old_revision.len == w->hexlen)
		for (unsigned i = 0; i < w->hexlen; i++)
			strbuf_addch(&w->oldoid, '0');
	run_update_ref(w);
}

/* Our turn as a writer in the repository: stale locks are gone. */
static void write_ref_go(void *arg)
{
	struct write_ref *w = arg;
	Gitaly__WriteRefRequest *req = w->req;
	struct strbuf msg = STRBUF_INIT;

	if (gitaly_call_gone(&w->op)) {
		reposvc_finish(&w->op, GRPC_CANCELLED, "context canceled");
		return;
	}
	if (req->ref.len == 4) {
		/* HEAD: a symbolic ref written as a locked file, voted on by content */
		struct strbuf content = STRBUF_INIT, head = STRBUF_INIT;
		strbuf_addstr(&content, "ref: ");
		strbuf_add(&content, req->revision.data, req->revision.len);
		strbuf_addch(&content, '\n');
		strbuf_addf(&head, "%s/HEAD", w->path);
		if (reposvc_write_locked(&w->op, head.buf, content.buf, content.len, 0644, head_written, &msg) < 0)
			reposvc_finishf(&w->op, GRPC_INTERNAL, "setting default branch: committing temporary HEAD: %s",
					msg.buf);
		strbuf_release(&content);
		strbuf_release(&head);
	} else {
		static const char *const flags[] = { "--show-object-format", NULL };
		w->new_zero = all_zero(req->revision.data, req->revision.len);
		w->old_zero = all_zero(req->old_revision.data, req->old_revision.len);
		resolve(w, flags, w->new_zero ? NULL : &req->revision, new_resolved);
	}
	strbuf_release(&msg);
}

void reposvc_write_ref(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__WriteRefRequest *req = msg_unpack(call, &gitaly__write_ref_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct write_ref *w;
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto fail;
	}
	if (gitaly_check_revision((const char *)req->ref.data, req->ref.len, &msg) < 0) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "invalid ref: %s", msg.buf);
		goto fail;
	}
	if (gitaly_check_revision((const char *)req->revision.data, req->revision.len, &msg) < 0) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "invalid revision: %s", msg.buf);
		goto fail;
	}
	if (req->old_revision.len &&
	    gitaly_check_revision((const char *)req->old_revision.data, req->old_revision.len, &msg) < 0) {
		grpc_call_finishf(call, GRPC_INVALID_ARGUMENT, "invalid OldRevision: %s", msg.buf);
		goto fail;
	}
	if (!(req->ref.len == 4 && !memcmp(req->ref.data, "HEAD", 4)) &&
	    !(req->ref.len >= 5 && !memcmp(req->ref.data, "refs/", 5))) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "ref has to be a full reference", NULL);
		goto fail;
	}

	w = xcalloc(1, sizeof(*w));
	reposvc_init(&w->op, g, call, write_ref_release);
	w->op.cancel = write_ref_cancel;
	w->req = req;
	w->path = strbuf_detach(&path, NULL);
	strbuf_init(&w->newoid, 0);
	strbuf_init(&w->oldoid, 0);

	if (req->ref.len == 4 &&
	    reposvc_check_refname((const char *)req->revision.data, req->revision.len, &msg) < 0) {
		grpc_call_finishf(call, GRPC_INTERNAL, "setting default branch: \"%.*s\" is a malformed refname",
				  (int)req->revision.len, (const char *)req->revision.data);
		write_ref_release(&w->op);
		goto out;
	}
	gitaly_call_watch(&w->op);
	w->writer = cleanup_writer_enter(g, w->path, write_ref_go, w);
	goto out;
fail:
	msg_free(req);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
}

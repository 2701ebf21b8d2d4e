/*
 * DiffService: FindChangedPaths (`git diff-tree --stdin` over resolved
 * revisions) and GetPatchID (`git diff | git patch-id --stable`);
 * docs/technical/diff.md. Both run their git processes here rather than
 * through rd_lines: one needs stdin, the other a pipe between two gits.
 * Output is parsed as it arrives and git is paused while the call's send
 * queue (or patch-id's stdin) is full.
 */
#include "read/read.h"
#include "read/diff.h"
#include "base/util.h"
#include "diff.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CP_TOKEN_MAX (16u * 1024 * 1024)
#define PATCH_ID_OUT_MAX (64 * 1024)

/* --- FindChangedPaths --- */

struct cp_rev {
	const char *rev;
	const char *type;       /* "commit" or "tree" */
	const char *what;       /* error prefix: "resolving commit" ... */
	char oid[CATFILE_HEXSZ_MAX + 1];
};

struct changed_paths {
	struct rd rd;
	Gitaly__FindChangedPathsRequest *req;
	struct cp_rev *revs;
	size_t nrev, next;
	struct strbuf rev;              /* "<rev>^{type}" being resolved */
	struct git_cmd *cmd;            /* diff-tree, until it exited */
	struct strbuf buf, hdr;
	int state;                      /* 0: before ':', 1: header, 2: path */
	int paused, failed;
	Gitaly__ChangedPaths **batch;
	size_t nbatch, alloc, bytes;
};

static void cp_free_batch(struct changed_paths *x)
{
	for (size_t i = 0; i < x->nbatch; i++) {
		free(x->batch[i]->path.data);
		free(x->batch[i]);
	}
	x->nbatch = 0;
	x->bytes = 0;
}

static void cp_free(struct rd *rd)
{
	struct changed_paths *x = (struct changed_paths *)rd;
	free(x->revs);
	strbuf_release(&x->rev);
	strbuf_release(&x->buf);
	strbuf_release(&x->hdr);
	cp_free_batch(x);
	free(x->batch);
}

static void cp_cancel(struct gitaly_call *c)
{
	struct changed_paths *x = container_of(c, struct changed_paths, rd.base);
	if (x->cmd)
		git_cmd_stop(x->cmd);
}

static void cp_flush(struct changed_paths *x)
{
	Gitaly__FindChangedPathsResponse resp = GITALY__FIND_CHANGED_PATHS_RESPONSE__INIT;
	if (!x->nbatch)
		return;
	resp.paths = x->batch;
	resp.n_paths = x->nbatch;
	rd_send(&x->rd, &resp);
	cp_free_batch(x);
}

static void cp_writable(struct rd *rd)
{
	struct changed_paths *x = (struct changed_paths *)rd;
	if (x->paused && x->cmd && !rd_full(rd)) {
		x->paused = 0;
		git_cmd_resume_stdout(x->cmd);
	}
}

static void cp_fail(struct changed_paths *x, enum grpc_code code, const char *what, const char *s, size_t len)
{
	x->failed = 1;
	rd_finish(&x->rd, code, "parsing err: next path err: %s%.*s", what, (int)MIN(len, (size_t)200), s);
}

static int cp_mode(const char *s, size_t len, int32_t *out)
{
	int64_t v = 0;
	if (!len)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '7')
			return -1;
		v = v * 8 + (s[i] - '0');
		if (v > INT32_MAX)
			return -1;
	}
	*out = (int32_t)v;
	return 0;
}

/*
 * One entry: x->hdr holds "<modes...> <oids...> <status>" after the first
 * colon (more colons for combined diffs, one per parent), `path` its path.
 */
static int cp_entry(struct changed_paths *x, const char *path, size_t path_len)
{
	const char *h = x->hdr.buf;
	size_t hl = x->hdr.len, nf = 1, src, last_colon = 0;
	const char *f[64 * 2 + 4];
	size_t fl[64 * 2 + 4];
	int has_colon = 0;

	for (size_t i = 0; i < hl; i++)
		if (h[i] == ' ')
			nf++;
	if (nf > ARRAY_SIZE(f)) {
		cp_fail(x, GRPC_UNKNOWN, "git diff-tree parsing failed on: ", h, hl);
		return -1;
	}
	nf = 0;
	f[0] = h;
	for (size_t i = 0; i <= hl; i++) {
		if (i == hl || h[i] == ' ') {
			fl[nf] = (size_t)(h + i - f[nf]);
			nf++;
			if (i < hl)
				f[nf] = h + i + 1;
		}
	}
	for (size_t i = 0; i < fl[0]; i++) {
		if (f[0][i] == ':') {
			last_colon = i;
			has_colon = 1;
		}
	}
	src = has_colon ? last_colon + 2 : 1;
	if (src - 1 > fl[0]) {
		cp_fail(x, GRPC_UNKNOWN, "git diff-tree parsing failed on: ", h, hl);
		return -1;
	}
	f[0] += src - 1;
	fl[0] -= src - 1;
	if (nf != 2 * src + 3 || fl[nf - 1] != src) {
		cp_fail(x, GRPC_UNKNOWN, "git diff-tree parsing failed on: ", h, hl);
		return -1;
	}
	for (size_t i = 0; i < src; i++) {
		Gitaly__ChangedPaths *cp;
		int32_t old_mode, new_mode;
		char st = f[nf - 1][i];
		int status;
		size_t sz;
		if (cp_mode(f[i], fl[i], &old_mode) < 0) {
			cp_fail(x, GRPC_UNKNOWN, "parsing old mode: invalid syntax: ", f[i], fl[i]);
			return -1;
		}
		if (cp_mode(f[src], fl[src], &new_mode) < 0) {
			cp_fail(x, GRPC_UNKNOWN, "parsing new mode: invalid syntax: ", f[src], fl[src]);
			return -1;
		}
		switch (st) {
		case 'M': status = GITALY__CHANGED_PATHS__STATUS__MODIFIED; break;
		case 'D': status = GITALY__CHANGED_PATHS__STATUS__DELETED; break;
		case 'T': status = GITALY__CHANGED_PATHS__STATUS__TYPE_CHANGE; break;
		case 'C': status = GITALY__CHANGED_PATHS__STATUS__COPIED; break;
		case 'A': status = GITALY__CHANGED_PATHS__STATUS__ADDED; break;
		default:
			cp_fail(x, GRPC_INTERNAL, "unknown changed paths returned: ", f[nf - 1], fl[nf - 1]);
			return -1;
		}
		cp = xcalloc(1, sizeof(*cp));
		gitaly__changed_paths__init(cp);
		cp->path.len = path_len;
		cp->path.data = xmemdup(path, path_len + 1);
		cp->status = status;
		cp->old_mode = old_mode;
		cp->new_mode = new_mode;
		sz = protobuf_c_message_get_packed_size(&cp->base);
		/* upstream's chunker: cut before a message reaches its size */
		if (x->nbatch && x->bytes + sz >= BATCH_BYTES)
			cp_flush(x);
		ALLOC_GROW(x->batch, x->nbatch + 1, x->alloc);
		x->batch[x->nbatch++] = cp;
		x->bytes += sz;
	}
	return 0;
}

/* Entries are "[:]:<header>\0<path>\0"; anything before the first colon (tree ids) is skipped. */
static void cp_parse(struct changed_paths *x)
{
	size_t off = 0;
	while (!x->failed && x->rd.base.call) {
		char *s = x->buf.buf + off, *p;
		size_t avail = x->buf.len - off;
		if (x->state == 0) {
			p = memchr(s, ':', avail);
			if (!p) {
				off = x->buf.len;
				break;
			}
			off += (size_t)(p - s) + 1;
			x->state = 1;
			continue;
		}
		p = memchr(s, '\0', avail);
		if (!p) {
			if (avail > CP_TOKEN_MAX)
				cp_fail(x, GRPC_INTERNAL, "token too long", "", 0);
			break;
		}
		if (x->state == 1) {
			strbuf_reset(&x->hdr);
			strbuf_add(&x->hdr, s, (size_t)(p - s));
			x->state = 2;
		} else {
			if (cp_entry(x, s, (size_t)(p - s)) < 0)
				break;
			x->state = 0;
		}
		off += (size_t)(p - s) + 1;
	}
	if (off)
		strbuf_remove_front(&x->buf, MIN(off, x->buf.len));
}

static void cp_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct changed_paths *x = git_cmd_user(cmd);
	if (!x->rd.base.call || x->failed)
		return;
	strbuf_add(&x->buf, buf, len);
	cp_parse(x);
	if (x->rd.base.call && !x->failed && rd_full(&x->rd) && !x->paused) {
		x->paused = 1;
		git_cmd_pause_stdout(cmd);
	}
}

static void cp_exit(struct git_cmd *cmd, int status)
{
	struct changed_paths *x = git_cmd_user(cmd);
	x->cmd = NULL;
	if (x->rd.base.call && !x->failed) {
		/* an entry cut short at the end is dropped, as upstream's reader does */
		if (status != 0) {
			diff_git_failed(&x->rd, GRPC_FAILED_PRECONDITION, "cmd wait err: ", status);
		} else {
			cp_flush(x);
			rd_ok(&x->rd);
		}
	}
	gitaly_call_drop(&x->rd.base);
}

static const struct git_cmd_ops cp_ops = {
	.on_stdout = cp_stdout,
	.on_exit = cp_exit,
};

/* The deprecated `commits` field: still honoured, as upstream does. */
static size_t legacy_commits(const Gitaly__FindChangedPathsRequest *req, char ***out)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	*out = req->commits;
	return req->n_commits;
#pragma GCC diagnostic pop
}

static void cp_run(struct changed_paths *x)
{
	static const char *const base_flags[] = { "-z", "--stdin", "-r", "--no-renames", "--no-commit-id",
						  "--diff-filter=AMDTC" };
	const char *flags[ARRAY_SIZE(base_flags) + 2];
	struct strbuf in = STRBUF_INIT, msg = STRBUF_INIT;
	Gitaly__FindChangedPathsRequest *req = x->req;
	struct git_call gc;
	size_t k = 0, nf = 0;
	char **commits;
	size_t n_commits = legacy_commits(req, &commits);
	int rc;

	/* the resolved ids, one request a line */
	if (n_commits) {
		for (size_t i = 0; i < n_commits; i++)
			strbuf_addf(&in, "%s\n", x->revs[k++].oid);
	} else {
		for (size_t i = 0; i < req->n_requests; i++) {
			const Gitaly__FindChangedPathsRequest__Request *r = req->requests[i];
			if (r->type_case == GITALY__FIND_CHANGED_PATHS_REQUEST__REQUEST__TYPE_COMMIT_REQUEST) {
				strbuf_addstr(&in, x->revs[k++].oid);
				for (size_t j = 0; j < r->commit_request->n_parent_commit_revisions; j++)
					strbuf_addf(&in, " %s", x->revs[k++].oid);
			} else if (r->type_case == GITALY__FIND_CHANGED_PATHS_REQUEST__REQUEST__TYPE_TREE_REQUEST) {
				strbuf_addf(&in, "%s %s", x->revs[k].oid, x->revs[k + 1].oid);
				k += 2;
			}
			strbuf_addch(&in, '\n');
		}
	}
	if (!in.len)
		strbuf_addch(&in, '\n');
	for (size_t i = 0; i < ARRAY_SIZE(base_flags); i++)
		flags[nf++] = base_flags[i];
	/* by default merges are diffed against each parent; ALL_PARENTS gives the combined diff */
	flags[nf++] = req->merge_commit_diff_mode ==
				      GITALY__FIND_CHANGED_PATHS_REQUEST__MERGE_COMMIT_DIFF_MODE__MERGE_COMMIT_DIFF_MODE_ALL_PARENTS
			      ? "-c"
			      : "-m";
	flags[nf] = NULL;
	rd_git_call(&x->rd, &gc, "diff-tree");
	gc.flags = flags;
	gitaly_call_hold(&x->rd.base);
	rc = gitaly_git_spawn(x->rd.base.g, &gc, 1, 1, &cp_ops, x, &x->cmd, &msg);
	if (rc < 0) {
		x->cmd = NULL;
		x->rd.base.holds--;   /* nothing started */
		rd_finish(&x->rd, GRPC_INTERNAL, "cmd err: %s", msg.buf);
	} else {
		git_cmd_write_stdin(x->cmd, in.buf, in.len);
		git_cmd_close_stdin(x->cmd);
	}
	strbuf_release(&in);
	strbuf_release(&msg);
}

static void cp_resolve_next(struct rd *rd);

static void cp_quote(struct strbuf *sb, const char *s)
{
	strbuf_addch(sb, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			strbuf_addch(sb, '\\');
		strbuf_addch(sb, *s);
	}
	strbuf_addch(sb, '"');
}

static void cp_not_found(struct changed_paths *x, const struct cp_rev *r)
{
	struct strbuf q = STRBUF_INIT;
	cp_quote(&q, r->rev);
	rd_finish(&x->rd, GRPC_NOT_FOUND, "%s: revision can not be found: %s", r->what, q.buf);
	strbuf_release(&q);
}

static uint64_t cp_info(void *arg, const struct catfile_info *info)
{
	struct changed_paths *x = arg;
	struct cp_rev *r = &x->revs[x->next];
	memcpy(r->oid, info->oid, info->oid_len);
	r->oid[info->oid_len] = '\0';
	return 0;
}

static void cp_resolved(void *arg, int status)
{
	struct changed_paths *x = arg;
	struct cp_rev *r = &x->revs[x->next];
	if (!x->rd.base.call)
		return;
	if (status == CATFILE_MISSING) {
		cp_not_found(x, r);
		return;
	}
	if (status < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "%s: %s", r->what, strerror(-status));
		return;
	}
	x->next++;
	cp_resolve_next(&x->rd);
}

static const struct catfile_read_ops cp_info_ops = { cp_info, NULL, cp_resolved };

/* Each revision is peeled to the type it must have, one after the other, as upstream checks them. */
static void cp_resolve_next(struct rd *rd)
{
	struct changed_paths *x = (struct changed_paths *)rd;
	struct cp_rev *r;
	if (x->next == x->nrev) {
		/* the object reader is no longer needed: back to the cache */
		catfile_release(rd->cf);
		rd->cf = NULL;
		cp_run(x);
		return;
	}
	r = &x->revs[x->next];
	if (!*r->rev) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "%s: revision cannot be empty", r->what);
		return;
	}
	if (strchr(r->rev, '\n')) {
		cp_not_found(x, r);
		return;
	}
	strbuf_reset(&x->rev);
	strbuf_addf(&x->rev, "%s^{%s}", r->rev, r->type);
	if (catfile_info(rd->cf, x->rev.buf, x->rev.len, &cp_info_ops, x) < 0)
		rd_finish(rd, GRPC_INTERNAL, "getting object info reader: object reader failed");
}

static void cp_add_rev(struct changed_paths *x, size_t *alloc, const char *rev, const char *type, const char *what)
{
	ALLOC_GROW(x->revs, x->nrev + 1, *alloc);
	memset(&x->revs[x->nrev], 0, sizeof(x->revs[0]));
	x->revs[x->nrev].rev = rev ? rev : "";
	x->revs[x->nrev].type = type;
	x->revs[x->nrev].what = what;
	x->nrev++;
}

static void find_changed_paths(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindChangedPathsRequest *req =
		msg_unpack(call, &gitaly__find_changed_paths_request__descriptor, buf, len);
	struct changed_paths *x;
	size_t alloc = 0, n_commits;
	char **commits;

	if (!req)
		return;
	x = (struct changed_paths *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	x->rd.on_free = cp_free;
	x->rd.on_writable = cp_writable;
	x->rd.base.cancel = cp_cancel;
	strbuf_init(&x->rev, 0);
	strbuf_init(&x->buf, 0);
	strbuf_init(&x->hdr, 0);
	n_commits = legacy_commits(req, &commits);
	if (n_commits && req->n_requests) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "cannot specify both commits and requests");
		return;
	}
	for (size_t i = 0; i < n_commits; i++)
		cp_add_rev(x, &alloc, commits[i], "commit", "resolving commit");
	for (size_t i = 0; i < req->n_requests; i++) {
		const Gitaly__FindChangedPathsRequest__Request *r = req->requests[i];
		if (r->type_case == GITALY__FIND_CHANGED_PATHS_REQUEST__REQUEST__TYPE_COMMIT_REQUEST) {
			cp_add_rev(x, &alloc, r->commit_request->commit_revision, "commit", "resolving commit");
			for (size_t j = 0; j < r->commit_request->n_parent_commit_revisions; j++)
				cp_add_rev(x, &alloc, r->commit_request->parent_commit_revisions[j], "commit",
					   "resolving commit parent");
		} else if (r->type_case == GITALY__FIND_CHANGED_PATHS_REQUEST__REQUEST__TYPE_TREE_REQUEST) {
			cp_add_rev(x, &alloc, r->tree_request->left_tree_revision, "tree", "resolving left tree");
			cp_add_rev(x, &alloc, r->tree_request->right_tree_revision, "tree", "resolving right tree");
		} else {
			rd_finish(&x->rd, GRPC_UNKNOWN, "unknown FindChangedPathsRequest type");
			return;
		}
	}
	rd_lease(&x->rd, cp_resolve_next);
}

/* --- GetPatchID: git diff --full-index | git patch-id --stable --- */

struct patch_id {
	struct rd rd;
	struct git_cmd *diff, *pid;     /* each NULL once it exited */
	int diff_status, pid_status, diff_paused;
	struct strbuf out;
};

static void pi_free(struct rd *rd)
{
	strbuf_release(&((struct patch_id *)rd)->out);
}

static void pi_cancel(struct gitaly_call *c)
{
	struct patch_id *x = container_of(c, struct patch_id, rd.base);
	if (x->diff)
		git_cmd_stop(x->diff);
	if (x->pid)
		git_cmd_stop(x->pid);
}

static void pi_answer(struct patch_id *x)
{
	Gitaly__GetPatchIDResponse resp = GITALY__GET_PATCH_IDRESPONSE__INIT;
	char *sp;
	if (!x->rd.base.call)
		return;
	if (x->pid_status != 0) {
		diff_git_failed(&x->rd, GRPC_INTERNAL, "waiting for patch-id: ", x->pid_status);
		return;
	}
	if (x->diff_status != 0) {
		diff_git_failed(&x->rd, GRPC_INTERNAL, "waiting for git-diff: ", x->diff_status);
		return;
	}
	if (!x->out.len) {
		rd_finish(&x->rd, GRPC_FAILED_PRECONDITION, "no difference between old and new revision");
		return;
	}
	/* "<patch id> <commit id>": the commit is all zeros for a bare diff */
	sp = memchr(x->out.buf, ' ', x->out.len);
	if (!sp) {
		rd_finish(&x->rd, GRPC_FAILED_PRECONDITION, "unexpected patch ID format");
		return;
	}
	*sp = '\0';
	resp.patch_id = x->out.buf;
	rd_send(&x->rd, &resp);
	rd_ok(&x->rd);
}

static void pi_diff_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct patch_id *x = git_cmd_user(cmd);
	/* once patch-id is gone the diff is drained and dropped */
	if (!x->pid || git_cmd_write_stdin(x->pid, buf, len) < 0)
		return;
	if (git_cmd_stdin_queued(x->pid) > GIT_CMD_STDIN_HIGH && !x->diff_paused) {
		x->diff_paused = 1;
		git_cmd_pause_stdout(cmd);
	}
}

static void pi_diff_exit(struct git_cmd *cmd, int status)
{
	struct patch_id *x = git_cmd_user(cmd);
	x->diff = NULL;
	x->diff_status = status;
	if (x->pid)
		git_cmd_close_stdin(x->pid);
	else
		pi_answer(x);
	gitaly_call_drop(&x->rd.base);
}

static void pi_resume_diff(struct patch_id *x)
{
	if (x->diff_paused && x->diff) {
		x->diff_paused = 0;
		git_cmd_resume_stdout(x->diff);
	}
}

static void pi_pid_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct patch_id *x = git_cmd_user(cmd);
	if (x->out.len + len <= PATCH_ID_OUT_MAX)
		strbuf_add(&x->out, buf, len);
}

static void pi_pid_drained(struct git_cmd *cmd)
{
	pi_resume_diff(git_cmd_user(cmd));
}

static void pi_pid_exit(struct git_cmd *cmd, int status)
{
	struct patch_id *x = git_cmd_user(cmd);
	x->pid = NULL;
	x->pid_status = status;
	pi_resume_diff(x);
	if (!x->diff)
		pi_answer(x);
	gitaly_call_drop(&x->rd.base);
}

static const struct git_cmd_ops pi_diff_ops = {
	.on_stdout = pi_diff_stdout,
	.on_exit = pi_diff_exit,
};

static const struct git_cmd_ops pi_pid_ops = {
	.on_stdout = pi_pid_stdout,
	.on_stdin_drained = pi_pid_drained,
	.on_exit = pi_pid_exit,
};

static void get_patch_id(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	static const char *const pid_flags[] = { "--stable", NULL };
	static const char *const diff_flags[] = { "--full-index", NULL };
	Gitaly__GetPatchIDRequest *req = msg_unpack(call, &gitaly__get_patch_idrequest__descriptor, buf, len);
	struct strbuf msg = STRBUF_INIT, oldrev = STRBUF_INIT, newrev = STRBUF_INIT;
	struct patch_id *x;
	struct git_call gc;
	const char *args[3];

	if (!req)
		return;
	x = (struct patch_id *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->rd.on_free = pi_free;
	x->rd.base.cancel = pi_cancel;
	strbuf_init(&x->out, 0);
	if (!req->old_revision.len) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "empty OldRevision");
		goto out;
	}
	if (!req->new_revision.len) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "empty NewRevision");
		goto out;
	}
	if (rd_has_nul(req->old_revision.data, req->old_revision.len) ||
	    rd_has_nul(req->new_revision.data, req->new_revision.len)) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "revision contains NUL byte");
		goto out;
	}
	strbuf_add(&oldrev, req->old_revision.data, req->old_revision.len);
	strbuf_add(&newrev, req->new_revision.data, req->new_revision.len);
	args[0] = oldrev.buf;
	args[1] = newrev.buf;
	args[2] = NULL;
	/* upstream builds the diff command first: it is refused before anything runs, without a code */
	if (diff_dash_arg(args, &msg) < 0) {
		rd_finish(&x->rd, GRPC_UNKNOWN, "spawning diff: %s", msg.buf);
		goto out;
	}

	/* patch-id reads no repository */
	rd_git_call(&x->rd, &gc, "patch-id");
	gc.git_dir = NULL;
	gc.repo = NULL;
	gc.flags = pid_flags;
	gitaly_call_hold(&x->rd.base);
	if (gitaly_git_spawn(x->rd.base.g, &gc, 1, 1, &pi_pid_ops, x, &x->pid, &msg) < 0) {
		x->pid = NULL;
		x->rd.base.holds--;
		rd_finish(&x->rd, GRPC_INTERNAL, "spawning patch-id: %s", msg.buf);
		goto out;
	}
	rd_git_call(&x->rd, &gc, "diff");
	gc.flags = diff_flags;
	gc.args = args;
	gitaly_call_hold(&x->rd.base);
	if (gitaly_git_spawn(x->rd.base.g, &gc, 0, 1, &pi_diff_ops, x, &x->diff, &msg) < 0) {
		x->diff = NULL;
		x->rd.base.holds--;
		git_cmd_close_stdin(x->pid);
		rd_finish(&x->rd, GRPC_INTERNAL, "spawning diff: %s", msg.buf);
	}
out:
	strbuf_release(&msg);
	strbuf_release(&oldrev);
	strbuf_release(&newrev);
}

void diff_register_paths(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.DiffService/FindChangedPaths", find_changed_paths, g);
	gitaly_add_unary(s, "/gitaly.DiffService/GetPatchID", get_patch_id, g);
}

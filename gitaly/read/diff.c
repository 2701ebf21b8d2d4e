/*
 * DiffService: CommitDiff, CommitDelta, DiffStats, RawDiff and RawPatch
 * (docs/technical/diff.md). FindChangedPaths and GetPatchID are in
 * diff_paths.c.
 *
 * Each call runs one git process (upstream does the same) after a
 * `rev-parse --show-object-format` for the ids' length; its output is
 * parsed as it comes and sent file by file, and git is paused while the
 * call's send queue is full, so memory stays bounded by one file's patch
 * whatever the size of the diff.
 */
#include "read/read.h"
#include "read/diff.h"
#include "read/diff_parse.h"
#include "base/util.h"
#include "hooks/hooks.h"
#include "diff.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Patches are cut into messages of this many bytes (upstream's threshold). */
#define PATCH_MSG_BYTES (5 * 1024)
/* DiffStats: stats per message. */
#define NUMSTAT_BATCH 1000

int diff_check_commits(struct rd *rd, const char *left, const char *right)
{
	if (!left || !*left) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "empty LeftCommitId");
		return -1;
	}
	if (!right || !*right) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "empty RightCommitId");
		return -1;
	}
	return 0;
}

int diff_dash_arg(const char *const *args, struct strbuf *msg)
{
	for (; *args; args++) {
		if (**args == '-') {
			strbuf_addstr(msg, "positional arg ");
			hooks_quote(msg, *args, strlen(*args));
			strbuf_addstr(msg, " cannot start with dash '-': invalid argument");
			return -1;
		}
	}
	return 0;
}

/* diff_dash_arg() as upstream's `cmd: ` INTERNAL error: -1 after finishing. */
static int rd_dash_arg(struct rd *rd, const char *const *args)
{
	struct strbuf msg = STRBUF_INIT;
	int rc = diff_dash_arg(args, &msg);
	if (rc < 0)
		rd_finish(rd, GRPC_INTERNAL, "cmd: %s", msg.buf);
	strbuf_release(&msg);
	return rc;
}

void diff_git_failed(struct rd *rd, enum grpc_code code, const char *prefix, int status)
{
	struct strbuf sb = STRBUF_INIT;
	if (prefix)
		strbuf_addstr(&sb, prefix);
	gitaly_describe_status(&sb, status);
	rd_finish(rd, code, "%s", sb.buf);
	strbuf_release(&sb);
}

/* --- CommitDiff and CommitDelta: `git diff --raw [--patch]` through the parser --- */

struct commit_diff {
	struct rd rd;
	int delta;                       /* CommitDelta */
	const char *left, *right;
	ProtobufCBinaryData *paths;
	size_t n_paths;
	struct strvec flags, args, pathv;
	struct diff_limits lim;
	struct diff_ext_limit *ext;
	struct diff_parser parser;
	int parser_ready;
	Gitaly__CommitDelta **batch;     /* CommitDelta's pending deltas */
	size_t nbatch, alloc, batch_bytes;
};

static void cd_free_batch(struct commit_diff *x)
{
	for (size_t i = 0; i < x->nbatch; i++) {
		free(x->batch[i]->from_path.data);
		free(x->batch[i]->to_path.data);
		free(x->batch[i]->from_id);
		free(x->batch[i]->to_id);
		free(x->batch[i]);
	}
	x->nbatch = 0;
	x->batch_bytes = 0;
}

static void cd_free(struct rd *rd)
{
	struct commit_diff *x = (struct commit_diff *)rd;
	strvec_clear(&x->flags);
	strvec_clear(&x->args);
	strvec_clear(&x->pathv);
	free(x->ext);
	if (x->parser_ready)
		diff_parser_release(&x->parser);
	cd_free_batch(x);
	free(x->batch);
}

static void cd_writable(struct rd *rd)
{
	if (!rd_full(rd))
		rd_lines_resume(rd);
}

static ProtobufCBinaryData bin(const struct strbuf *sb)
{
	ProtobufCBinaryData b = { sb->len, (uint8_t *)sb->buf };
	return b;
}

static int cd_send_file(struct commit_diff *x, const struct diff_file *f)
{
	Gitaly__CommitDiffResponse resp = GITALY__COMMIT_DIFF_RESPONSE__INIT;
	const char *patch = f->patch.buf;
	size_t left = f->patch.len;

	resp.from_path = bin(&f->from_path);
	resp.to_path = bin(&f->to_path);
	resp.from_id = (char *)f->from_id;
	resp.to_id = (char *)f->to_id;
	resp.old_mode = f->old_mode;
	resp.new_mode = f->new_mode;
	resp.binary = f->binary;
	resp.overflow_marker = f->overflow;
	resp.collapsed = f->collapsed;
	resp.too_large = f->too_large;
	/* the first message carries the metadata, later ones only the rest of the patch */
	for (;;) {
		size_t n = MIN(left, (size_t)PATCH_MSG_BYTES);
		resp.raw_patch_data.data = (uint8_t *)patch;
		resp.raw_patch_data.len = n;
		resp.end_of_patch = n == left;
		if (rd_send(&x->rd, &resp) < 0)
			return -1;
		if (n == left)
			return 0;
		patch += n;
		left -= n;
		gitaly__commit_diff_response__init(&resp);
	}
}

static void cd_flush_deltas(struct commit_diff *x)
{
	Gitaly__CommitDeltaResponse resp = GITALY__COMMIT_DELTA_RESPONSE__INIT;
	if (!x->nbatch)
		return;
	resp.deltas = x->batch;
	resp.n_deltas = x->nbatch;
	rd_send(&x->rd, &resp);
	cd_free_batch(x);
}

static int cd_add_delta(struct commit_diff *x, const struct diff_file *f)
{
	Gitaly__CommitDelta *d = xcalloc(1, sizeof(*d));
	gitaly__commit_delta__init(d);
	d->from_path.len = f->from_path.len;
	d->from_path.data = xmemdup(f->from_path.buf, f->from_path.len + 1);
	d->to_path.len = f->to_path.len;
	d->to_path.data = xmemdup(f->to_path.buf, f->to_path.len + 1);
	d->from_id = xstrdup(f->from_id);
	d->to_id = xstrdup(f->to_id);
	d->old_mode = f->old_mode;
	d->new_mode = f->new_mode;
	ALLOC_GROW(x->batch, x->nbatch + 1, x->alloc);
	x->batch[x->nbatch++] = d;
	/* upstream's estimate: ids, two 4-byte modes, paths */
	x->batch_bytes += strlen(f->from_id) + strlen(f->to_id) + 8 + f->from_path.len + f->to_path.len;
	if (x->batch_bytes > PATCH_MSG_BYTES)
		cd_flush_deltas(x);
	return x->rd.base.call ? 0 : -1;
}

static int cd_file(void *arg, const struct diff_file *f)
{
	struct commit_diff *x = arg;
	if (!x->rd.base.call)
		return -1;
	return x->delta ? cd_add_delta(x, f) : cd_send_file(x, f);
}

static void cd_done(struct commit_diff *x)
{
	if (x->delta)
		cd_flush_deltas(x);
	rd_ok(&x->rd);
}

/* After the parser took a line or a piece of one. */
static void cd_parsed(struct rd *rd, int rc)
{
	struct commit_diff *x = (struct commit_diff *)rd;
	if (!rd->base.call)
		return;
	if (rc < 0) {
		rd_finish(rd, GRPC_INTERNAL, "parse failure: %s", x->parser.err.buf);
		return;
	}
	if (rc > 0) {
		/* the limits were reached: the rest of git's output is not needed */
		rd_lines_stop(rd);
		cd_done(x);
		return;
	}
	if (rd_full(rd))
		rd_lines_pause(rd);
}

static void cd_line(struct rd *rd, char *line, size_t len)
{
	struct commit_diff *x = (struct commit_diff *)rd;
	cd_parsed(rd, diff_parser_line(&x->parser, line, len));
}

/* Patch lines can be as long as a file under core.bigFileThreshold: they come in pieces. */
static void cd_fragment(struct rd *rd, char *buf, size_t len)
{
	struct commit_diff *x = (struct commit_diff *)rd;
	cd_parsed(rd, diff_parser_fragment(&x->parser, buf, len));
}

static void cd_end(struct rd *rd, int status, const struct strbuf *err)
{
	struct commit_diff *x = (struct commit_diff *)rd;
	int rc;
	(void)err;
	if (status == -E2BIG) {
		rd_finish(rd, GRPC_INTERNAL, "parse failure: line too long");
		return;
	}
	rc = diff_parser_end(&x->parser);
	if (!rd->base.call)
		return;
	if (rc < 0) {
		rd_finish(rd, GRPC_INTERNAL, "parse failure: %s", x->parser.err.buf);
		return;
	}
	if (status != 0) {
		diff_git_failed(rd, GRPC_FAILED_PRECONDITION, NULL, status);
		return;
	}
	cd_done(x);
}

static void cd_run(struct commit_diff *x, size_t hexsz)
{
	static const char *const config[] = { "diff.noprefix=false" };
	struct git_call gc;

	strvec_push(&x->args, x->left);
	strvec_push(&x->args, x->right);
	if (rd_dash_arg(&x->rd, x->args.v) < 0)
		return;
	diff_parser_init(&x->parser, hexsz, &x->lim, cd_file, x);
	x->parser_ready = 1;
	strvec_pushf(&x->flags, "--abbrev=%zu", hexsz);
	strvec_push(&x->flags, "--full-index");
	strvec_push(&x->flags, x->delta ? "--find-renames" : "--find-renames=30%");
	for (size_t i = 0; i < x->n_paths; i++)
		strvec_pushf(&x->pathv, "%.*s", (int)x->paths[i].len, (const char *)x->paths[i].data);
	rd_git_call(&x->rd, &gc, "diff");
	gc.flags = x->flags.v;
	gc.args = x->args.v;
	gc.paths = x->n_paths ? x->pathv.v : NULL;
	gc.config = config;
	gc.nr_config = 1;
	if (rd_lines_start(&x->rd, &gc, '\n', cd_line, cd_end) == 0)
		rd_lines_fragments(&x->rd, cd_fragment);
}

void diff_object_format(struct rd *rd, rd_capture_fn cb)
{
	static const char *const flags[] = { "--show-object-format", NULL };
	struct git_call gc;
	rd_git_call(rd, &gc, "rev-parse");
	gc.flags = flags;
	rd_capture(rd, &gc, 4096, cb);
}

size_t diff_hexsz(struct rd *rd, int status, const struct strbuf *out)
{
	if (status == 0 && out->len >= 6 && !memcmp(out->buf, "sha256", 6))
		return 64;
	if (status == 0 && out->len >= 4 && !memcmp(out->buf, "sha1", 4))
		return 40;
	rd_finish(rd, GRPC_INTERNAL, "detecting object format: %.*s", (int)MIN(out->len, (size_t)200), out->buf);
	return 0;
}

static void cd_format(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	size_t hexsz = diff_hexsz(rd, status, out);
	(void)err;
	if (hexsz)
		cd_run((struct commit_diff *)rd, hexsz);
}

static struct commit_diff *cd_start(struct gitaly *g, struct grpc_call *call, void *req,
				    const Gitaly__Repository *repo, const char *left, const char *right)
{
	struct commit_diff *x = (struct commit_diff *)rd_start(g, call, sizeof(*x), req, repo);
	if (!x)
		return NULL;
	x->rd.on_free = cd_free;
	x->rd.on_writable = cd_writable;
	strvec_init(&x->flags);
	strvec_init(&x->args);
	strvec_init(&x->pathv);
	x->left = left;
	x->right = right;
	if (diff_check_commits(&x->rd, left, right) < 0)
		return NULL;
	return x;
}

/* Paths go to argv: NUL would cut them short, so they are refused. */
static int cd_check_paths(struct commit_diff *x)
{
	for (size_t i = 0; i < x->n_paths; i++) {
		if (rd_has_nul(x->paths[i].data, x->paths[i].len)) {
			rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "path contains NUL byte");
			return -1;
		}
	}
	return 0;
}

static void commit_diff(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__CommitDiffRequest *req = msg_unpack(call, &gitaly__commit_diff_request__descriptor, buf, len);
	struct commit_diff *x;

	if (!req)
		return;
	x = cd_start(data, call, req, req->repository, req->left_commit_id, req->right_commit_id);
	if (!x)
		return;
	x->paths = req->paths;
	x->n_paths = req->n_paths;
	if (cd_check_paths(x) < 0)
		return;
	if (req->whitespace_changes == GITALY__COMMIT_DIFF_REQUEST__WHITESPACE_CHANGES__WHITESPACE_CHANGES_IGNORE_ALL)
		strvec_push(&x->flags, "--ignore-all-space");
	else if (req->whitespace_changes == GITALY__COMMIT_DIFF_REQUEST__WHITESPACE_CHANGES__WHITESPACE_CHANGES_IGNORE)
		strvec_push(&x->flags, "--ignore-space-change");
	if (req->diff_mode == GITALY__COMMIT_DIFF_REQUEST__DIFF_MODE__WORDDIFF)
		strvec_push(&x->flags, "--word-diff=porcelain");
	strvec_push(&x->flags, "--patch");
	strvec_push(&x->flags, "--raw");
	if (req->enforce_limits) {
		x->lim.enforce = 1;
		x->lim.max_files = req->max_files;
		x->lim.max_lines = req->max_lines;
		x->lim.max_bytes = req->max_bytes;
		x->lim.max_patch_bytes = req->max_patch_bytes;
		if (req->n_max_patch_bytes_for_file_extension) {
			x->ext = xcalloc(req->n_max_patch_bytes_for_file_extension, sizeof(*x->ext));
			for (size_t i = 0; i < req->n_max_patch_bytes_for_file_extension; i++) {
				x->ext[i].ext = req->max_patch_bytes_for_file_extension[i]->key;
				x->ext[i].max = req->max_patch_bytes_for_file_extension[i]->value;
			}
			x->lim.ext = x->ext;
			x->lim.n_ext = req->n_max_patch_bytes_for_file_extension;
		}
	}
	x->lim.collapse = req->collapse_diffs;
	x->lim.collect_all_paths = req->collect_all_paths;
	x->lim.safe_max_files = req->safe_max_files;
	x->lim.safe_max_lines = req->safe_max_lines;
	x->lim.safe_max_bytes = req->safe_max_bytes;
	diff_object_format(&x->rd, cd_format);
}

static void commit_delta(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__CommitDeltaRequest *req = msg_unpack(call, &gitaly__commit_delta_request__descriptor, buf, len);
	struct commit_diff *x;

	if (!req)
		return;
	x = cd_start(data, call, req, req->repository, req->left_commit_id, req->right_commit_id);
	if (!x)
		return;
	x->delta = 1;
	x->paths = req->paths;
	x->n_paths = req->n_paths;
	if (cd_check_paths(x) < 0)
		return;
	strvec_push(&x->flags, "--raw");
	diff_object_format(&x->rd, cd_format);
}

/* --- DiffStats: `git diff --numstat -z` --- */

struct diff_stats {
	struct rd rd;
	int want;                  /* 0: a stat; 1: a rename's old path; 2: its new path */
	Gitaly__DiffStats **batch;
	size_t nbatch, alloc;
	int failed;
};

static void ds_free_batch(struct diff_stats *x)
{
	for (size_t i = 0; i < x->nbatch; i++) {
		free(x->batch[i]->path.data);
		free(x->batch[i]->old_path.data);
		free(x->batch[i]);
	}
	x->nbatch = 0;
}

static void ds_free(struct rd *rd)
{
	struct diff_stats *x = (struct diff_stats *)rd;
	ds_free_batch(x);
	free(x->batch);
}

static void ds_flush(struct diff_stats *x)
{
	Gitaly__DiffStatsResponse resp = GITALY__DIFF_STATS_RESPONSE__INIT;
	if (!x->nbatch)
		return;
	resp.stats = x->batch;
	resp.n_stats = x->nbatch;
	rd_send(&x->rd, &resp);
	ds_free_batch(x);
}

/* "-" (binary) is 0; otherwise a decimal that fits in 32 bits. */
static int ds_number(const char *s, size_t len, int32_t *out)
{
	int64_t v = 0;
	int neg = 0;
	size_t i = 0;
	if (len == 1 && s[0] == '-') {
		*out = 0;
		return 0;
	}
	if (i < len && (s[i] == '+' || s[i] == '-'))
		neg = s[i++] == '-';
	if (i == len)
		return -1;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
		if (v > (int64_t)INT32_MAX + 1)
			return -1;
	}
	if (neg)
		v = -v;
	if (v > INT32_MAX || v < INT32_MIN)
		return -1;
	*out = (int32_t)v;
	return 0;
}

static ProtobufCBinaryData ds_bytes(const char *s, size_t len)
{
	ProtobufCBinaryData b = { len, xmemdup(s, len + 1) };
	return b;
}

static void ds_fail(struct diff_stats *x, const char *what, const char *s, size_t len)
{
	x->failed = 1;
	rd_finish(&x->rd, GRPC_UNKNOWN, "%s %.*s", what, (int)MIN(len, (size_t)200), s);
}

static void ds_line(struct rd *rd, char *tok, size_t len)
{
	struct diff_stats *x = (struct diff_stats *)rd;
	Gitaly__DiffStats *st;
	char *t1, *t2;

	if (x->want) {
		st = x->batch[x->nbatch - 1];
		if (x->want == 1) {
			st->old_path = ds_bytes(tok, len);
			x->want = 2;
			return;
		}
		st->path = ds_bytes(tok, len);
		x->want = 0;
		goto sent;
	}
	t1 = memchr(tok, '\t', len);
	t2 = t1 ? memchr(t1 + 1, '\t', len - (size_t)(t1 + 1 - tok)) : NULL;
	if (!t2) {
		ds_fail(x, "error parsing", tok, len);
		return;
	}
	st = xcalloc(1, sizeof(*st));
	gitaly__diff_stats__init(st);
	ALLOC_GROW(x->batch, x->nbatch + 1, x->alloc);
	x->batch[x->nbatch++] = st;
	if (ds_number(tok, (size_t)(t1 - tok), &st->additions) < 0 ||
	    ds_number(t1 + 1, (size_t)(t2 - t1 - 1), &st->deletions) < 0) {
		ds_fail(x, "error converting diff num stat:", tok, len);
		return;
	}
	if (t2 + 1 == tok + len) {
		/* a rename: old and new path follow as tokens of their own */
		x->want = 1;
		return;
	}
	st->path = ds_bytes(t2 + 1, len - (size_t)(t2 + 1 - tok));
sent:
	if (x->nbatch >= NUMSTAT_BATCH)
		ds_flush(x);
	if (rd->base.call && rd_full(rd))
		rd_lines_pause(rd);
}

static void ds_end(struct rd *rd, int status, const struct strbuf *err)
{
	struct diff_stats *x = (struct diff_stats *)rd;
	(void)err;
	if (x->failed)
		return;
	if (status == -E2BIG) {
		rd_finish(rd, GRPC_INTERNAL, "parsing numstat: path too long");
		return;
	}
	if (status != 0) {
		diff_git_failed(rd, GRPC_FAILED_PRECONDITION, NULL, status);
		return;
	}
	/* a rename cut short is dropped, as upstream's reader does at EOF */
	if (x->want) {
		x->nbatch--;
		free(x->batch[x->nbatch]->path.data);
		free(x->batch[x->nbatch]->old_path.data);
		free(x->batch[x->nbatch]);
	}
	ds_flush(x);
	rd_ok(rd);
}

static void diff_stats(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	static const char *const flags[] = { "--numstat", "-z", NULL };
	Gitaly__DiffStatsRequest *req = msg_unpack(call, &gitaly__diff_stats_request__descriptor, buf, len);
	struct diff_stats *x;
	struct git_call gc;
	const char *args[3];

	if (!req)
		return;
	x = (struct diff_stats *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->rd.on_free = ds_free;
	x->rd.on_writable = cd_writable;
	if (diff_check_commits(&x->rd, req->left_commit_id, req->right_commit_id) < 0)
		return;
	args[0] = req->left_commit_id;
	args[1] = req->right_commit_id;
	args[2] = NULL;
	if (rd_dash_arg(&x->rd, args) < 0)
		return;
	rd_git_call(&x->rd, &gc, "diff");
	gc.flags = flags;
	gc.args = args;
	rd_lines_start(&x->rd, &gc, '\0', ds_line, ds_end);
}

/* --- RawDiff and RawPatch: git's output as it is --- */

static void raw_exit(struct gitaly_pipe *p, struct grpc_call *call, int status, const struct strbuf *err)
{
	struct strbuf sb = STRBUF_INIT;
	(void)p;
	(void)err;
	if (status == 0) {
		grpc_call_finish(call, GRPC_OK, NULL, NULL);
		return;
	}
	/* upstream hands git's exit error back as it is: a status without a code */
	gitaly_describe_status(&sb, status);
	grpc_call_finish(call, GRPC_UNKNOWN, sb.buf, NULL);
	strbuf_release(&sb);
}

static void raw_run(struct gitaly *g, struct grpc_call *call, const Gitaly__Repository *repo, const char *left,
		    const char *right, int patch)
{
	static const char *const diff_flags[] = { "--full-index", NULL };
	static const char *const patch_flags[] = { "--stdout", "--signature=GitLab", NULL };
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT, range = STRBUF_INIT;
	struct gitaly_pipe_opts opts = { 0 };
	struct git_call gc = { 0 };
	const char *args[3];
	enum grpc_code code;

	code = gitaly_locate(g, repo, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	if (!left || !*left) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "empty LeftCommitId", NULL);
		goto out;
	}
	if (!right || !*right) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "empty RightCommitId", NULL);
		goto out;
	}
	if (patch) {
		strbuf_addf(&range, "%s..%s", left, right);
		args[0] = range.buf;
		args[1] = NULL;
	} else {
		args[0] = left;
		args[1] = right;
		args[2] = NULL;
	}
	strbuf_reset(&msg);
	strbuf_addstr(&msg, "cmd: ");
	if (diff_dash_arg(args, &msg) < 0) {
		grpc_call_finish(call, GRPC_INTERNAL, msg.buf, NULL);
		goto out;
	}
	strbuf_reset(&msg);
	gc.git_dir = path.buf;
	gc.repo = repo;
	gc.subcmd = patch ? "format-patch" : "diff";
	gc.flags = patch ? patch_flags : diff_flags;
	gc.args = args;
	gc.rpc = call;
	opts.stdout_field = 1;      /* RawDiffResponse.data, RawPatchResponse.data */
	opts.on_exit = raw_exit;
	code = gitaly_pipe_run(g, call, &gc, &opts, &msg);
	if (code != GRPC_OK)
		grpc_call_finish(call, code, msg.buf, NULL);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	strbuf_release(&range);
}

static void raw_diff(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__RawDiffRequest *req = msg_unpack(call, &gitaly__raw_diff_request__descriptor, buf, len);
	if (!req)
		return;
	raw_run(data, call, req->repository, req->left_commit_id, req->right_commit_id, 0);
	msg_free(req);
}

static void raw_patch(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__RawPatchRequest *req = msg_unpack(call, &gitaly__raw_patch_request__descriptor, buf, len);
	if (!req)
		return;
	raw_run(data, call, req->repository, req->left_commit_id, req->right_commit_id, 1);
	msg_free(req);
}

void gitaly_register_diff(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.DiffService/CommitDiff", commit_diff, g);
	gitaly_add_unary(s, "/gitaly.DiffService/CommitDelta", commit_delta, g);
	gitaly_add_unary(s, "/gitaly.DiffService/DiffStats", diff_stats, g);
	gitaly_add_unary(s, "/gitaly.DiffService/RawDiff", raw_diff, g);
	gitaly_add_unary(s, "/gitaly.DiffService/RawPatch", raw_patch, g);
	diff_register_paths(g, s);
}

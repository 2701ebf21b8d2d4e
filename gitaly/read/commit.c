/* CommitService reads: FindCommit, ListCommits, CommitIsAncestor; trees in tree.c, the rest in commit_*.c. */
#include "read/read.h"
#include "base/util.h"
#include "google/protobuf/timestamp.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- FindCommit --- */

struct find_commit {
	struct rd rd;
	Gitaly__FindCommitRequest *req;
	Gitaly__GitCommit *commit;
};

static void fc_free(struct rd *rd)
{
	gitaly_commit_free(((struct find_commit *)rd)->commit);
}

static void fc_reply(struct find_commit *x)
{
	Gitaly__FindCommitResponse resp = GITALY__FIND_COMMIT_RESPONSE__INIT;
	resp.commit = x->commit;
	rd_send(&x->rd, &resp);
	rd_ok(&x->rd);
}

static void fc_trailers(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	struct find_commit *x = (struct find_commit *)rd;
	const char *nl = memchr(out->buf, '\n', out->len);
	if (status != 0) {
		rd_finish(rd, GRPC_INTERNAL, "error when creating git show command: %s", err->buf);
		return;
	}
	/* upstream insists on a single line of output */
	if (nl && (size_t)(nl - out->buf) + 1 < out->len) {
		rd_finish(rd, GRPC_INTERNAL, "git show produced more than one line of output");
		return;
	}
	gitaly_commit_set_trailers(x->commit, out->buf, out->len);
	fc_reply(x);
}

static void fc_read(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct find_commit *x = arg;
	if (status == CATFILE_MISSING) {
		/* not found is an empty response, not an error (docs/technical/gitaly-node.md, "Not found") */
		Gitaly__FindCommitResponse resp = GITALY__FIND_COMMIT_RESPONSE__INIT;
		rd_send(&x->rd, &resp);
		rd_ok(&x->rd);
		return;
	}
	if (status < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "reading commit: %s", strerror(-status));
		return;
	}
	x->commit = gitaly_commit_parse(info->oid, data->buf, data->len);
	if (x->req->trailers) {
		static const char *const flags[] = { "--format=%(trailers:unfold,separator=%x00)", "--no-patch", NULL };
		const char *args[] = { x->commit->id, NULL };
		struct git_call gc;
		rd_git_call(&x->rd, &gc, "show");
		gc.flags = flags;
		gc.args = args;
		rd_capture(&x->rd, &gc, 1 << 20, fc_trailers);
		return;
	}
	fc_reply(x);
}

static void fc_leased(struct rd *rd)
{
	struct find_commit *x = (struct find_commit *)rd;
	struct strbuf rev = STRBUF_INIT;
	strbuf_add(&rev, x->req->revision.data, x->req->revision.len);
	strbuf_addstr(&rev, "^{commit}");
	if (catfile_read(rd->cf, rev.buf, rev.len, 64u << 20, fc_read, x) < 0)
		rd_finish(rd, GRPC_INTERNAL, "reading commit: object reader failed");
	strbuf_release(&rev);
}

static void find_commit(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindCommitRequest *req = msg_unpack(call, &gitaly__find_commit_request__descriptor, buf, len);
	struct find_commit *x;
	struct strbuf msg = STRBUF_INIT;

	if (!req)
		return;
	x = (struct find_commit *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	x->rd.on_free = fc_free;
	if (gitaly_check_revision((const char *)req->revision.data, req->revision.len, &msg) < 0)
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "%s", msg.buf);
	else
		rd_lease(&x->rd, fc_leased);
	strbuf_release(&msg);
}

/* --- CommitIsAncestor --- */

static void is_ancestor_done(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	Gitaly__CommitIsAncestorResponse resp = GITALY__COMMIT_IS_ANCESTOR_RESPONSE__INIT;
	(void)out;
	(void)err;
	/* any failure, unknown commits included, answers false */
	resp.value = status == 0;
	rd_send(rd, &resp);
	rd_ok(rd);
}

static void commit_is_ancestor(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__CommitIsAncestorRequest *req =
		msg_unpack(call, &gitaly__commit_is_ancestor_request__descriptor, buf, len);
	struct rd *rd;
	struct git_call gc;
	static const char *const flags[] = { "--is-ancestor", NULL };
	const char *args[3];

	if (!req)
		return;
	rd = rd_start(data, call, sizeof(*rd), req, req->repository);
	if (!rd)
		return;
	if (!req->ancestor_id || !*req->ancestor_id) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "empty ancestor sha");
		return;
	}
	if (!req->child_id || !*req->child_id) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "empty child sha");
		return;
	}
	args[0] = req->ancestor_id;
	args[1] = req->child_id;
	args[2] = NULL;
	rd_git_call(rd, &gc, "merge-base");
	gc.flags = flags;
	gc.args = args;
	rd_capture(rd, &gc, 4096, is_ancestor_done);
}

/* --- ListCommits --- */

struct list_commits {
	struct rd rd;
	Gitaly__ListCommitsRequest *req;
	struct rd_pipe pipe;
	struct strvec flags;
	int token_seen;
	int32_t count;
	struct rd_commits batch;
};

static void lc_free(struct rd *rd)
{
	struct list_commits *x = (struct list_commits *)rd;
	rd_pipe_release(&x->pipe);
	strvec_clear(&x->flags);
	rd_commits_release(&x->batch);
}

static void lc_writable(struct rd *rd)
{
	rd_pipe_writable(&((struct list_commits *)rd)->pipe);
}

static int lc_line(struct rd_pipe *p, char *line, size_t len)
{
	struct list_commits *x = container_of(p, struct list_commits, pipe);
	char *sp = memchr(line, ' ', len);
	int step;

	if (sp)
		len = (size_t)(sp - line);
	step = rd_page_step(x->req->pagination_params, &x->token_seen, &x->count, line, len);
	if (step)
		return step < 0 ? -1 : 0;
	if (rd_pipe_read(p, line, len, NULL, 0) < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "iterating objects: object reader failed");
		return -1;
	}
	return 0;
}

static void lc_object(struct rd_pipe *p, void *item, int status, const struct catfile_info *info,
		      struct strbuf *data)
{
	struct list_commits *x = container_of(p, struct list_commits, pipe);
	Gitaly__GitCommit *c;
	(void)item;
	if (status != 0 || info->type != CATFILE_COMMIT) {
		rd_finish(&x->rd, GRPC_INTERNAL, "parsing commit: %s",
			  status < 0 ? strerror(-status) : status ? "object not found" : "not a commit");
		return;
	}
	c = gitaly_commit_parse(info->oid, data->buf, data->len);
	rd_commits_add(&x->rd, &x->batch, c);
}

static void lc_end(struct rd_pipe *p, int status, const struct strbuf *err)
{
	struct list_commits *x = container_of(p, struct list_commits, pipe);
	rd_commits_flush(&x->rd, &x->batch);
	if (status != 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "iterating objects: rev-list pipeline command: exit status %d, stderr: %.*s",
			  status, (int)err->len, err->buf);
		return;
	}
	rd_ok(&x->rd);
}

static const struct rd_pipe_ops lc_ops = {
	.on_line = lc_line,
	.on_object = lc_object,
	.on_end = lc_end,
};

/* Go's time.Time.String() for a UTC instant, the form upstream passes to --before/--after. */
static void go_time_string(struct strbuf *sb, const Google__Protobuf__Timestamp *ts)
{
	time_t t = (time_t)ts->seconds;
	struct tm tm;
	char buf[64];
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
	strbuf_addstr(sb, buf);
	if (ts->nanos > 0) {
		char frac[16];
		int n = snprintf(frac, sizeof(frac), ".%09d", ts->nanos);
		while (n > 1 && frac[n - 1] == '0')
			frac[--n] = '\0';
		strbuf_addstr(sb, frac);
	}
	strbuf_addstr(sb, " +0000 UTC");
}

static void lc_leased(struct rd *rd)
{
	struct list_commits *x = (struct list_commits *)rd;
	struct git_call gc;
	struct strvec args = STRVEC_INIT;
	for (size_t i = 0; i < x->req->n_revisions; i++)
		strvec_push(&args, x->req->revisions[i]);
	rd_git_call(rd, &gc, "rev-list");
	gc.flags = x->flags.v;
	gc.args = args.v;
	rd_pipe_start(&x->pipe, rd, &gc, '\n', &lc_ops);
	strvec_clear(&args);
}

static void list_commits(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__ListCommitsRequest *req = msg_unpack(call, &gitaly__list_commits_request__descriptor, buf, len);
	struct list_commits *x;
	struct strbuf msg = STRBUF_INIT, sb = STRBUF_INIT;

	if (!req)
		return;
	x = (struct list_commits *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	x->batch.resp = &gitaly__list_commits_response__descriptor;
	x->rd.on_free = lc_free;
	x->rd.on_writable = lc_writable;
	strvec_init(&x->flags);
	strbuf_init(&x->pipe.err, 0);
	if (!req->n_revisions) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "missing revisions");
		goto out;
	}
	for (size_t i = 0; i < req->n_revisions; i++) {
		const char *r = req->revisions[i] ? req->revisions[i] : "";
		if (rd_check_pseudo_revision(r, strlen(r), &msg) < 0) {
			rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "invalid revision: %s", msg.buf);
			goto out;
		}
	}
	if (rd_has_nul(req->author.data, req->author.len)) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "author can't contain NUL");
		goto out;
	}
	for (size_t i = 0; i < req->n_commit_message_patterns; i++) {
		if (rd_has_nul(req->commit_message_patterns[i].data, req->commit_message_patterns[i].len)) {
			rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "commit message pattern can't contain NUL");
			goto out;
		}
	}
	if (req->order == GITALY__LIST_COMMITS_REQUEST__ORDER__TOPO)
		strvec_push(&x->flags, "--topo-order");
	else if (req->order == GITALY__LIST_COMMITS_REQUEST__ORDER__DATE)
		strvec_push(&x->flags, "--date-order");
	if (req->reverse)
		strvec_push(&x->flags, "--reverse");
	if (req->max_parents > 0)
		strvec_pushf(&x->flags, "--max-parents=%u", req->max_parents);
	if (req->disable_walk)
		strvec_push(&x->flags, "--no-walk");
	if (req->first_parent)
		strvec_push(&x->flags, "--first-parent");
	if (req->before) {
		strbuf_reset(&sb);
		go_time_string(&sb, req->before);
		strvec_pushf(&x->flags, "--before=%s", sb.buf);
	}
	if (req->after) {
		strbuf_reset(&sb);
		go_time_string(&sb, req->after);
		strvec_pushf(&x->flags, "--after=%s", sb.buf);
	}
	if (req->author.len)
		strvec_pushf(&x->flags, "--author=%.*s", (int)req->author.len, (const char *)req->author.data);
	if (req->ignore_case)
		strvec_push(&x->flags, "--regexp-ignore-case");
	for (size_t i = 0; i < req->n_commit_message_patterns; i++)
		strvec_pushf(&x->flags, "--grep=%.*s", (int)req->commit_message_patterns[i].len,
			     (const char *)req->commit_message_patterns[i].data);
	rd_lease(&x->rd, lc_leased);
out:
	strbuf_release(&msg);
	strbuf_release(&sb);
}

void gitaly_register_commit(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.CommitService/FindCommit", find_commit, g);
	gitaly_add_unary(s, "/gitaly.CommitService/ListCommits", list_commits, g);
	gitaly_add_unary(s, "/gitaly.CommitService/CommitIsAncestor", commit_is_ancestor, g);
	gitaly_register_commit_tree(g, s);
	gitaly_register_commit_last(g, s);
	gitaly_register_commit_count(g, s);
	gitaly_register_commit_history(g, s);
	gitaly_register_commit_lookup(g, s);
	gitaly_register_commit_stats(g, s);
	gitaly_register_commit_languages(g, s);
	gitaly_register_tree_files(g, s);
	gitaly_register_commit_exists(g, s);
	gitaly_register_blame(g, s);
	gitaly_register_commit_signatures(g, s);
	gitaly_register_commit_all(g, s);
}

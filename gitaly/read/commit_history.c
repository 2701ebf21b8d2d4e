/*
 * CommitService history walks: FindCommits, FindAllCommits, CommitsByMessage
 * (docs/technical/gitaly-reads.md, "History walks").
 *
 * Each call runs one `git log` (a walk with path limits, --follow, --grep and
 * dates has no long-lived git form) whose commit ids feed the leased cat-file
 * process through rd_pipe: the listing pauses while the send queue is full,
 * so memory stays flat whatever the length of the history. As upstream, a
 * failing git log (an unknown revision) is not an error: the call answers
 * the commits it found, usually none.
 */
#include "read/ref.h"
#include "base/util.h"
#include "google/protobuf/timestamp.pb-c.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One walk. The ref context comes first: empty revisions mean the default branch. */
struct hist {
	struct ref_ctx ref;
	struct rd_pipe pipe;
	int pipe_started;
	struct strvec flags, args, paths;
	const char *const *env;
	char delim;
	/* FindCommits record layout */
	int shortstat, trailers, refs;
	int first_record;
	int64_t skip;                      /* records to drop before answering (--follow with an offset) */
	struct rd_commits batch;
};

/* What a log record carries besides the commit id. */
struct hist_item {
	struct strbuf trailers, refs, stats;
	int has_trailers, has_refs, has_stats;
};

static const char *const literal_env[] = { "GIT_LITERAL_PATHSPECS=1", NULL };

static void item_free(void *p)
{
	struct hist_item *it = p;
	if (!it)
		return;
	strbuf_release(&it->trailers);
	strbuf_release(&it->refs);
	strbuf_release(&it->stats);
	free(it);
}

static void hist_free(struct rd *rd)
{
	struct hist *x = (struct hist *)rd;
	if (x->pipe_started)
		rd_pipe_release(&x->pipe);
	strvec_clear(&x->flags);
	strvec_clear(&x->args);
	strvec_clear(&x->paths);
	rd_commits_release(&x->batch);
	ref_ctx_release(rd);
}

static void hist_writable(struct rd *rd)
{
	struct hist *x = (struct hist *)rd;
	if (x->pipe_started)
		rd_pipe_writable(&x->pipe);
}

static struct hist *hist_start(struct gitaly *g, struct grpc_call *call, void *req, const Gitaly__Repository *repo)
{
	struct hist *x = (struct hist *)ref_start_size(g, call, sizeof(struct hist), req, repo, REF_KIND_OTHER);
	if (!x)
		return NULL;
	x->ref.rd.on_free = hist_free;
	x->ref.rd.on_writable = hist_writable;
	strvec_init(&x->flags);
	strvec_init(&x->args);
	strvec_init(&x->paths);
	x->delim = '\n';
	/* FindCommitsResponse, FindAllCommitsResponse and CommitsByMessageResponse are alike on the wire */
	x->batch.resp = &gitaly__find_commits_response__descriptor;
	return x;
}

static void trim_space(const char **s, size_t *len)
{
	while (*len && isspace((unsigned char)**s))
		(*s)++, (*len)--;
	while (*len && isspace((unsigned char)(*s)[*len - 1]))
		(*len)--;
}

/* "<digits>" at *p: advance and store; 0 when there are none. */
static int take_number(const char **p, const char *end, int32_t *out)
{
	int64_t v = 0;
	const char *s = *p;
	while (s < end && *s >= '0' && *s <= '9') {
		v = v * 10 + (*s - '0');
		if (v > INT32_MAX)
			return 0;
		s++;
	}
	if (s == *p)
		return 0;
	*out = (int32_t)v;
	*p = s;
	return 1;
}

static int take_word(const char **p, const char *end, const char *w)
{
	size_t n = strlen(w);
	if ((size_t)(end - *p) < n || memcmp(*p, w, n))
		return 0;
	*p += n;
	return 1;
}

/* ", N insertion(s)(+)" or ", N deletion(s)(-)" */
static int take_count(const char **p, const char *end, const char *word, const char *sign, int32_t *out)
{
	const char *s = *p;
	int32_t n;
	if (!take_word(&s, end, ",") || s >= end || !isspace((unsigned char)*s))
		return 0;
	s++;
	if (!take_number(&s, end, &n) || s >= end || !isspace((unsigned char)*s))
		return 0;
	s++;
	if (!take_word(&s, end, word))
		return 0;
	take_word(&s, end, "s");
	if (!take_word(&s, end, sign))
		return 0;
	*out = n;
	*p = s;
	return 1;
}

/* The first " N file(s) changed[, N insertions(+)][, N deletions(-)]" of a --shortstat block. */
static Gitaly__CommitStatInfo *parse_shortstat(const char *s, size_t len)
{
	const char *end = s + len;
	for (const char *p = s; p < end; p++) {
		const char *q = p + 1;
		int32_t files = 0, add = 0, del = 0;
		Gitaly__CommitStatInfo *st;
		if (!isspace((unsigned char)*p) || !take_number(&q, end, &files) || q >= end ||
		    !isspace((unsigned char)*q))
			continue;
		q++;
		if (!take_word(&q, end, "file"))
			continue;
		take_word(&q, end, "s");
		if (q >= end || !isspace((unsigned char)*q))
			continue;
		q++;
		if (!take_word(&q, end, "changed"))
			continue;
		take_count(&q, end, "insertion", "(+)", &add);
		take_count(&q, end, "deletion", "(-)", &del);
		st = xcalloc(1, sizeof(*st));
		gitaly__commit_stat_info__init(st);
		st->changed_files = files;
		st->additions = add;
		st->deletions = del;
		return st;
	}
	return NULL;
}

static void push_ref(Gitaly__GitCommit *c, size_t *alloc, const char *s, size_t n)
{
	ALLOC_GROW(c->referenced_by, c->n_referenced_by + 1, *alloc);
	c->referenced_by[c->n_referenced_by].data = (uint8_t *)xstrndup(s, n);
	c->referenced_by[c->n_referenced_by].len = n;
	c->n_referenced_by++;
}

/*
 * %D with --decorate=full: "HEAD -> refs/heads/main, tag: refs/tags/v1, refs/heads/x".
 * Tags lose their "tag: " prefix; "HEAD -> branch" counts as both.
 */
static void set_referenced_by(Gitaly__GitCommit *c, const char *s, size_t len)
{
	const char *end = s + len;
	size_t alloc = 0;
	while (s < end) {
		const char *sep = s, *arrow = NULL;
		size_t n;
		while (sep < end && !(sep + 1 < end && sep[0] == ',' && sep[1] == ' '))
			sep++;
		n = (size_t)(sep - s);
		if (n) {
			if (n >= 5 && !memcmp(s, "tag: ", 5))
				s += 5, n -= 5;
			for (size_t i = 0; i + 4 <= n && !arrow; i++)
				if (!memcmp(s + i, " -> ", 4))
					arrow = s + i;
			if (arrow) {
				push_ref(c, &alloc, s, (size_t)(arrow - s));
				push_ref(c, &alloc, arrow + 4, n - (size_t)(arrow + 4 - s));
			} else {
				push_ref(c, &alloc, s, n);
			}
		}
		s = sep < end ? sep + 2 : end;
	}
}

static int hist_line(struct rd_pipe *p, char *line, size_t len)
{
	struct hist *x = container_of(p, struct hist, pipe);
	const char *rec = line, *rev, *cut;
	size_t rlen;
	struct hist_item *it = NULL;

	if (x->shortstat && !x->first_record) {
		/* records start with \x01: the first delimiter opens the first record */
		x->first_record = 1;
		if (!len)
			return 0;
		rd_finish(&x->ref.rd, GRPC_INTERNAL, "error streaming commits: get commits: expected \\x01 prefix");
		return -1;
	}
	x->first_record = 1;
	trim_space(&rec, &len);
	if (!len)
		return 0;
	if (x->skip > 0) {
		x->skip--;
		return 0;
	}
	rev = rec;
	rlen = len;
	if (x->shortstat || x->trailers || x->refs) {
		it = xcalloc(1, sizeof(*it));
		strbuf_init(&it->trailers, 0);
		strbuf_init(&it->refs, 0);
		strbuf_init(&it->stats, 0);
	}
	if (x->shortstat && (cut = memchr(rev, '\n', rlen))) {
		strbuf_add(&it->stats, cut + 1, rlen - (size_t)(cut + 1 - rev));
		it->has_stats = 1;
		rlen = (size_t)(cut - rev);
	}
	if (x->refs && (cut = memchr(rev, '\002', rlen))) {
		strbuf_add(&it->refs, cut + 1, rlen - (size_t)(cut + 1 - rev));
		it->has_refs = 1;
		rlen = (size_t)(cut - rev);
	}
	if (x->trailers && (cut = memchr(rev, '\0', rlen))) {
		strbuf_add(&it->trailers, cut + 1, rlen - (size_t)(cut + 1 - rev));
		it->has_trailers = 1;
		rlen = (size_t)(cut - rev);
	}
	if (rd_pipe_read(p, rev, rlen, it, 1) < 0) {
		item_free(it);
		rd_finish(&x->ref.rd, GRPC_INTERNAL, "error streaming commits: object reader failed");
		return -1;
	}
	return 0;
}

static void hist_object(struct rd_pipe *p, void *arg, int status, const struct catfile_info *info,
			struct strbuf *data)
{
	struct hist *x = container_of(p, struct hist, pipe);
	struct hist_item *it = arg;
	Gitaly__GitCommit *c;
	if (status != 0 || info->type != CATFILE_COMMIT) {
		rd_finish(&x->ref.rd, GRPC_INTERNAL, "error streaming commits: cat-file get commit: %s",
			  status < 0 ? strerror(-status) : "object not found");
		item_free(it);
		return;
	}
	c = gitaly_commit_parse(info->oid, data->buf, data->len);
	if (it && it->has_refs)
		set_referenced_by(c, it->refs.buf, it->refs.len);
	if (it && it->has_trailers)
		gitaly_commit_set_trailers(c, it->trailers.buf, it->trailers.len);
	if (it && it->has_stats) {
		c->short_stats = parse_shortstat(it->stats.buf, it->stats.len);
		if (!c->short_stats) {
			rd_finish(&x->ref.rd, GRPC_INTERNAL, "error streaming commits: get stats: unexpected stats format: \"%s\"",
				  it->stats.buf);
			gitaly_commit_free(c);
			item_free(it);
			return;
		}
	}
	item_free(it);
	rd_commits_add(&x->ref.rd, &x->batch, c);
}

static void hist_end(struct rd_pipe *p, int status, const struct strbuf *err)
{
	struct hist *x = container_of(p, struct hist, pipe);
	(void)err;
	rd_commits_flush(&x->ref.rd, &x->batch);
	/* git's own failures are ignored (unknown revisions); our cap on record size is not */
	if (status == -E2BIG) {
		rd_finish(&x->ref.rd, GRPC_INTERNAL, "error streaming commits: log record too long");
		return;
	}
	rd_ok(&x->ref.rd);
}

static const struct rd_pipe_ops hist_ops = {
	.on_line = hist_line,
	.on_object = hist_object,
	.on_end = hist_end,
	.free_item = item_free,
};

static void hist_leased(struct rd *rd)
{
	struct hist *x = (struct hist *)rd;
	struct git_call gc;
	rd_git_call(rd, &gc, "log");
	gc.flags = x->flags.v;
	gc.args = x->args.v;
	gc.paths = x->paths.nr ? x->paths.v : NULL;
	gc.env = x->env;
	x->pipe_started = 1;
	rd_pipe_start(&x->pipe, rd, &gc, x->delim, &hist_ops);
}

/* The default branch is known: walk from it (an empty repository has none: nothing to answer). */
static void hist_on_default(struct ref_ctx *r, const char *name, size_t len)
{
	struct hist *x = (struct hist *)r;
	if (!len) {
		rd_ok(&r->rd);
		return;
	}
	strvec_pushf(&x->args, "%.*s", (int)len, name);
	if (r->rd.cf)
		hist_leased(&r->rd);   /* the lookup already leased the cat-file process */
	else
		rd_lease(&r->rd, hist_leased);
}

/* Go's Timestamp.String() (protobuf text), which upstream hands to --before/--after; git reads it. */
static void pb_time_string(struct strbuf *sb, const Google__Protobuf__Timestamp *ts)
{
	strbuf_addf(sb, "seconds:%lld", (long long)ts->seconds);
	if (ts->nanos)
		strbuf_addf(sb, " nanos:%d", ts->nanos);
}

static int check_rev(struct hist *x, const ProtobufCBinaryData *rev)
{
	struct strbuf msg = STRBUF_INIT;
	int rc = 0;
	if (rev->len && gitaly_check_revision((const char *)rev->data, rev->len, &msg) < 0) {
		rd_finish(&x->ref.rd, GRPC_INVALID_ARGUMENT, "%s", msg.buf);
		rc = -1;
	}
	strbuf_release(&msg);
	return rc;
}

/* --- FindCommits --- */

static void find_commits(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindCommitsRequest *req = msg_unpack(call, &gitaly__find_commits_request__descriptor, buf, len);
	struct strbuf fmt = STRBUF_INIT, sb = STRBUF_INIT;
	int manual_offset;
	int64_t limit;
	struct hist *x;

	if (!req)
		return;
	x = hist_start(data, call, req, req->repository);
	if (!x)
		return;
	if (check_rev(x, &req->revision) < 0)
		goto out;
	for (size_t i = 0; i < req->n_paths; i++) {
		if (!req->paths[i].len) {
			rd_finish(&x->ref.rd, GRPC_INVALID_ARGUMENT, "path is empty string");
			goto out;
		}
		if (rd_has_nul(req->paths[i].data, req->paths[i].len)) {
			rd_finish(&x->ref.rd, GRPC_INVALID_ARGUMENT, "path can't contain NUL");
			goto out;
		}
	}
	if (rd_has_nul(req->author.data, req->author.len)) {
		rd_finish(&x->ref.rd, GRPC_INVALID_ARGUMENT, "author can't contain NUL");
		goto out;
	}
	for (size_t i = 0; i < req->n_include_referenced_by; i++) {
		if (rd_has_nul(req->include_referenced_by[i].data, req->include_referenced_by[i].len)) {
			rd_finish(&x->ref.rd, GRPC_INVALID_ARGUMENT, "include_referenced_by can't contain NUL");
			goto out;
		}
	}
	x->shortstat = req->include_shortstat;
	x->trailers = req->trailers;
	x->refs = req->n_include_referenced_by > 0;
	if (x->shortstat)
		x->delim = '\001';
	/* --follow does not mix with --skip: the offset is then counted here */
	manual_offset = req->follow && req->offset > 0;

	strbuf_addstr(&fmt, x->shortstat ? "--format=%x01%H" : "--format=%H");
	if (req->trailers)
		strbuf_addstr(&fmt, "%x00%(trailers:unfold,separator=%x00)");
	if (x->refs)
		strbuf_addstr(&fmt, "%x02%D");
	strvec_push(&x->flags, fmt.buf);
	if (req->offset > 0 && !manual_offset)
		strvec_pushf(&x->flags, "--skip=%d", req->offset);
	limit = req->limit;
	if (manual_offset) {
		limit += req->offset;
		x->skip = req->offset;
	}
	strvec_pushf(&x->flags, "--max-count=%lld", (long long)limit);
	if (req->follow && req->n_paths)
		strvec_push(&x->flags, "--follow");
	if (req->author.len)
		strvec_pushf(&x->flags, "--author=%.*s", (int)req->author.len, (const char *)req->author.data);
	if (req->skip_merges)
		strvec_push(&x->flags, "--no-merges");
	if (req->before) {
		pb_time_string(&sb, req->before);
		strvec_pushf(&x->flags, "--before=%s", sb.buf);
		strbuf_reset(&sb);
	}
	if (req->after) {
		pb_time_string(&sb, req->after);
		strvec_pushf(&x->flags, "--after=%s", sb.buf);
	}
	if (req->all) {
		strvec_push(&x->flags, "--all");
		strvec_push(&x->flags, "--reverse");
	}
	if (req->first_parent)
		strvec_push(&x->flags, "--first-parent");
	if (req->order == GITALY__FIND_COMMITS_REQUEST__ORDER__TOPO)
		strvec_push(&x->flags, "--topo-order");
	if (req->include_shortstat)
		strvec_push(&x->flags, "--shortstat");
	if (x->refs) {
		strvec_push(&x->flags, "--decorate=full");
		for (size_t i = 0; i < req->n_include_referenced_by; i++)
			strvec_pushf(&x->flags, "--decorate-refs=%.*s", (int)req->include_referenced_by[i].len,
				     (const char *)req->include_referenced_by[i].data);
	}
	for (size_t i = 0; i < req->n_paths; i++)
		strvec_pushf(&x->paths, "%.*s", (int)req->paths[i].len, (const char *)req->paths[i].data);
	if (req->global_options && req->global_options->literal_pathspecs)
		x->env = literal_env;
	if (req->revision.len) {
		strvec_pushf(&x->args, "%.*s", (int)req->revision.len, (const char *)req->revision.data);
		rd_lease(&x->ref.rd, hist_leased);
	} else if (req->all) {
		rd_lease(&x->ref.rd, hist_leased);
	} else {
		ref_default_branch(&x->ref, 0, hist_on_default);
	}
out:
	strbuf_release(&fmt);
	strbuf_release(&sb);
}

/* --- FindAllCommits --- */

static void find_all_commits(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindAllCommitsRequest *req = msg_unpack(call, &gitaly__find_all_commits_request__descriptor, buf, len);
	struct hist *x;

	if (!req)
		return;
	x = hist_start(data, call, req, req->repository);
	if (!x || check_rev(x, &req->revision) < 0)
		return;
	strvec_push(&x->flags, "--pretty=%H");
	if (req->max_count > 0)
		strvec_pushf(&x->flags, "--max-count=%d", req->max_count);
	if (req->skip > 0)
		strvec_pushf(&x->flags, "--skip=%d", req->skip);
	if (req->order == GITALY__FIND_ALL_COMMITS_REQUEST__ORDER__DATE)
		strvec_push(&x->flags, "--date-order");
	else if (req->order == GITALY__FIND_ALL_COMMITS_REQUEST__ORDER__TOPO)
		strvec_push(&x->flags, "--topo-order");
	if (req->revision.len)
		strvec_pushf(&x->args, "%.*s", (int)req->revision.len, (const char *)req->revision.data);
	else
		/* every branch; upstream names them one by one, which argv limits would not survive */
		strvec_push(&x->flags, "--branches");
	rd_lease(&x->ref.rd, hist_leased);
}

/* --- CommitsByMessage --- */

static void commits_by_message(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__CommitsByMessageRequest *req =
		msg_unpack(call, &gitaly__commits_by_message_request__descriptor, buf, len);
	struct hist *x;

	if (!req)
		return;
	x = hist_start(data, call, req, req->repository);
	if (!x || check_rev(x, &req->revision) < 0)
		return;
	if (!req->query || !*req->query) {
		rd_finish(&x->ref.rd, GRPC_INVALID_ARGUMENT, "empty Query");
		return;
	}
	if (rd_has_nul(req->path.data, req->path.len)) {
		rd_finish(&x->ref.rd, GRPC_INVALID_ARGUMENT, "path can't contain NUL");
		return;
	}
	strvec_push(&x->flags, "--pretty=%H");
	strvec_pushf(&x->flags, "--grep=%s", req->query);
	strvec_push(&x->flags, "--regexp-ignore-case");
	if (req->offset > 0)
		strvec_pushf(&x->flags, "--skip=%d", req->offset);
	if (req->limit > 0)
		strvec_pushf(&x->flags, "--max-count=%d", req->limit);
	if (req->path.len)
		strvec_pushf(&x->paths, "%.*s", (int)req->path.len, (const char *)req->path.data);
	if (req->global_options && req->global_options->literal_pathspecs)
		x->env = literal_env;
	if (req->revision.len) {
		strvec_pushf(&x->args, "%.*s", (int)req->revision.len, (const char *)req->revision.data);
		rd_lease(&x->ref.rd, hist_leased);
	} else {
		ref_default_branch(&x->ref, 0, hist_on_default);
	}
}

void gitaly_register_commit_history(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.CommitService/FindCommits", find_commits, g);
	gitaly_add_unary(s, "/gitaly.CommitService/FindAllCommits", find_all_commits, g);
	gitaly_add_unary(s, "/gitaly.CommitService/CommitsByMessage", commits_by_message, g);
}

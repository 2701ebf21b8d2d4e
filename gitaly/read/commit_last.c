/*
 * CommitService LastCommitForPath and ListLastCommitsForTree: the newest
 * commit that touched a path (docs/technical/gitaly-reads.md, "Last commits").
 *
 * Each lookup runs one `git log --max-count=1` (git offers no long-lived form
 * of a path-limited walk, upstream spawns one per path too) and reads the
 * commit through the leased cat-file process. ListLastCommitsForTree does the
 * lookups one after another and waits for the call's send queue to drain
 * between batches, so at most one git process per call runs at a time.
 */
#include "read/read.h"
#include "base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Entries per ListLastCommitsForTree message (upstream's batch size). */
#define LAST_COMMITS_PER_MESSAGE 10

/* --- one lookup: git log, then cat-file --- */

struct last_ctx;
/* `c` is NULL when the path has no commit; owned by the callee. */
typedef void (*last_done_fn)(struct last_ctx *x, Gitaly__GitCommit *c, int not_found);

struct last_ctx {
	struct rd rd;
	int literal;
	last_done_fn done;
};

static const char *const literal_env[] = { "GIT_LITERAL_PATHSPECS=1", NULL };

static void last_read(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct last_ctx *x = arg;
	if (status == CATFILE_MISSING || (status == 0 && info->type != CATFILE_COMMIT)) {
		x->done(x, NULL, 1);
		return;
	}
	if (status < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "reading commit: %s", strerror(-status));
		return;
	}
	x->done(x, gitaly_commit_parse(info->oid, data->buf, data->len), 0);
}

static void last_logged(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	struct last_ctx *x = (struct last_ctx *)rd;
	struct strbuf sb = STRBUF_INIT;
	char *nl;
	(void)err;
	if (status != 0) {
		gitaly_describe_status(&sb, status);
		rd_finish(rd, GRPC_INTERNAL, "logging last commit for path: %s", sb.buf);
		strbuf_release(&sb);
		return;
	}
	if (!out->len) {
		x->done(x, NULL, 1);
		return;
	}
	nl = memchr(out->buf, '\n', out->len);
	if (!nl) {
		rd_finish(rd, GRPC_INTERNAL, "expected object ID terminated by newline");
		return;
	}
	if ((size_t)(nl - out->buf) + 1 != out->len) {
		rd_finish(rd, GRPC_INTERNAL, "object ID has trailing data");
		return;
	}
	if (!rd->cf || catfile_read(rd->cf, out->buf, (size_t)(nl - out->buf), 64u << 20, last_read, x) < 0)
		rd_finish(rd, GRPC_INTERNAL, "reading commit: object reader failed");
}

/* Start one lookup of `path` (NUL-terminated, may not contain NUL) at `rev`. */
static void last_lookup(struct last_ctx *x, const char *rev, const char *path)
{
	static const char *const flags[] = { "--format=%H", "--max-count=1", NULL };
	const char *args[] = { rev, NULL };
	const char *paths[] = { path, NULL };
	struct git_call gc;
	rd_git_call(&x->rd, &gc, "log");
	gc.flags = flags;
	gc.args = args;
	gc.paths = paths;
	if (x->literal)
		gc.env = literal_env;
	rd_capture(&x->rd, &gc, 4096, last_logged);
}

int rd_path_is_local(const char *p, size_t len)
{
	struct strbuf sb = STRBUF_INIT;
	int ok;
	if (!len || p[0] == '/')
		return 0;
	go_path_clean(&sb, p, len);
	ok = !(sb.len == 2 && !memcmp(sb.buf, "..", 2)) && !(sb.len >= 3 && !memcmp(sb.buf, "../", 3));
	strbuf_release(&sb);
	return ok;
}

/* --- LastCommitForPath --- */

struct last_commit {
	struct last_ctx l;
	Gitaly__LastCommitForPathRequest *req;
	struct strbuf rev, path;
};

static void lcp_free(struct rd *rd)
{
	struct last_commit *x = (struct last_commit *)rd;
	strbuf_release(&x->rev);
	strbuf_release(&x->path);
}

static void lcp_done(struct last_ctx *l, Gitaly__GitCommit *c, int not_found)
{
	Gitaly__LastCommitForPathResponse resp = GITALY__LAST_COMMIT_FOR_PATH_RESPONSE__INIT;
	(void)not_found;   /* no commit is an empty answer, not an error */
	resp.commit = c;
	rd_send(&l->rd, &resp);
	gitaly_commit_free(c);
	rd_ok(&l->rd);
}

static void lcp_leased(struct rd *rd)
{
	struct last_commit *x = (struct last_commit *)rd;
	last_lookup(&x->l, x->rev.buf, x->path.buf);
}

static void last_commit_for_path(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__LastCommitForPathRequest *req =
		msg_unpack(call, &gitaly__last_commit_for_path_request__descriptor, buf, len);
	struct last_commit *x;
	struct strbuf msg = STRBUF_INIT;
	const char *path;
	size_t plen;

	if (!req)
		return;
	x = (struct last_commit *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	x->l.rd.on_free = lcp_free;
	x->l.done = lcp_done;
	strbuf_init(&x->rev, 0);
	strbuf_init(&x->path, 0);
	path = (const char *)req->path.data;
	plen = req->path.len;
	if (gitaly_check_revision((const char *)req->revision.data, req->revision.len, &msg) < 0) {
		rd_finish(&x->l.rd, GRPC_INVALID_ARGUMENT, "%s", msg.buf);
		goto out;
	}
	if (!plen || (plen == 1 && path[0] == '/')) {
		path = ".";
		plen = 1;
	} else if (path[0] == '/') {
		rd_finish(&x->l.rd, GRPC_INVALID_ARGUMENT, "path is an absolute path");
		goto out;
	} else if (!rd_path_is_local(path, plen)) {
		rd_finish(&x->l.rd, GRPC_INVALID_ARGUMENT, "path escapes repository");
		goto out;
	}
	if (rd_has_nul(path, plen)) {
		rd_finish(&x->l.rd, GRPC_INVALID_ARGUMENT, "path can't contain NUL");
		goto out;
	}
	strbuf_add(&x->rev, req->revision.data, req->revision.len);
	strbuf_add(&x->path, path, plen);
	x->l.literal = req->literal_pathspec || (req->global_options && req->global_options->literal_pathspecs);
	rd_lease(&x->l.rd, lcp_leased);
out:
	strbuf_release(&msg);
}

/* --- ListLastCommitsForTree --- */

struct ls_ent {
	char *path;
	int rank;         /* trees, then blobs, then submodules (upstream's stable sort) */
	size_t seq;
};

struct last_tree {
	struct last_ctx l;
	Gitaly__ListLastCommitsForTreeRequest *req;
	struct ls_ent *ents;
	size_t nr, alloc, bytes;
	size_t next, end;                  /* the window [offset, offset+limit) being answered */
	Gitaly__ListLastCommitsForTreeResponse__CommitForTree *batch[LAST_COMMITS_PER_MESSAGE];
	size_t nbatch;
	int waiting;                       /* a batch went out into a full send queue */
};

static void batch_clear(struct last_tree *x)
{
	for (size_t i = 0; i < x->nbatch; i++) {
		gitaly_commit_free(x->batch[i]->commit);
		free(x->batch[i]);
	}
	x->nbatch = 0;
}

static void llt_free(struct rd *rd)
{
	struct last_tree *x = (struct last_tree *)rd;
	for (size_t i = 0; i < x->nr; i++)
		free(x->ents[i].path);
	free(x->ents);
	batch_clear(x);
}

static void llt_flush(struct last_tree *x)
{
	Gitaly__ListLastCommitsForTreeResponse resp = GITALY__LIST_LAST_COMMITS_FOR_TREE_RESPONSE__INIT;
	if (!x->nbatch)
		return;
	resp.commits = x->batch;
	resp.n_commits = x->nbatch;
	rd_send(&x->l.rd, &resp);
	batch_clear(x);
}

static void llt_next(struct last_tree *x)
{
	if (!x->l.rd.base.call)
		return;
	if (x->next >= x->end) {
		llt_flush(x);
		rd_ok(&x->l.rd);
		return;
	}
	if (rd_full(&x->l.rd)) {
		x->waiting = 1;   /* resumed from on_writable */
		return;
	}
	last_lookup(&x->l, x->req->revision ? x->req->revision : "", x->ents[x->next].path);
}

static void llt_writable(struct rd *rd)
{
	struct last_tree *x = (struct last_tree *)rd;
	if (x->waiting) {
		x->waiting = 0;
		llt_next(x);
	}
}

static void llt_done(struct last_ctx *l, Gitaly__GitCommit *c, int not_found)
{
	struct last_tree *x = (struct last_tree *)l;
	Gitaly__ListLastCommitsForTreeResponse__CommitForTree *e;
	struct ls_ent *ent = &x->ents[x->next];
	if (not_found) {
		/* a path pathspec magic hides (":wq" without literal pathspecs) ends here too */
		rd_finish(&l->rd, GRPC_INTERNAL, "object not found");
		return;
	}
	e = xcalloc(1, sizeof(*e));
	gitaly__list_last_commits_for_tree_response__commit_for_tree__init(e);
	e->commit = c;
	e->path_bytes.data = (uint8_t *)ent->path;
	e->path_bytes.len = strlen(ent->path);
	x->batch[x->nbatch++] = e;
	x->next++;
	if (x->nbatch == LAST_COMMITS_PER_MESSAGE)
		llt_flush(x);
	llt_next(x);
}

static int ent_cmp(const void *a, const void *b)
{
	const struct ls_ent *x = a, *y = b;
	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* "<mode> SP <type> SP <oid> TAB <path>" (ls-tree -z) */
static void llt_line(struct rd *rd, char *line, size_t len)
{
	struct last_tree *x = (struct last_tree *)rd;
	char *tab = memchr(line, '\t', len);
	char *sp = memchr(line, ' ', len);
	struct ls_ent *e;
	size_t tlen;
	if (!tab || !sp || sp > tab) {
		rd_finish(rd, GRPC_INTERNAL, "invalid ls-tree output");
		return;
	}
	x->bytes += len + sizeof(*e);
	if (x->bytes > MAX_TREE_SIZE) {
		rd_finish(rd, GRPC_INTERNAL, "tree listing exceeds %u bytes", MAX_TREE_SIZE);
		return;
	}
	ALLOC_GROW(x->ents, x->nr + 1, x->alloc);
	e = &x->ents[x->nr];
	sp++;
	tlen = (size_t)(tab - sp);
	e->rank = tlen >= 4 && !memcmp(sp, "tree", 4) ? 0 : tlen >= 4 && !memcmp(sp, "blob", 4) ? 1 : 2;
	e->seq = x->nr;
	e->path = xstrndup(tab + 1, len - (size_t)(tab + 1 - line));
	x->nr++;
}

static void llt_listed(struct rd *rd, int status, const struct strbuf *err)
{
	struct last_tree *x = (struct last_tree *)rd;
	struct strbuf sb = STRBUF_INIT;
	size_t offset = (size_t)x->req->offset, limit = (size_t)x->req->limit;
	(void)err;
	if (!rd->base.call)
		return;
	if (status != 0) {
		gitaly_describe_status(&sb, status);
		rd_finish(rd, GRPC_INTERNAL, "%s", sb.buf);
		strbuf_release(&sb);
		return;
	}
	qsort(x->ents, x->nr, sizeof(*x->ents), ent_cmp);
	if (offset >= x->nr)
		offset = limit = 0;
	x->next = offset;
	x->end = offset + limit > x->nr ? x->nr : offset + limit;
	llt_next(x);
}

static void llt_leased(struct rd *rd)
{
	struct last_tree *x = (struct last_tree *)rd;
	static const char *const flags[] = { "-z", "--full-name", NULL };
	const char *args[] = { x->req->revision ? x->req->revision : "", NULL };
	const char *paths[2];
	struct strbuf p = STRBUF_INIT;
	struct git_call gc;
	/* the empty path and "/" both mean the root tree */
	if (!x->req->path.len || (x->req->path.len == 1 && x->req->path.data[0] == '/'))
		strbuf_addch(&p, '.');
	else
		strbuf_add(&p, x->req->path.data, x->req->path.len);
	paths[0] = p.buf;
	paths[1] = NULL;
	rd_git_call(rd, &gc, "ls-tree");
	gc.flags = flags;
	gc.args = args;
	gc.paths = paths;
	if (x->l.literal)
		gc.env = literal_env;
	rd_lines_start(rd, &gc, '\0', llt_line, llt_listed);
	strbuf_release(&p);
}

static void list_last_commits_for_tree(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__ListLastCommitsForTreeRequest *req =
		msg_unpack(call, &gitaly__list_last_commits_for_tree_request__descriptor, buf, len);
	struct last_tree *x;
	struct strbuf msg = STRBUF_INIT;
	const char *rev;

	if (!req)
		return;
	x = (struct last_tree *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	x->l.rd.on_free = llt_free;
	x->l.rd.on_writable = llt_writable;
	x->l.done = llt_done;
	rev = req->revision ? req->revision : "";
	if (gitaly_check_revision(rev, strlen(rev), &msg) < 0)
		rd_finish(&x->l.rd, GRPC_INVALID_ARGUMENT, "%s", msg.buf);
	else if (req->offset < 0)
		rd_finish(&x->l.rd, GRPC_INVALID_ARGUMENT, "offset negative");
	else if (req->limit < 0)
		rd_finish(&x->l.rd, GRPC_INVALID_ARGUMENT, "limit negative");
	else if (rd_has_nul(req->path.data, req->path.len))
		rd_finish(&x->l.rd, GRPC_INVALID_ARGUMENT, "path can't contain NUL");
	else {
		x->l.literal = req->global_options && req->global_options->literal_pathspecs;
		rd_lease(&x->l.rd, llt_leased);
	}
	strbuf_release(&msg);
}

void gitaly_register_commit_last(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.CommitService/LastCommitForPath", last_commit_for_path, g);
	gitaly_add_unary(s, "/gitaly.CommitService/ListLastCommitsForTree", list_last_commits_for_tree, g);
}

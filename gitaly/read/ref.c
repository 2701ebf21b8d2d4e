/*
 * RefService reads: FindDefaultBranchName, RefExists,
 * FindLocalBranches, FindAllBranches, FindBranch, ListRefs, FindTag,
 * FindAllTags. Listings stream from for-each-ref; commits and tags come from
 * the cached cat-file processes.
 */
#include "read/ref.h"
#include "base/util.h"
#include "git/refs.h"
#include "errors.pb-c.h"
#include "ref.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>


static void free_batch_item(struct ref_ctx *x, void *it);

void ref_ctx_release(struct rd *rd)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	strbuf_release(&x->head);
	if (x->pipe_started)
		rd_pipe_release(&x->pipe);
	strvec_clear(&x->flags);
	strvec_clear(&x->args);
	for (size_t i = 0; i < x->nbatch; i++)
		free_batch_item(x, x->batch[i]);
	free(x->batch);
	free(x->head_oid);
	strbuf_release(&x->name);
	gitaly_tag_free(x->tag);
	free(x->oid);
}

static void ref_writable(struct rd *rd)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	if (x->pipe_started)
		rd_pipe_writable(&x->pipe);
	else if (x->kind == REF_KIND_LIST_REFS && !rd_full(rd))
		rd_lines_resume(rd);
}

struct ref_ctx *ref_start(struct gitaly *g, struct grpc_call *call, void *req,
			  const Gitaly__Repository *repo, int kind)
{
	return ref_start_size(g, call, sizeof(struct ref_ctx), req, repo, kind);
}

struct ref_ctx *ref_start_size(struct gitaly *g, struct grpc_call *call, size_t size, void *req,
			       const Gitaly__Repository *repo, int kind)
{
	struct ref_ctx *x = (struct ref_ctx *)rd_start(g, call, size, req, repo);
	if (!x)
		return NULL;
	x->rd.on_free = ref_ctx_release;
	x->rd.on_writable = ref_writable;
	x->kind = kind;
	strbuf_init(&x->head, 0);
	strbuf_init(&x->name, 0);
	strvec_init(&x->flags);
	strvec_init(&x->args);
	x->limit = INT64_MAX;
	return x;
}

int ref_check_bytes(struct ref_ctx *x, const ProtobufCBinaryData *b, const char *what)
{
	if (!rd_has_nul(b->data, b->len))
		return 0;
	rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "%s can't contain NUL", what);
	return -1;
}

/* Run "git <subcmd> <flags> <arg>" on the repository, `cb` getting at most `max` bytes of stdout. */
void ref_git(struct ref_ctx *x, const char *subcmd, const char *const *flags, const char *arg,
	     size_t max, rd_capture_fn cb)
{
	const char *args[] = { arg, NULL };
	struct git_call gc;
	rd_git_call(&x->rd, &gc, subcmd);
	gc.flags = flags;
	gc.args = args;
	rd_capture(&x->rd, &gc, max, cb);
}

/* --- default branch (upstream GetDefaultBranch) --- */

static const char *const candidates[] = { NULL, "refs/heads/main", "refs/heads/master" };

static void db_first_branch(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	size_t n = strcspn(out->buf, "\n");
	const char *nul = memchr(out->buf, '\0', n);
	if (status != 0) {
		rd_finish(rd, GRPC_INTERNAL, "get default branch: %s", err->buf);
		return;
	}
	if (nul)
		n = (size_t)(nul - out->buf);
	x->defbranch_done(x, out->buf, n);
}

static uint64_t db_info(void *arg, const struct catfile_info *info)
{
	(void)arg;
	(void)info;
	return 0;
}

static void db_candidate_done(struct ref_ctx *x, int i, int status)
{
	if (status < 0) {
		if (!x->answered) {
			x->answered = 1;
			rd_finish(&x->rd, GRPC_INTERNAL, "get default branch: %s", strerror(-status));
		}
		return;
	}
	x->found[i] = status == 0 ? 1 : -1;
	/*
	 * Decide once all three answered: leaving reads in flight would cost
	 * the cached process (a released process with pending reads is killed).
	 */
	if (x->answered || !x->found[0] || !x->found[1] || !x->found[2])
		return;
	for (int k = 0; k < 3; k++) {
		if (x->found[k] == 1) {
			const char *name = k ? candidates[k] : x->head.buf;
			x->answered = 1;
			x->defbranch_done(x, name, strlen(name));
			return;
		}
	}
	/* none: the first branch in refname order, or nothing */
	x->answered = 1;
	{
		static const char *const flags[] = { "--format=%(refname)%00%(objectname)%00%(symref)", "--count=1", NULL };
		ref_git(x, "for-each-ref", flags, "refs/heads/", 1 << 20, db_first_branch);
	}
}

static void db_done0(void *arg, int status) { db_candidate_done(arg, 0, status); }
static void db_done1(void *arg, int status) { db_candidate_done(arg, 1, status); }
static void db_done2(void *arg, int status) { db_candidate_done(arg, 2, status); }

static const struct catfile_read_ops db_ops[3] = {
	{ db_info, NULL, db_done0 }, { db_info, NULL, db_done1 }, { db_info, NULL, db_done2 },
};

static void db_leased(struct rd *rd)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	for (int i = 0; i < 3; i++) {
		const char *name = i ? candidates[i] : x->head.buf;
		if (catfile_info(rd->cf, name, strlen(name), &db_ops[i], x) < 0) {
			rd_finish(rd, GRPC_INTERNAL, "get default branch: object reader failed");
			return;
		}
	}
}

static void db_symref(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	const char *nl = memchr(out->buf, '\n', out->len);
	const char *what = x->head_only ? "head reference" : "get default branch";
	if (status != 0) {
		rd_finish(rd, GRPC_INTERNAL, "%s: %s", what, err->len ? err->buf : "symbolic-ref failed");
		return;
	}
	if (!nl) {
		rd_finish(rd, GRPC_INTERNAL, "%s: expected symbolic reference to be terminated by newline", what);
		return;
	}
	if ((size_t)(nl - out->buf) + 1 != out->len) {
		rd_finish(rd, GRPC_INTERNAL, "%s: symbolic reference has trailing data", what);
		return;
	}
	strbuf_add(&x->head, out->buf, (size_t)(nl - out->buf));
	if (x->head_only) {
		x->defbranch_done(x, x->head.buf, x->head.len);
		return;
	}
	rd_lease(rd, db_leased);
}

void ref_default_branch(struct ref_ctx *x, int head_only,
			void (*done)(struct ref_ctx *x, const char *name, size_t len))
{
	struct git_ref head;
	x->head_only = head_only;
	x->defbranch_done = done;
	/* HEAD read from its file when it is a plain symbolic ref (docs/technical/ref-files.md) */
	if (git_refs_read(x->rd.path.buf, "HEAD", 4, &head, NULL) == GIT_REFS_FOUND && head.target[0]) {
		strbuf_addstr(&x->head, head.target);
		if (head_only)
			x->defbranch_done(x, x->head.buf, x->head.len);
		else
			rd_lease(&x->rd, db_leased);
		return;
	}
	ref_git(x, "symbolic-ref", NULL, "HEAD", 1 << 20, db_symref);
}

/* --- FindDefaultBranchName --- */

static void fdbn_done(struct ref_ctx *x, const char *name, size_t len)
{
	Gitaly__FindDefaultBranchNameResponse resp = GITALY__FIND_DEFAULT_BRANCH_NAME_RESPONSE__INIT;
	resp.name.data = (uint8_t *)name;
	resp.name.len = len;
	rd_send(&x->rd, &resp);
	rd_ok(&x->rd);
}

static void find_default_branch_name(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindDefaultBranchNameRequest *req =
		msg_unpack(call, &gitaly__find_default_branch_name_request__descriptor, buf, len);
	struct ref_ctx *x;
	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, REF_KIND_OTHER);
	if (x)
		ref_default_branch(x, req->head_only, fdbn_done);
}

/* --- RefExists --- */

static void ref_exists_done(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	Gitaly__RefExistsResponse resp = GITALY__REF_EXISTS_RESPONSE__INIT;
	(void)out;
	if (status != 0 && status != 1) {
		rd_finish(rd, GRPC_INTERNAL, "show-ref: exit status %d: %s", status, err->buf);
		return;
	}
	resp.value = status == 0;
	rd_send(rd, &resp);
	rd_ok(rd);
}

static void ref_exists_slow(struct ref_ctx *x)
{
	static const char *const flags[] = { "--verify", "--quiet", NULL };
	x->fast = 0;
	ref_git(x, "show-ref", flags, x->name.buf, 1 << 20, ref_exists_done);
}

/* show-ref also insists that the object exists: ask the cached cat-file */
static void ref_exists_object(void *arg, int status)
{
	struct ref_ctx *x = arg;
	Gitaly__RefExistsResponse resp = GITALY__REF_EXISTS_RESPONSE__INIT;
	if (status != 0) {
		ref_exists_slow(x);   /* a broken ref: git says what that means */
		return;
	}
	resp.value = 1;
	rd_send(&x->rd, &resp);
	rd_ok(&x->rd);
}

static const struct catfile_read_ops ref_exists_ops = { db_info, NULL, ref_exists_object };

static void ref_exists_leased(struct rd *rd)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	if (catfile_info(rd->cf, x->oid, strlen(x->oid), &ref_exists_ops, x) < 0)
		ref_exists_slow(x);
}

static void ref_exists(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__RefExistsRequest *req = msg_unpack(call, &gitaly__ref_exists_request__descriptor, buf, len);
	struct git_ref r;
	struct ref_ctx *x;

	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, REF_KIND_OTHER);
	if (!x)
		return;
	if (req->ref.len < 5 || memcmp(req->ref.data, "refs/", 5) || rd_has_nul(req->ref.data, req->ref.len)) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "invalid refname");
		return;
	}
	strbuf_add(&x->name, req->ref.data, req->ref.len);
	switch (git_refs_resolve(x->rd.path.buf, x->name.buf, x->name.len, &r)) {
	case GIT_REFS_MISSING: {
		Gitaly__RefExistsResponse resp = GITALY__REF_EXISTS_RESPONSE__INIT;
		rd_send(&x->rd, &resp);
		rd_ok(&x->rd);
		return;
	}
	case GIT_REFS_FOUND:
		x->fast = 1;
		x->oid = xstrdup(r.oid);
		rd_lease(&x->rd, ref_exists_leased);
		return;
	default:
		ref_exists_slow(x);
	}
}

static void free_batch_item(struct ref_ctx *x, void *it)
{
	if (x->kind == REF_KIND_LOCAL_BRANCHES) {
		Gitaly__Branch *b = it;
		gitaly_commit_free(b->target_commit);
		free(b->name.data);
		free(b);
	} else if (x->kind == REF_KIND_ALL_BRANCHES) {
		Gitaly__FindAllBranchesResponse__Branch *b = it;
		gitaly_commit_free(b->target);
		free(b->name.data);
		free(b);
	} else if (x->kind == REF_KIND_ALL_TAGS) {
		gitaly_tag_free(it);
	} else if (x->kind == REF_KIND_LIST_REFS) {
		Gitaly__ListRefsResponse__Reference *r = it;
		free(r->name.data);
		free(r->target);
		free(r->peeled_target);
		free(r);
	}
}

void ref_flush_batch(struct ref_ctx *x)
{
	if (!x->nbatch)
		return;
	if (x->kind == REF_KIND_LOCAL_BRANCHES) {
		Gitaly__FindLocalBranchesResponse resp = GITALY__FIND_LOCAL_BRANCHES_RESPONSE__INIT;
		resp.local_branches = (Gitaly__Branch **)x->batch;
		resp.n_local_branches = x->nbatch;
		rd_send(&x->rd, &resp);
	} else if (x->kind == REF_KIND_ALL_BRANCHES) {
		Gitaly__FindAllBranchesResponse resp = GITALY__FIND_ALL_BRANCHES_RESPONSE__INIT;
		resp.branches = (Gitaly__FindAllBranchesResponse__Branch **)x->batch;
		resp.n_branches = x->nbatch;
		rd_send(&x->rd, &resp);
	} else if (x->kind == REF_KIND_ALL_TAGS) {
		Gitaly__FindAllTagsResponse resp = GITALY__FIND_ALL_TAGS_RESPONSE__INIT;
		resp.tags = (Gitaly__Tag **)x->batch;
		resp.n_tags = x->nbatch;
		rd_send(&x->rd, &resp);
	} else {
		Gitaly__ListRefsResponse resp = GITALY__LIST_REFS_RESPONSE__INIT;
		resp.references = (Gitaly__ListRefsResponse__Reference **)x->batch;
		resp.n_references = x->nbatch;
		rd_send(&x->rd, &resp);
	}
	for (size_t i = 0; i < x->nbatch; i++)
		free_batch_item(x, x->batch[i]);
	x->nbatch = 0;
	x->bytes = 0;
}

void ref_push_batch(struct ref_ctx *x, void *item)
{
	ALLOC_GROW(x->batch, x->nbatch + 1, x->alloc);
	x->batch[x->nbatch++] = item;
	if (x->nbatch >= LINES_PER_MESSAGE)
		ref_flush_batch(x);
}

/* Skip lines up to and including the page token (compared with the ref name). */
int ref_past_token(struct ref_ctx *x, const char *name, size_t len)
{
	if (x->token_seen || !x->token || !*x->token)
		return 1;
	x->token_seen = strlen(x->token) == len && !memcmp(x->token, name, len);
	return 0;
}

void ref_listing_end(struct rd_pipe *p, int status, const struct strbuf *err)
{
	struct ref_ctx *x = container_of(p, struct ref_ctx, pipe);
	(void)err;
	if (status != 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "finding refs: listing failed with exit code %d", status);
		return;
	}
	if (x->token && *x->token && !x->token_seen) {
		rd_finish(&x->rd, x->kind == REF_KIND_ALL_TAGS ? GRPC_INVALID_ARGUMENT : GRPC_INTERNAL,
			  "could not find page token");
		return;
	}
	ref_flush_batch(x);
	rd_ok(&x->rd);
}

void ref_start_listing(struct rd *rd, const struct rd_pipe_ops *ops)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	struct git_call gc;
	rd_git_call(rd, &gc, "for-each-ref");
	gc.flags = x->flags.v;
	gc.args = x->args.v;
	x->pipe_started = 1;
	rd_pipe_start(&x->pipe, rd, &gc, '\n', ops);
}

/* limit 0 reads nothing; a page token then can never be found */
int ref_empty_page(struct ref_ctx *x, enum grpc_code code)
{
	if (x->limit != 0)
		return 0;
	if (x->token && *x->token)
		rd_finish(&x->rd, code, "could not find page token");
	else
		rd_ok(&x->rd);
	return 1;
}

void ref_set_pagination(struct ref_ctx *x, const Gitaly__PaginationParameter *p)
{
	x->token = "";
	if (!p)
		return;
	if (p->limit >= 0)
		x->limit = p->limit;
	x->token = p->page_token ? p->page_token : "";
}

/* --- ListRefs --- */

static void lr_line(struct rd *rd, char *line, size_t len)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	Gitaly__ListRefsResponse__Reference *r;
	char *f[3];
	size_t nf = 0, want = x->peel ? 3 : 2;
	char *p = line, *end = line + len;

	for (;;) {
		char *nul = memchr(p, '\0', (size_t)(end - p));
		if (nf == 3)
			break;
		f[nf++] = p;
		if (!nul)
			break;
		p = nul + 1;
	}
	if (nf != want || (nf == 3 && memchr(f[2], '\0', (size_t)(end - f[2])))) {
		rd_finish(rd, GRPC_INTERNAL, "error parsing ref \"%.*s\"", (int)len, line);
		return;
	}
	if (x->head_oid) {
		/* HEAD leads the first message */
		r = xcalloc(1, sizeof(*r));
		gitaly__list_refs_response__reference__init(r);
		r->name.data = xmemdup("HEAD", 4);
		r->name.len = 4;
		r->target = x->head_oid;
		r->peeled_target = xstrdup("");
		x->head_oid = NULL;
		ALLOC_GROW(x->batch, x->nbatch + 1, x->alloc);
		x->batch[x->nbatch++] = r;
		x->head_in_batch = 1;
	}
	r = xcalloc(1, sizeof(*r));
	gitaly__list_refs_response__reference__init(r);
	r->name.len = strlen(f[0]);
	r->name.data = xmemdup(f[0], r->name.len);
	r->target = xstrndup(f[1], nf == 3 ? (size_t)(f[2] - f[1] - 1) : (size_t)(end - f[1]));
	r->peeled_target = nf == 3 ? xstrndup(f[2], (size_t)(end - f[2])) : xstrdup("");
	ALLOC_GROW(x->batch, x->nbatch + 1, x->alloc);
	x->batch[x->nbatch++] = r;
	/* 20 refs per message; HEAD rides along in the first one */
	if (x->nbatch - (size_t)x->head_in_batch >= LINES_PER_MESSAGE) {
		ref_flush_batch(x);
		x->head_in_batch = 0;
	}
	if (rd->base.call && rd_full(rd))
		rd_lines_pause(rd);
}

static void lr_end(struct rd *rd, int status, const struct strbuf *err)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	(void)err;
	if (status != 0) {
		rd_finish(rd, GRPC_INTERNAL, "listing failed with exit code %d", status);
		return;
	}
	ref_flush_batch(x);
	rd_ok(rd);
}

static void lr_list(struct ref_ctx *x)
{
	struct git_call gc;
	rd_git_call(&x->rd, &gc, "for-each-ref");
	gc.flags = x->flags.v;
	gc.args = x->args.v;
	rd_lines_start(&x->rd, &gc, '\n', lr_line, lr_end);
}

static void lr_head(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	(void)err;
	/* an unborn HEAD is simply left out */
	if (status == 0 && out->len)
		x->head_oid = xstrndup(out->buf, strcspn(out->buf, "\n"));
	lr_list(x);
}

static void list_refs(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__ListRefsRequest *req = msg_unpack(call, &gitaly__list_refs_request__descriptor, buf, len);
	static const char *const keys[] = { "refname", "creatordate", "authordate", "committerdate" };
	struct ref_ctx *x;
	unsigned key = 0, dir = 0;

	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, REF_KIND_LIST_REFS);
	if (!x)
		return;
	if (!req->n_patterns) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "patterns must have at least one entry");
		return;
	}
	if (req->sort_by) {
		key = (unsigned)req->sort_by->key;
		dir = (unsigned)req->sort_by->direction;
		if (key >= ARRAY_SIZE(keys)) {
			rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "sorting key %u is not supported", key);
			return;
		}
		if (dir > 1) {
			rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "sorting direction is not supported");
			return;
		}
	}
	x->peel = req->peel_tags;
	strvec_push(&x->flags, x->peel ? "--format=%(refname)%00%(objectname)%00%(*objectname)"
				       : "--format=%(refname)%00%(objectname)");
	strvec_pushf(&x->flags, "--sort=%s%s", dir ? "-" : "", keys[key]);
	for (size_t i = 0; i < req->n_pointing_at_oids; i++) {
		if (ref_check_bytes(x, &req->pointing_at_oids[i], "oid") < 0)
			return;
		strvec_pushf(&x->flags, "--points-at=%.*s", (int)req->pointing_at_oids[i].len,
			     (const char *)req->pointing_at_oids[i].data);
	}
	for (size_t i = 0; i < req->n_patterns; i++) {
		if (ref_check_bytes(x, &req->patterns[i], "pattern") < 0)
			return;
		strvec_pushf(&x->args, "%.*s", (int)req->patterns[i].len, (const char *)req->patterns[i].data);
	}
	if (req->head) {
		static const char *const flags[] = { "--verify", NULL };
		ref_git(x, "rev-parse", flags, "HEAD", 4096, lr_head);
		return;
	}
	lr_list(x);
}

/* --- tags --- */
void gitaly_register_ref(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.RefService/FindDefaultBranchName", find_default_branch_name, g);
	gitaly_add_unary(s, "/gitaly.RefService/RefExists", ref_exists, g);
	gitaly_add_unary(s, "/gitaly.RefService/FindLocalBranches", ref_find_local_branches, g);
	gitaly_add_unary(s, "/gitaly.RefService/FindAllBranches", ref_find_all_branches, g);
	gitaly_add_unary(s, "/gitaly.RefService/FindBranch", ref_find_branch, g);
	gitaly_add_unary(s, "/gitaly.RefService/ListRefs", list_refs, g);
	gitaly_add_unary(s, "/gitaly.RefService/FindTag", ref_find_tag, g);
	gitaly_add_unary(s, "/gitaly.RefService/FindAllTags", ref_find_all_tags, g);
}

/*
 * RefService reads (spec §2.1.20, §2.2): FindDefaultBranchName, RefExists,
 * FindLocalBranches, FindAllBranches, FindBranch, ListRefs, FindTag,
 * FindAllTags. Listings stream from for-each-ref; commits and tags come from
 * the cached cat-file processes.
 */
#include "read/read.h"
#include "base/util.h"
#include "errors.pb-c.h"
#include "ref.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One context type serves every ref RPC; each uses the fields it needs. */
struct ref_ctx {
	struct rd rd;
	/* default branch resolution */
	struct strbuf head;
	int head_only, found[3], answered;
	void (*defbranch_done)(struct ref_ctx *x, const char *name, size_t len);
	/* pipelines */
	struct rd_pipe pipe;
	int pipe_started;
	struct strvec flags, args;
	const char *token;
	int token_seen;
	int64_t limit, count;
	int kind;                          /* which RPC: RPC_* */
	void **batch;
	size_t nbatch, alloc, bytes;
	/* ListRefs */
	char *head_oid;
	int peel, head_in_batch;
	/* FindTag / FindBranch */
	struct strbuf name;
	Gitaly__Tag *tag;
	struct gitaly_tagged tagged;
	char *oid;
};

enum { RPC_LOCAL_BRANCHES = 1, RPC_ALL_BRANCHES, RPC_ALL_TAGS, RPC_LIST_REFS, RPC_OTHER };

static void free_batch_item(struct ref_ctx *x, void *it);

static void ref_free(struct rd *rd)
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
	else if (x->kind == RPC_LIST_REFS && !rd_full(rd))
		rd_lines_resume(rd);
}

static struct ref_ctx *ref_start(struct gitaly *g, struct grpc_call *call, void *req,
				 const Gitaly__Repository *repo, int kind)
{
	struct ref_ctx *x = (struct ref_ctx *)rd_start(g, call, sizeof(struct ref_ctx), req, repo);
	if (!x)
		return NULL;
	x->rd.on_free = ref_free;
	x->rd.on_writable = ref_writable;
	x->kind = kind;
	strbuf_init(&x->head, 0);
	strbuf_init(&x->name, 0);
	strvec_init(&x->flags);
	strvec_init(&x->args);
	x->limit = INT64_MAX;
	return x;
}

static int check_bytes(struct ref_ctx *x, const ProtobufCBinaryData *b, const char *what)
{
	if (!rd_has_nul(b->data, b->len))
		return 0;
	rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "%s can't contain NUL", what);
	return -1;
}

/* Run "git <subcmd> <flags> <arg>" on the repository, `cb` getting at most `max` bytes of stdout. */
static void ref_git(struct ref_ctx *x, const char *subcmd, const char *const *flags, const char *arg,
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

static void default_branch(struct ref_ctx *x, int head_only,
			   void (*done)(struct ref_ctx *x, const char *name, size_t len))
{
	x->head_only = head_only;
	x->defbranch_done = done;
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
		rpc_unpack(call, &gitaly__find_default_branch_name_request__descriptor, buf, len);
	struct ref_ctx *x;
	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, RPC_OTHER);
	if (x)
		default_branch(x, req->head_only, fdbn_done);
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

static void ref_exists(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__RefExistsRequest *req = rpc_unpack(call, &gitaly__ref_exists_request__descriptor, buf, len);
	static const char *const flags[] = { "--verify", "--quiet", NULL };
	struct ref_ctx *x;

	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, RPC_OTHER);
	if (!x)
		return;
	if (req->ref.len < 5 || memcmp(req->ref.data, "refs/", 5) || rd_has_nul(req->ref.data, req->ref.len)) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "invalid refname");
		return;
	}
	strbuf_add(&x->name, req->ref.data, req->ref.len);
	ref_git(x, "show-ref", flags, x->name.buf, 1 << 20, ref_exists_done);
}

/* --- branch listings --- */

struct branch_item {
	char *name;
	size_t len;
};

static void branch_item_free(void *p)
{
	struct branch_item *it = p;
	free(it->name);
	free(it);
}

static void free_batch_item(struct ref_ctx *x, void *it)
{
	if (x->kind == RPC_LOCAL_BRANCHES) {
		Gitaly__Branch *b = it;
		gitaly_commit_free(b->target_commit);
		free(b->name.data);
		free(b);
	} else if (x->kind == RPC_ALL_BRANCHES) {
		Gitaly__FindAllBranchesResponse__Branch *b = it;
		gitaly_commit_free(b->target);
		free(b->name.data);
		free(b);
	} else if (x->kind == RPC_ALL_TAGS) {
		gitaly_tag_free(it);
	} else if (x->kind == RPC_LIST_REFS) {
		Gitaly__ListRefsResponse__Reference *r = it;
		free(r->name.data);
		free(r->target);
		free(r->peeled_target);
		free(r);
	}
}

static void flush_batch(struct ref_ctx *x)
{
	if (!x->nbatch)
		return;
	if (x->kind == RPC_LOCAL_BRANCHES) {
		Gitaly__FindLocalBranchesResponse resp = GITALY__FIND_LOCAL_BRANCHES_RESPONSE__INIT;
		resp.local_branches = (Gitaly__Branch **)x->batch;
		resp.n_local_branches = x->nbatch;
		rd_send(&x->rd, &resp);
	} else if (x->kind == RPC_ALL_BRANCHES) {
		Gitaly__FindAllBranchesResponse resp = GITALY__FIND_ALL_BRANCHES_RESPONSE__INIT;
		resp.branches = (Gitaly__FindAllBranchesResponse__Branch **)x->batch;
		resp.n_branches = x->nbatch;
		rd_send(&x->rd, &resp);
	} else if (x->kind == RPC_ALL_TAGS) {
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

static void push_batch(struct ref_ctx *x, void *item)
{
	ALLOC_GROW(x->batch, x->nbatch + 1, x->alloc);
	x->batch[x->nbatch++] = item;
	if (x->nbatch >= LINES_PER_MESSAGE)
		flush_batch(x);
}

/* Skip lines up to and including the page token (compared with the ref name). */
static int past_token(struct ref_ctx *x, const char *name, size_t len)
{
	if (x->token_seen || !x->token || !*x->token)
		return 1;
	x->token_seen = strlen(x->token) == len && !memcmp(x->token, name, len);
	return 0;
}

static int branch_line(struct rd_pipe *p, char *line, size_t len)
{
	struct ref_ctx *x = container_of(p, struct ref_ctx, pipe);
	char *nul = memchr(line, '\0', len);
	struct branch_item *it;
	struct strbuf rev = STRBUF_INIT;
	int rc;

	if (x->count >= x->limit)
		return -1;
	if (!nul || memchr(nul + 1, '\0', len - (size_t)(nul - line) - 1)) {
		rd_finish(&x->rd, GRPC_INTERNAL, "error parsing ref %.*s", (int)len, line);
		return -1;
	}
	if (!past_token(x, line, (size_t)(nul - line)))
		return 0;
	x->count++;
	it = xcalloc(1, sizeof(*it));
	it->len = (size_t)(nul - line);
	it->name = xmemdup(line, it->len);
	strbuf_add(&rev, nul + 1, len - it->len - 1);
	strbuf_addstr(&rev, "^{commit}");
	rc = rd_pipe_read(p, rev.buf, rev.len, it, 1);
	strbuf_release(&rev);
	if (rc < 0) {
		branch_item_free(it);
		rd_finish(&x->rd, GRPC_INTERNAL, "finding refs: object reader failed");
		return -1;
	}
	return 0;
}

static void branch_object(struct rd_pipe *p, void *item, int status, const struct catfile_info *info,
			  struct strbuf *data)
{
	struct ref_ctx *x = container_of(p, struct ref_ctx, pipe);
	struct branch_item *it = item;
	Gitaly__GitCommit *c;

	if (status != 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "finding refs: reading commit of %.*s: %s", (int)it->len, it->name,
			  status < 0 ? strerror(-status) : "object not found");
		branch_item_free(it);
		return;
	}
	c = gitaly_commit_parse(info->oid, data->buf, data->len);
	if (x->kind == RPC_LOCAL_BRANCHES) {
		Gitaly__Branch *b = xcalloc(1, sizeof(*b));
		gitaly__branch__init(b);
		b->name.data = (uint8_t *)it->name;
		b->name.len = it->len;
		b->target_commit = c;
		push_batch(x, b);
	} else {
		Gitaly__FindAllBranchesResponse__Branch *b = xcalloc(1, sizeof(*b));
		gitaly__find_all_branches_response__branch__init(b);
		b->name.data = (uint8_t *)it->name;
		b->name.len = it->len;
		b->target = c;
		push_batch(x, b);
	}
	free(it);
}

static void listing_end(struct rd_pipe *p, int status, const struct strbuf *err)
{
	struct ref_ctx *x = container_of(p, struct ref_ctx, pipe);
	(void)err;
	if (status != 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "finding refs: listing failed with exit code %d", status);
		return;
	}
	if (x->token && *x->token && !x->token_seen) {
		rd_finish(&x->rd, x->kind == RPC_ALL_TAGS ? GRPC_INVALID_ARGUMENT : GRPC_INTERNAL,
			  "could not find page token");
		return;
	}
	flush_batch(x);
	rd_ok(&x->rd);
}

static const struct rd_pipe_ops branch_ops = {
	.on_line = branch_line,
	.on_object = branch_object,
	.on_end = listing_end,
	.free_item = branch_item_free,
};

static void start_listing(struct rd *rd, const struct rd_pipe_ops *ops)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	struct git_call gc;
	rd_git_call(rd, &gc, "for-each-ref");
	gc.flags = x->flags.v;
	gc.args = x->args.v;
	x->pipe_started = 1;
	rd_pipe_start(&x->pipe, rd, &gc, '\n', ops);
}

static void branches_leased(struct rd *rd)
{
	start_listing(rd, &branch_ops);
}

/* limit 0 reads nothing; a page token then can never be found */
static int empty_page(struct ref_ctx *x, enum grpc_code code)
{
	if (x->limit != 0)
		return 0;
	if (x->token && *x->token)
		rd_finish(&x->rd, code, "could not find page token");
	else
		rd_ok(&x->rd);
	return 1;
}

static void set_pagination(struct ref_ctx *x, const Gitaly__PaginationParameter *p)
{
	x->token = "";
	if (!p)
		return;
	if (p->limit >= 0)
		x->limit = p->limit;
	x->token = p->page_token ? p->page_token : "";
}

static void find_local_branches(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindLocalBranchesRequest *req =
		rpc_unpack(call, &gitaly__find_local_branches_request__descriptor, buf, len);
	struct ref_ctx *x;
	const char *sort;

	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, RPC_LOCAL_BRANCHES);
	if (!x)
		return;
	switch (req->sort_by) {
	case GITALY__FIND_LOCAL_BRANCHES_REQUEST__SORT_BY__UPDATED_ASC: sort = "committerdate"; break;
	case GITALY__FIND_LOCAL_BRANCHES_REQUEST__SORT_BY__UPDATED_DESC: sort = "-committerdate"; break;
	default: sort = "refname"; break;
	}
	set_pagination(x, req->pagination_params);
	if (empty_page(x, GRPC_INTERNAL))
		return;
	strvec_push(&x->flags, "--format=%(refname)%00%(objectname)");
	strvec_pushf(&x->flags, "--sort=%s", sort);
	strvec_push(&x->args, "refs/heads");
	rd_lease(&x->rd, branches_leased);
}

static void fab_default(struct ref_ctx *x, const char *name, size_t len)
{
	strvec_pushf(&x->flags, "--merged=%.*s", (int)len, name);
	/* the default-branch lookup may have leased the process already */
	if (x->rd.cf)
		branches_leased(&x->rd);
	else
		rd_lease(&x->rd, branches_leased);
}

static void find_all_branches(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindAllBranchesRequest *req =
		rpc_unpack(call, &gitaly__find_all_branches_request__descriptor, buf, len);
	struct ref_ctx *x;

	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, RPC_ALL_BRANCHES);
	if (!x)
		return;
	x->token = "";
	strvec_push(&x->flags, "--format=%(refname)%00%(objectname)");
	if (req->merged_only && req->n_merged_branches) {
		for (size_t i = 0; i < req->n_merged_branches; i++) {
			if (check_bytes(x, &req->merged_branches[i], "merged branch") < 0)
				return;
			strvec_pushf(&x->args, "%.*s", (int)req->merged_branches[i].len,
				     (const char *)req->merged_branches[i].data);
		}
	} else {
		strvec_push(&x->args, "refs/heads");
		strvec_push(&x->args, "refs/remotes");
	}
	if (req->merged_only)
		default_branch(x, 0, fab_default);
	else
		rd_lease(&x->rd, branches_leased);
}

/* --- FindBranch --- */

static void fb_commit(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct ref_ctx *x = arg;
	Gitaly__FindBranchResponse resp = GITALY__FIND_BRANCH_RESPONSE__INIT;
	Gitaly__Branch b = GITALY__BRANCH__INIT;
	if (status != 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "reading commit: %s",
			  status < 0 ? strerror(-status) : "object not found");
		return;
	}
	b.target_commit = gitaly_commit_parse(info->oid, data->buf, data->len);
	/* the short name: what followed refs/heads/ */
	b.name.data = (uint8_t *)x->name.buf + 11;
	b.name.len = x->name.len - 11;
	resp.branch = &b;
	rd_send(&x->rd, &resp);
	gitaly_commit_free(b.target_commit);
	rd_ok(&x->rd);
}

static void fb_leased(struct rd *rd)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	struct strbuf rev = STRBUF_INIT;
	strbuf_addf(&rev, "%s^{commit}", x->oid);
	if (catfile_read(rd->cf, rev.buf, rev.len, 64u << 20, fb_commit, x) < 0)
		rd_finish(rd, GRPC_INTERNAL, "reading commit: object reader failed");
	strbuf_release(&rev);
}

static void fb_listed(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	char *f[3];
	size_t n = 0;
	char *p = out->buf, *end;

	if (status != 0) {
		rd_finish(rd, GRPC_INTERNAL, "getting reference: %s", err->buf);
		return;
	}
	if (!out->len) {
		/* no such branch: an empty response (spec §9.10) */
		Gitaly__FindBranchResponse resp = GITALY__FIND_BRANCH_RESPONSE__INIT;
		rd_send(rd, &resp);
		rd_ok(rd);
		return;
	}
	end = memchr(p, '\n', out->len);
	if (!end)
		end = out->buf + out->len;
	while (n < 3) {
		char *nul = memchr(p, '\0', (size_t)(end - p));
		f[n++] = p;
		if (!nul)
			break;
		*nul = '\0';
		p = nul + 1;
	}
	*end = '\0';
	if (n != 3) {
		rd_finish(rd, GRPC_INTERNAL, "unexpected reference format");
		return;
	}
	if (strlen(f[0]) != x->name.len || memcmp(f[0], x->name.buf, x->name.len)) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT,
			  "target reference is ambiguous: reference is ambiguous: conflicts with \"%s\"", f[0]);
		return;
	}
	/* a symbolic ref is read through the name it points at */
	x->oid = xstrdup(*f[2] ? f[2] : f[1]);
	rd_lease(rd, fb_leased);
}

static void find_branch(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindBranchRequest *req = rpc_unpack(call, &gitaly__find_branch_request__descriptor, buf, len);
	static const char *const flags[] = { "--format=%(refname)%00%(objectname)%00%(symref)", "--count=1", NULL };
	struct ref_ctx *x;

	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, RPC_OTHER);
	if (!x)
		return;
	if (!req->name.len) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "Branch name cannot be empty");
		return;
	}
	if (check_bytes(x, &req->name, "branch name") < 0)
		return;
	/* upstream always qualifies: "refs/heads/" + name, even for "refs/heads/x" */
	strbuf_addstr(&x->name, "refs/heads/");
	strbuf_add(&x->name, req->name.data, req->name.len);
	ref_git(x, "for-each-ref", flags, x->name.buf, 1 << 20, fb_listed);
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
		flush_batch(x);
		x->head_in_batch = 0;
	}
	if (rd->call && rd_full(rd))
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
	flush_batch(x);
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
	Gitaly__ListRefsRequest *req = rpc_unpack(call, &gitaly__list_refs_request__descriptor, buf, len);
	static const char *const keys[] = { "refname", "creatordate", "authordate", "committerdate" };
	struct ref_ctx *x;
	unsigned key = 0, dir = 0;

	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, RPC_LIST_REFS);
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
		if (check_bytes(x, &req->pointing_at_oids[i], "oid") < 0)
			return;
		strvec_pushf(&x->flags, "--points-at=%.*s", (int)req->pointing_at_oids[i].len,
			     (const char *)req->pointing_at_oids[i].data);
	}
	for (size_t i = 0; i < req->n_patterns; i++) {
		if (check_bytes(x, &req->patterns[i], "pattern") < 0)
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

static void tag_send(struct ref_ctx *x)
{
	Gitaly__FindTagResponse resp = GITALY__FIND_TAG_RESPONSE__INIT;
	resp.tag = x->tag;
	rd_send(&x->rd, &resp);
	rd_ok(&x->rd);
}

static void tag_reply(struct ref_ctx *x)
{
	gitaly_tag_trim_message(x->tag);
	tag_send(x);
}

static void ft_target(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct ref_ctx *x = arg;
	if (status != 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "getting annotated tag: target: %s",
			  status < 0 ? strerror(-status) : "object not found");
		return;
	}
	/* a tag of a tag is peeled; only a commit at the end becomes the target */
	if (status == 0 && info->type == CATFILE_COMMIT)
		x->tag->target_commit = gitaly_commit_parse(info->oid, data->buf, data->len);
	tag_reply(x);
}

static void ft_object(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct ref_ctx *x = arg;
	struct strbuf rev = STRBUF_INIT;

	if (status != 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "parsing tag: %s", status < 0 ? strerror(-status) : "object not found");
		return;
	}
	if (info->type == CATFILE_COMMIT) {
		/* a lightweight tag */
		x->tag->target_commit = gitaly_commit_parse(info->oid, data->buf, data->len);
		tag_send(x);
		return;
	}
	if (info->type != CATFILE_TAG) {
		rd_finish(&x->rd, GRPC_INTERNAL, "getting annotated tag: expected tag, got %s",
			  catfile_type_name(info->type));
		return;
	}
	gitaly_tag_free(x->tag);
	x->tag = gitaly_tag_parse(info->oid, data->buf, data->len, x->name.buf, x->name.len, &x->tagged);
	if (!strcmp(x->tagged.type, "commit"))
		strbuf_addf(&rev, "%s^{commit}", x->tagged.oid);
	else if (!strcmp(x->tagged.type, "tag"))
		strbuf_addf(&rev, "%s^{}", x->tagged.oid);
	if (!rev.len) {
		tag_reply(x);
	} else if (catfile_read(x->rd.cf, rev.buf, rev.len, 64u << 20, ft_target, x) < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "getting annotated tag: object reader failed");
	}
	strbuf_release(&rev);
}

static void ft_leased(struct rd *rd)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	struct strbuf rev = STRBUF_INIT;
	/* a commit is read through ^{commit} as upstream's GetCommit does */
	if (!strcmp(x->tagged.type, "commit"))
		strbuf_addf(&rev, "%s^{commit}", x->oid);
	else
		strbuf_addstr(&rev, x->oid);
	if (catfile_read(rd->cf, rev.buf, rev.len, 64u << 20, ft_object, x) < 0)
		rd_finish(rd, GRPC_INTERNAL, "parsing tag: object reader failed");
	strbuf_release(&rev);
}

static void ft_listed(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	struct ref_ctx *x = (struct ref_ctx *)rd;
	Gitaly__FindTagRequest *req = rd->req;
	size_t n = strcspn(out->buf, "\n");
	char *sp1, *sp2;

	if (status != 0) {
		rd_finish(rd, GRPC_INTERNAL, "for-each-ref error: %s", err->buf);
		return;
	}
	if (!out->len) {
		Gitaly__FindTagError e = GITALY__FIND_TAG_ERROR__INIT;
		Gitaly__ReferenceNotFoundError nf = GITALY__REFERENCE_NOT_FOUND_ERROR__INIT;
		struct strbuf ref = STRBUF_INIT;
		strbuf_addstr(&ref, "refs/tags/");
		strbuf_add(&ref, req->tag_name.data, req->tag_name.len);
		nf.reference_name.data = (uint8_t *)ref.buf;
		nf.reference_name.len = ref.len;
		e.error_case = GITALY__FIND_TAG_ERROR__ERROR_TAG_NOT_FOUND;
		e.tag_not_found = &nf;
		rd_finish_detail(rd, GRPC_NOT_FOUND, "tag does not exist", "FindTagError", &e.base);
		strbuf_release(&ref);
		return;
	}
	out->buf[n] = '\0';
	sp1 = strchr(out->buf, ' ');
	sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp2) {
		rd_finish(rd, GRPC_INTERNAL, "parsing tag: invalid output from for-each-ref command: %s", out->buf);
		return;
	}
	*sp1 = *sp2 = '\0';
	x->oid = xstrdup(out->buf);
	strbuf_addstr(&x->name, sp2 + 1);
	x->tag = xcalloc(1, sizeof(*x->tag));
	gitaly__tag__init(x->tag);
	x->tag->id = xstrdup(x->oid);
	x->tag->name.len = x->name.len;
	x->tag->name.data = xmemdup(x->name.buf, x->name.len);
	if (!strcmp(sp1 + 1, "tag") || !strcmp(sp1 + 1, "commit")) {
		snprintf(x->tagged.type, sizeof(x->tagged.type), "%s", sp1 + 1);
		rd_lease(rd, ft_leased);
		return;
	}
	/* a tag of a tree or blob: id and name only */
	tag_send(x);
}

static void find_tag(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindTagRequest *req = rpc_unpack(call, &gitaly__find_tag_request__descriptor, buf, len);
	static const char *const flags[] = { "-l", "--format=%(objectname) %(objecttype) %(refname:lstrip=2)", NULL };
	struct ref_ctx *x;

	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, RPC_OTHER);
	if (!x)
		return;
	if (!req->tag_name.len) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "tag name is empty");
		return;
	}
	if (check_bytes(x, &req->tag_name, "tag name") < 0)
		return;
	strvec_pushf(&x->args, "%.*s", (int)req->tag_name.len, (const char *)req->tag_name.data);
	ref_git(x, "tag", flags, x->args.v[0], 1 << 20, ft_listed);
}

/* FindAllTags: each tag line becomes one or two reads, answered in order. */
struct tag_item {
	char *refname;
	size_t len;
	char oid[CATFILE_HEXSZ_MAX + 1];
	int annotated;
	Gitaly__Tag *tag;               /* after the first read of an annotated tag */
};

static void tag_item_free(void *p)
{
	struct tag_item *it = p;
	free(it->refname);
	gitaly_tag_free(it->tag);
	free(it);
}

static int tags_line(struct rd_pipe *p, char *line, size_t len)
{
	struct ref_ctx *x = container_of(p, struct ref_ctx, pipe);
	char *f[3], *q = line, *end = line + len;
	size_t nf = 0;
	struct tag_item *it;
	struct strbuf rev = STRBUF_INIT;
	int rc;

	if (x->count >= x->limit)
		return -1;
	while (nf < 3) {
		char *nul = memchr(q, '\0', (size_t)(end - q));
		f[nf++] = q;
		if (!nul)
			break;
		*nul = '\0';
		q = nul + 1;
	}
	if (nf != 3 || strlen(f[0]) > CATFILE_HEXSZ_MAX) {
		rd_finish(&x->rd, GRPC_INTERNAL, "iterating over tags: unexpected for-each-ref output");
		return -1;
	}
	if (!past_token(x, f[2], (size_t)(end - f[2])))
		return 0;
	x->count++;
	it = xcalloc(1, sizeof(*it));
	it->len = (size_t)(end - f[2]);
	it->refname = xmemdup(f[2], it->len);
	snprintf(it->oid, sizeof(it->oid), "%s", f[0]);
	if (!strcmp(f[1], "tag")) {
		it->annotated = 1;
		strbuf_addf(&rev, "%s^{}", f[0]);
		rc = rd_pipe_read(p, f[0], strlen(f[0]), it, 0);
		if (rc == 0)
			rc = rd_pipe_read(p, rev.buf, rev.len, it, 1);
	} else if (!strcmp(f[1], "commit")) {
		rc = rd_pipe_read(p, f[0], strlen(f[0]), it, 1);
	} else {
		/* trees and blobs: only the id is reported, but the order must hold */
		rc = rd_pipe_info(p, f[0], strlen(f[0]), it, 1);
	}
	strbuf_release(&rev);
	if (rc < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "iterating over tags: object reader failed");
		return -1;
	}
	return 0;
}

static void tags_push(struct ref_ctx *x, struct tag_item *it, Gitaly__Tag *t)
{
	size_t sz;
	/* the name is the ref without refs/tags/ (unless that leaves nothing) */
	if (it->len > 10 && !memcmp(it->refname, "refs/tags/", 10)) {
		free(t->name.data);
		t->name.len = it->len - 10;
		t->name.data = xmemdup(it->refname + 10, t->name.len);
	}
	sz = protobuf_c_message_get_packed_size(&t->base);
	if (x->nbatch && x->bytes + sz >= BATCH_BYTES)
		flush_batch(x);
	ALLOC_GROW(x->batch, x->nbatch + 1, x->alloc);
	x->batch[x->nbatch++] = t;
	x->bytes += sz;
}

static void tags_object(struct rd_pipe *p, void *item, int status, const struct catfile_info *info,
			struct strbuf *data)
{
	struct ref_ctx *x = container_of(p, struct ref_ctx, pipe);
	struct tag_item *it = item;
	Gitaly__Tag *t;

	if (status != 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "iterating over tags: %s",
			  status < 0 ? strerror(-status) : "object not found");
		if (!it->annotated || it->tag)
			tag_item_free(it);
		return;
	}
	if (it->annotated && !it->tag) {
		struct gitaly_tagged tagged;
		if (info->type != CATFILE_TAG) {
			rd_finish(&x->rd, GRPC_INTERNAL, "parsing annotated tag: not a tag");
			return;
		}
		it->tag = gitaly_tag_parse(info->oid, data->buf, data->len, NULL, 0, &tagged);
		gitaly_tag_trim_message(it->tag);
		return; /* the peeled object follows */
	}
	if (it->annotated) {
		t = it->tag;
		it->tag = NULL;
		if (info->type == CATFILE_COMMIT)
			t->target_commit = gitaly_commit_parse(info->oid, data->buf, data->len);
	} else {
		t = xcalloc(1, sizeof(*t));
		gitaly__tag__init(t);
		t->id = xstrdup(info->oid);
		if (info->type == CATFILE_COMMIT)
			t->target_commit = gitaly_commit_parse(info->oid, data->buf, data->len);
	}
	tags_push(x, it, t);
	tag_item_free(it);
}

static const struct rd_pipe_ops tags_ops = {
	.on_line = tags_line,
	.on_object = tags_object,
	.on_end = listing_end,
	.free_item = tag_item_free,
};

static void tags_leased(struct rd *rd)
{
	start_listing(rd, &tags_ops);
}

static void find_all_tags(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindAllTagsRequest *req = rpc_unpack(call, &gitaly__find_all_tags_request__descriptor, buf, len);
	static const char *const keys[] = { "refname", "creatordate", "version:refname" };
	struct ref_ctx *x;

	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, RPC_ALL_TAGS);
	if (!x)
		return;
	strvec_push(&x->flags, "--format=%(objectname)%00%(objecttype)%00%(refname)");
	if (req->sort_by) {
		unsigned key = (unsigned)req->sort_by->key, dir = (unsigned)req->sort_by->direction;
		if (dir > 1) {
			rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "unsupported sorting direction: %u", dir);
			return;
		}
		if (key >= ARRAY_SIZE(keys)) {
			rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "unsupported sorting key: %u", key);
			return;
		}
		strvec_pushf(&x->flags, "--sort=%s%s", dir ? "-" : "", keys[key]);
	}
	strvec_push(&x->args, "refs/tags/");
	set_pagination(x, req->pagination_params);
	if (empty_page(x, GRPC_INVALID_ARGUMENT))
		return;
	rd_lease(&x->rd, tags_leased);
}

void gitaly_register_ref(struct gitaly *g, struct grpc_server *s)
{
	grpc_server_add_unary(s, "/gitaly.RefService/FindDefaultBranchName", find_default_branch_name, g);
	grpc_server_add_unary(s, "/gitaly.RefService/RefExists", ref_exists, g);
	grpc_server_add_unary(s, "/gitaly.RefService/FindLocalBranches", find_local_branches, g);
	grpc_server_add_unary(s, "/gitaly.RefService/FindAllBranches", find_all_branches, g);
	grpc_server_add_unary(s, "/gitaly.RefService/FindBranch", find_branch, g);
	grpc_server_add_unary(s, "/gitaly.RefService/ListRefs", list_refs, g);
	grpc_server_add_unary(s, "/gitaly.RefService/FindTag", find_tag, g);
	grpc_server_add_unary(s, "/gitaly.RefService/FindAllTags", find_all_tags, g);
}

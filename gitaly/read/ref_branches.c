/* RefService branch reads: FindLocalBranches, FindAllBranches, FindBranch. */
#include "read/ref.h"
#include "git/refs.h"
#include "base/util.h"
#include "errors.pb-c.h"
#include "ref.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
	if (!ref_past_token(x, line, (size_t)(nul - line)))
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
	if (x->kind == REF_KIND_LOCAL_BRANCHES) {
		Gitaly__Branch *b = xcalloc(1, sizeof(*b));
		gitaly__branch__init(b);
		b->name.data = (uint8_t *)it->name;
		b->name.len = it->len;
		b->target_commit = c;
		ref_push_batch(x, b);
	} else {
		Gitaly__FindAllBranchesResponse__Branch *b = xcalloc(1, sizeof(*b));
		gitaly__find_all_branches_response__branch__init(b);
		b->name.data = (uint8_t *)it->name;
		b->name.len = it->len;
		b->target = c;
		ref_push_batch(x, b);
	}
	free(it);
}

static const struct rd_pipe_ops branch_ops = {
	.on_line = branch_line,
	.on_object = branch_object,
	.on_end = ref_listing_end,
	.free_item = branch_item_free,
};

static void branches_leased(struct rd *rd)
{
	ref_start_listing(rd, &branch_ops);
}

void ref_find_local_branches(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindLocalBranchesRequest *req =
		msg_unpack(call, &gitaly__find_local_branches_request__descriptor, buf, len);
	struct ref_ctx *x;
	const char *sort;

	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, REF_KIND_LOCAL_BRANCHES);
	if (!x)
		return;
	switch (req->sort_by) {
	case GITALY__FIND_LOCAL_BRANCHES_REQUEST__SORT_BY__UPDATED_ASC: sort = "committerdate"; break;
	case GITALY__FIND_LOCAL_BRANCHES_REQUEST__SORT_BY__UPDATED_DESC: sort = "-committerdate"; break;
	default: sort = "refname"; break;
	}
	ref_set_pagination(x, req->pagination_params);
	if (ref_empty_page(x, GRPC_INTERNAL))
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

void ref_find_all_branches(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindAllBranchesRequest *req =
		msg_unpack(call, &gitaly__find_all_branches_request__descriptor, buf, len);
	struct ref_ctx *x;

	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, REF_KIND_ALL_BRANCHES);
	if (!x)
		return;
	x->token = "";
	strvec_push(&x->flags, "--format=%(refname)%00%(objectname)");
	if (req->merged_only && req->n_merged_branches) {
		for (size_t i = 0; i < req->n_merged_branches; i++) {
			if (ref_check_bytes(x, &req->merged_branches[i], "merged branch") < 0)
				return;
			strvec_pushf(&x->args, "%.*s", (int)req->merged_branches[i].len,
				     (const char *)req->merged_branches[i].data);
		}
	} else {
		strvec_push(&x->args, "refs/heads");
		strvec_push(&x->args, "refs/remotes");
	}
	if (req->merged_only)
		ref_default_branch(x, 0, fab_default);
	else
		rd_lease(&x->rd, branches_leased);
}

/* --- FindBranch --- */

static void ref_find_branch_slow(struct ref_ctx *x);

static void fb_commit(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct ref_ctx *x = arg;
	Gitaly__FindBranchResponse resp = GITALY__FIND_BRANCH_RESPONSE__INIT;
	Gitaly__Branch b = GITALY__BRANCH__INIT;
	if (status != 0 && x->fast) {
		/* from the ref files: a broken ref is for for-each-ref to judge */
		ref_find_branch_slow(x);
		return;
	}
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
		/* no such branch: an empty response (docs/technical/gitaly-node.md, "Not found") */
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
	if (rd->cf)
		fb_leased(rd);   /* still leased from the ref-file attempt */
	else
		rd_lease(rd, fb_leased);
}

void ref_find_branch(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindBranchRequest *req = msg_unpack(call, &gitaly__find_branch_request__descriptor, buf, len);
	struct git_ref ref;
	int r, children;
	struct ref_ctx *x;

	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, REF_KIND_OTHER);
	if (!x)
		return;
	if (!req->name.len) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "Branch name cannot be empty");
		return;
	}
	if (ref_check_bytes(x, &req->name, "branch name") < 0)
		return;
	/* upstream always qualifies: "refs/heads/" + name, even for "refs/heads/x" */
	strbuf_addstr(&x->name, "refs/heads/");
	strbuf_add(&x->name, req->name.data, req->name.len);
	/*
	 * From the ref files when the answer is plain (docs/technical/ref-files.md):
	 * a direct ref, or none and nothing below the name that for-each-ref's
	 * prefix match would find. Anything else goes to git.
	 */
	r = git_refs_read(x->rd.path.buf, x->name.buf, x->name.len, &ref, &children);
	if (r == GIT_REFS_MISSING && !children) {
		Gitaly__FindBranchResponse resp = GITALY__FIND_BRANCH_RESPONSE__INIT;
		rd_send(&x->rd, &resp);
		rd_ok(&x->rd);
		return;
	}
	if (r == GIT_REFS_FOUND && ref.oid[0]) {
		x->fast = 1;
		x->oid = xstrdup(ref.oid);
		rd_lease(&x->rd, fb_leased);
		return;
	}
	ref_find_branch_slow(x);
}

static void ref_find_branch_slow(struct ref_ctx *x)
{
	static const char *const flags[] = { "--format=%(refname)%00%(objectname)%00%(symref)", "--count=1", NULL };
	x->fast = 0;
	free(x->oid);
	x->oid = NULL;
	ref_git(x, "for-each-ref", flags, x->name.buf, 1 << 20, fb_listed);
}


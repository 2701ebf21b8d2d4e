/* ConflictsService/ResolveConflicts (docs/technical/operations-write.md, "ResolveConflicts"). */
#include "operations/conflicts.h"
#include "operations/conflict_resolve.h"
#include "operations/index_tree.h"
#include "core/vote.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

#define MERGE_TREE_OUT_CAP (16 * 1024 * 1024)
#define MAX_FILES_JSON (64 * 1024 * 1024)

enum rc_step { R_TARGET, R_MERGE, R_ENTRY, R_CONFLICTED, R_OURS, R_BLOB, R_TREE, R_COMMIT };

struct resolve {
	struct op op;
	enum rc_step step;
	Gitaly__ResolveConflictsRequest *first;
	Gitaly__ResolveConflictsRequestHeader *h;
	int done_reading;
	struct strbuf json;
	struct conflict_resolutions res;
	struct strvec conflicted;
	unsigned char *checked;
	size_t next;                      /* the resolution being applied is next - 1 */
	struct strbuf mode, conflicted_blob, resolved, tree, commit, ref;
	struct index_tree it;
	struct op_signature sig;
	int have_sig;
};

static void rc_release(struct op *op)
{
	struct resolve *r = container_of(op, struct resolve, op);
	msg_free(r->first);
	strbuf_release(&r->json);
	conflict_resolutions_release(&r->res);
	strvec_clear(&r->conflicted);
	free(r->checked);
	strbuf_release(&r->mode);
	strbuf_release(&r->conflicted_blob);
	strbuf_release(&r->resolved);
	strbuf_release(&r->tree);
	strbuf_release(&r->commit);
	strbuf_release(&r->ref);
	index_tree_release(&r->it);
	if (r->have_sig)
		op_signature_release(&r->sig);
	free(r);
}

/* Resolution errors GitLab shows to the user are a successful answer, as upstream sends them. */
static void rc_fail(struct resolve *r, enum grpc_code code, const char *msg)
{
	static const char *const shown[] = { "Missing resolution for section ID:", "Resolved content has no changes for file",
					      "Missing resolutions for the following files:" };
	for (size_t i = 0; i < ARRAY_SIZE(shown); i++) {
		if (!strncmp(msg, shown[i], strlen(shown[i]))) {
			Gitaly__ResolveConflictsResponse resp = GITALY__RESOLVE_CONFLICTS_RESPONSE__INIT;
			resp.resolution_error = (char *)msg;
			msg_reply(r->op.base.call, &resp);
			return;
		}
	}
	op_fail(&r->op, code, "%s", msg);
}

static void rc_step(struct op *op, int status, struct strbuf *out, struct strbuf *err);

static void rc_git(struct resolve *r, enum rc_step step, const char *subcmd, const char *const *flags,
		   const char *const *args, const char *const *paths, const char *const *env, const char *in,
		   size_t inlen, size_t cap)
{
	struct git_call gc;
	r->step = step;
	op_git_call(&r->op, &gc, subcmd);
	gc.flags = flags;
	gc.args = args;
	gc.paths = paths;
	gc.env = env;
	op_git(&r->op, &gc, in, inlen, cap, rc_step);
}

static void read_object(struct resolve *r, enum rc_step step, const char *rev)
{
	r->step = step;
	op_read_object(&r->op, rev, rc_step);
}

static const struct conflict_resolution *current(struct resolve *r)
{
	return &r->res.v[r->next - 1];
}

static void updated(struct op *op, const struct op_update_result *u)
{
	if (u->fail == UPD_OK) {
		Gitaly__ResolveConflictsResponse resp = GITALY__RESOLVE_CONFLICTS_RESPONSE__INIT;
		msg_reply(op->base.call, &resp);
		return;
	}
	op_fail(op, u->fail == UPD_OTHER && u->code && u->code != GRPC_PERMISSION_DENIED ? u->code : GRPC_INTERNAL,
		"%s", u->msg.buf);
}

static void write_commit(struct resolve *r)
{
	struct strbuf date = STRBUF_INIT;
	struct strvec env = STRVEC_INIT;
	const char *flags[] = { "-p", r->h->our_commit_oid, "-p", r->h->their_commit_oid, "-F", "-", NULL };
	const char *args[] = { r->tree.buf, NULL };
	op_signature_date(&r->sig, &date);
	strvec_pushf(&env, "GIT_AUTHOR_NAME=%s", r->sig.name.buf);
	strvec_pushf(&env, "GIT_AUTHOR_EMAIL=%s", r->sig.email.buf);
	strvec_pushf(&env, "GIT_AUTHOR_DATE=%s", date.buf);
	strvec_pushf(&env, "GIT_COMMITTER_NAME=%s", r->sig.name.buf);
	strvec_pushf(&env, "GIT_COMMITTER_EMAIL=%s", r->sig.email.buf);
	strvec_pushf(&env, "GIT_COMMITTER_DATE=%s", date.buf);
	rc_git(r, R_COMMIT, "commit-tree", flags, args, NULL, (const char *const *)env.v,
	       (const char *)r->h->commit_message.data, r->h->commit_message.len, 4096);
	strbuf_release(&date);
	strvec_clear(&env);
}

/* The next resolution, or the tree once all are applied. */
static void next_resolution(struct resolve *r)
{
	static const char *const flags[] = { "-z", "--full-tree", NULL };
	static const char *const env[] = { "GIT_LITERAL_PATHSPECS=1", NULL };
	const struct conflict_resolution *c;
	const char *args[] = { r->tree.buf, NULL };
	const char *paths[] = { NULL, NULL };
	size_t i;
	if (r->next == r->res.nr) {
		for (i = 0; i < r->conflicted.nr; i++) {
			if (!r->checked[i]) {
				struct strbuf m = STRBUF_INIT;
				strbuf_addf(&m, "Missing resolutions for the following files: %s", r->conflicted.v[i]);
				rc_fail(r, GRPC_INTERNAL, m.buf);
				strbuf_release(&m);
				return;
			}
		}
		strbuf_addstr(&r->it.base, r->tree.buf);
		r->step = R_TREE;
		index_tree_run(&r->op, &r->it, rc_step);
		return;
	}
	c = &r->res.v[r->next++];
	for (i = 0; i < r->conflicted.nr; i++)
		if (!strcmp(r->conflicted.v[i], c->old_path))
			break;
	if (i == r->conflicted.nr) {
		/* what the Ruby implementation answered for a file without conflicts */
		rc_fail(r, GRPC_INTERNAL, "NoMethodError: undefined method `resolve_lines' for nil:NilClass");
		return;
	}
	r->checked[i] = 1;
	paths[0] = c->old_path;
	rc_git(r, R_ENTRY, "ls-tree", flags, args, paths, env, NULL, 0, 64 * 1024);
}

/* ls-tree -z of one path in the merged tree: "<mode> <type> <oid>\t<path>\0" */
static void entry_listed(struct resolve *r, struct strbuf *out)
{
	const struct conflict_resolution *c = current(r);
	const char *tab = memchr(out->buf, '\t', out->len);
	const char *sp1 = memchr(out->buf, ' ', out->len);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', out->len - (size_t)(sp1 + 1 - out->buf)) : NULL;
	struct strbuf rev = STRBUF_INIT;
	if (!tab || !sp2 || sp2 > tab || strcmp(tab + 1, c->old_path)) {
		rc_fail(r, GRPC_INTERNAL, "path not found in merged-tree: entry not found");
		return;
	}
	if (sp2 - sp1 - 1 != 4 || memcmp(sp1 + 1, "blob", 4)) {
		rc_fail(r, GRPC_INTERNAL, "entry should be of type blob");
		return;
	}
	strbuf_reset(&r->mode);
	strbuf_add(&r->mode, out->buf, (size_t)(sp1 - out->buf));
	strbuf_add(&rev, sp2 + 1, (size_t)(tab - sp2 - 1));
	read_object(r, R_CONFLICTED, rev.buf);
	strbuf_release(&rev);
}

static void conflicted_read(struct resolve *r, struct strbuf *out)
{
	const struct conflict_resolution *c = current(r);
	const char *oid, *type, *data;
	size_t oidlen, typelen, len;
	struct strbuf rev = STRBUF_INIT;
	if (op_parse_batch(out, &oid, &oidlen, &type, &typelen, &data, &len) < 0) {
		rc_fail(r, GRPC_INTERNAL, "retrieving object: object not found");
		return;
	}
	strbuf_reset(&r->conflicted_blob);
	strbuf_add(&r->conflicted_blob, data, len);
	if (c->content_len) {
		/* the markers as GitLab knows them: labelled with the paths */
		struct strbuf shown = STRBUF_INIT;
		int same;
		strbuf_add(&shown, data, len);
		conflicts_replace_all(&shown, r->h->our_commit_oid, c->old_path);
		conflicts_replace_all(&shown, r->h->their_commit_oid, c->new_path);
		same = shown.len == c->content_len && !memcmp(shown.buf, c->content, shown.len);
		strbuf_release(&shown);
		if (same) {
			struct strbuf m = STRBUF_INIT;
			strbuf_addf(&m, "Resolved content has no changes for file %s", c->old_path);
			rc_fail(r, GRPC_INVALID_ARGUMENT, m.buf);
			strbuf_release(&m);
			return;
		}
	}
	strbuf_addf(&rev, "%s:%s", r->h->our_commit_oid, c->old_path);
	read_object(r, R_OURS, rev.buf);
	strbuf_release(&rev);
}

static void ours_read(struct resolve *r, struct strbuf *out)
{
	static const char *const flags[] = { "-w", "--stdin", NULL };
	const struct conflict_resolution *c = current(r);
	const char *oid, *type, *data;
	size_t oidlen, typelen, len;
	struct strbuf e = STRBUF_INIT;
	uint8_t h[20];
	char hex[41];
	int newline;
	if (op_parse_batch(out, &oid, &oidlen, &type, &typelen, &data, &len) < 0) {
		rc_fail(r, GRPC_INTERNAL, "retrieving object: object not found");
		return;
	}
	/* git drops the final newline of a resolved section; a file that had one keeps it */
	newline = len > 0 && data[len - 1] == '\n';
	gitaly_sha1(c->old_path, strlen(c->old_path), h);
	for (size_t i = 0; i < 20; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	if (conflict_resolve(r->conflicted_blob.buf, r->conflicted_blob.len, r->h->our_commit_oid,
			     r->h->their_commit_oid, c->old_path, hex, c, newline, &r->resolved, &e) < 0) {
		rc_fail(r, GRPC_INTERNAL, e.buf);
		strbuf_release(&e);
		return;
	}
	strbuf_release(&e);
	rc_git(r, R_BLOB, "hash-object", flags, NULL, NULL, NULL, r->resolved.buf, r->resolved.len, 4096);
}

static void rc_step(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct resolve *r = container_of(op, struct resolve, op);
	switch (r->step) {
	case R_TARGET: {
		static const char *const flags[] = { "-z", "--write-tree", "--name-only", "--allow-unrelated-histories",
						     NULL };
		const char *args[] = { r->h->our_commit_oid, r->h->their_commit_oid, NULL };
		struct strbuf e = STRBUF_INIT;
		if (status != 0) {
			rc_fail(r, GRPC_INTERNAL, "reference not found");
			return;
		}
		if (hooks_validate_hex(r->h->our_commit_oid, op->hexlen, &e) < 0 ||
		    hooks_validate_hex(r->h->their_commit_oid, op->hexlen, &e) < 0) {
			strbuf_release(&e);
			rc_fail(r, GRPC_INTERNAL, "Rugged::InvalidError: unable to parse OID - contains invalid characters");
			return;
		}
		strbuf_release(&e);
		rc_git(r, R_MERGE, "merge-tree", flags, args, NULL, NULL, NULL, 0, MERGE_TREE_OUT_CAP);
		return;
	}
	case R_MERGE: {
		const char *nul = memchr(out->buf, '\0', out->len);
		size_t treelen = nul ? (size_t)(nul - out->buf) : 0;
		if ((status != 0 && status != 1) || treelen != op->hexlen) {
			op_chomp(err);
			rc_fail(r, GRPC_INTERNAL, err->len ? err->buf : "merge-tree failed");
			return;
		}
		strbuf_add(&r->tree, out->buf, treelen);
		if (status == 0) {
			write_commit(r);
			return;
		}
		{
			const char *s = nul + 1, *end = out->buf + out->len;
			while (s < end && *s && (nul = memchr(s, '\0', (size_t)(end - s)))) {
				strvec_push(&r->conflicted, s);
				s = nul + 1;
			}
		}
		r->checked = xcalloc(r->conflicted.nr + 1, 1);
		next_resolution(r);
		return;
	}
	case R_ENTRY:
		if (status != 0) {
			op_chomp(err);
			rc_fail(r, GRPC_INTERNAL, "getting tree: ls-tree failed");
			return;
		}
		entry_listed(r, out);
		return;
	case R_CONFLICTED:
		conflicted_read(r, out);
		return;
	case R_OURS:
		ours_read(r, out);
		return;
	case R_BLOB:
		if (status != 0) {
			rc_fail(r, GRPC_INTERNAL, "writing blob: hash-object failed");
			return;
		}
		op_chomp(out);
		index_tree_set(&r->it, r->mode.buf, out->buf, current(r)->old_path, strlen(current(r)->old_path));
		next_resolution(r);
		return;
	case R_TREE:
		if (index_tree_step(op, &r->it, status, out, err) == 1) {
			strbuf_reset(&r->tree);
			strbuf_add(&r->tree, r->it.tree.buf, r->it.tree.len);
			write_commit(r);
		}
		return;
	case R_COMMIT:
		if (status != 0) {
			op_chomp(err);
			op_fail(op, GRPC_INTERNAL, "writing commit: %s", err->buf);
			return;
		}
		op_chomp(out);
		strbuf_add(&r->commit, out->buf, out->len);
		op_update_ref(op, r->h->user, r->ref.buf, r->commit.buf, r->h->our_commit_oid, updated);
		return;
	}
}

/* Through praefect the repository is rewritten to its replica and target_repository is not. */
static int same_repo(const Gitaly__Repository *a, const Gitaly__Repository *b)
{
	if (a->gl_repository && *a->gl_repository && b->gl_repository && !strcmp(a->gl_repository, b->gl_repository))
		return 1;
	return !strcmp(a->storage_name ? a->storage_name : "", b->storage_name ? b->storage_name : "") &&
	       !strcmp(a->relative_path ? a->relative_path : "", b->relative_path ? b->relative_path : "");
}

static void rc_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct resolve *r = container_of(op, struct resolve, op);
	struct strbuf rev = STRBUF_INIT;
	const char *args[] = { NULL, NULL };
	static const char *const flags[] = { "--verify", NULL };
	strbuf_addstr(&rev, "refs/heads/");
	strbuf_add(&rev, r->h->target_branch.data, r->h->target_branch.len);
	strbuf_addstr(&rev, "^{commit}");
	if (memchr(rev.buf, '\0', rev.len) || strchr(rev.buf, '\n')) {
		strbuf_release(&rev);
		rc_fail(r, GRPC_INTERNAL, "reference not found");
		return;
	}
	args[0] = rev.buf;
	rc_git(r, R_TARGET, "rev-parse", flags, args, NULL, NULL, NULL, 0, 4096);
	strbuf_release(&rev);
}

static void rc_half_close(struct grpc_call *call)
{
	struct resolve *r = grpc_call_user(call);
	struct op *op = &r->op;
	struct strbuf e = STRBUF_INIT;
	enum conflict_parse_err perr;
	if (r->done_reading)
		return;
	r->done_reading = 1;
	if (!r->first) {
		op_fail(op, GRPC_INTERNAL, "EOF");
		return;
	}
	r->have_sig = 1;   /* op_signature() sets its buffers up even when it fails */
	if (op_signature(r->h->user, r->h->timestamp, &r->sig, &e) < 0) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "%s", e.buf);
		strbuf_release(&e);
		return;
	}
	perr = conflict_resolutions_parse(r->json.buf, r->json.len, &r->res, &e);
	if (perr != CR_OK) {
		op_fail(op, perr == CR_NO_RESOLUTION ? GRPC_INVALID_ARGUMENT : GRPC_INTERNAL, "%s", e.buf);
		strbuf_release(&e);
		return;
	}
	strbuf_release(&e);
	if (!same_repo(r->h->target_repository, r->h->repository)) {
		/* upstream fetches the target branch's commit from there; we do not reach other repositories */
		op_fail(op, GRPC_UNIMPLEMENTED, "target repository other than the repository is not supported");
		return;
	}
	if (memchr(r->h->source_branch.data, '\0', r->h->source_branch.len)) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "invalid source branch");
		return;
	}
	strbuf_addstr(&r->ref, "refs/heads/");
	strbuf_add(&r->ref, r->h->source_branch.data, r->h->source_branch.len);
	if (op_quarantine(op) < 0)
		return;
	op_detect_hash(op, rc_hash_known);
}

static void rc_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct resolve *r = grpc_call_user(call);
	struct op *op = &r->op;
	Gitaly__ResolveConflictsRequest *req;
	Gitaly__ResolveConflictsRequestHeader *h;
	if (r->done_reading)
		return;
	req = msg_unpack(call, &gitaly__resolve_conflicts_request__descriptor, msg, len);
	if (!req) {
		r->done_reading = 1;
		return;
	}
	if (r->first) {
		if (r->json.len + req->files_json.len > MAX_FILES_JSON) {
			op_fail(op, GRPC_RESOURCE_EXHAUSTED, "files_json exceeds %d bytes", MAX_FILES_JSON);
			r->done_reading = 1;
		} else {
			strbuf_add(&r->json, req->files_json.data, req->files_json.len);
		}
		msg_free(req);
		return;
	}
	r->first = req;
	r->done_reading = 1;
	h = r->h = req->resolve_conflicts_request_payload_case ==
				   GITALY__RESOLVE_CONFLICTS_REQUEST__RESOLVE_CONFLICTS_REQUEST_PAYLOAD_HEADER
			   ? req->header : NULL;
	if (!h) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty ResolveConflictsRequestHeader");
		return;
	}
	if (!*h->our_commit_oid) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty OurCommitOid");
		return;
	}
	if (op_locate(op, h->repository) != GRPC_OK)
		return;
	if (!h->target_repository) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty TargetRepository");
		return;
	}
	if (!*h->their_commit_oid) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty TheirCommitOid");
		return;
	}
	if (!h->source_branch.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty SourceBranch");
		return;
	}
	if (!h->target_branch.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty TargetBranch");
		return;
	}
	if (!h->commit_message.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty CommitMessage");
		return;
	}
	if (!h->user) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty User");
		return;
	}
	r->done_reading = 0;
}

static void rc_close(struct grpc_call *call, enum grpc_code code)
{
	struct resolve *r = grpc_call_user(call);
	(void)code;
	op_closed(&r->op);
}

static const struct grpc_call_ops rc_ops = {
	.on_message = rc_message,
	.on_half_close = rc_half_close,
	.on_close = rc_close,
};

void conflicts_resolve_start(struct grpc_call *call, void *data)
{
	struct resolve *r = xcalloc(1, sizeof(*r));
	strbuf_init(&r->json, 0);
	strvec_init(&r->conflicted);
	strbuf_init(&r->mode, 0);
	strbuf_init(&r->conflicted_blob, 0);
	strbuf_init(&r->resolved, 0);
	strbuf_init(&r->tree, 0);
	strbuf_init(&r->commit, 0);
	strbuf_init(&r->ref, 0);
	index_tree_init(&r->it);
	op_init(&r->op, data, call, rc_release, 0);
	grpc_call_set_ops(call, &rc_ops, r);
}

/* OperationService/UserUpdateSubmodule (docs/technical/operations-write.md, "UserUpdateSubmodule"). */
#include "operations/index_tree.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

#define INVALID_SUBMODULE_PATH "Invalid submodule path"

enum sub_step { S_BRANCHES, S_OLD, S_HEAD, S_ENTRY, S_TREE, S_COMMIT };

struct submodule {
	struct op op;
	enum sub_step step;
	Gitaly__UserUpdateSubmoduleRequest *req;
	struct strbuf ref, path, old, head, commit;
	struct index_tree it;
	struct op_signature sig;
	int have_sig;
};

static void sub_release(struct op *op)
{
	struct submodule *s = container_of(op, struct submodule, op);
	msg_free(s->req);
	strbuf_release(&s->ref);
	strbuf_release(&s->path);
	strbuf_release(&s->old);
	strbuf_release(&s->head);
	strbuf_release(&s->commit);
	index_tree_release(&s->it);
	if (s->have_sig)
		op_signature_release(&s->sig);
	free(s);
}

static void sub_step(struct op *op, int status, struct strbuf *out, struct strbuf *err);
static const char *clean_path(const ProtobufCBinaryData *b, struct strbuf *out);

static void sub_git(struct submodule *s, enum sub_step step, const char *subcmd, const char *const *flags,
		    const char *const *args, const char *const *env, const char *in, size_t inlen, size_t cap)
{
	struct git_call gc;
	s->step = step;
	op_git_call(&s->op, &gc, subcmd);
	gc.flags = flags;
	gc.args = args;
	gc.env = env;
	op_git(&s->op, &gc, in, inlen, cap, sub_step);
}

static void rev_parse(struct submodule *s, enum sub_step step, const char *rev)
{
	static const char *const flags[] = { "--verify", NULL };
	const char *args[] = { rev, NULL };
	sub_git(s, step, "rev-parse", flags, args, NULL, NULL, 0, 4096);
}

/* A successful answer that carries only a commit_error or pre_receive_error. */
static void reply_error(struct submodule *s, const char *commit_error, const char *pre_receive_error)
{
	Gitaly__UserUpdateSubmoduleResponse resp = GITALY__USER_UPDATE_SUBMODULE_RESPONSE__INIT;
	resp.commit_error = (char *)(commit_error ? commit_error : "");
	resp.pre_receive_error = (char *)(pre_receive_error ? pre_receive_error : "");
	msg_reply(s->op.base.call, &resp);
}

static void updated(struct op *op, const struct op_update_result *r)
{
	struct submodule *s = container_of(op, struct submodule, op);
	if (r->fail == UPD_OK) {
		Gitaly__UserUpdateSubmoduleResponse resp = GITALY__USER_UPDATE_SUBMODULE_RESPONSE__INIT;
		Gitaly__OperationBranchUpdate bu = GITALY__OPERATION_BRANCH_UPDATE__INIT;
		bu.commit_id = s->commit.buf;
		resp.branch_update = &bu;
		msg_reply(op->base.call, &resp);
	} else if (r->fail == UPD_CUSTOM_HOOK) {
		reply_error(s, NULL, r->hook_error.buf);
	} else if (r->fail == UPD_REF) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "Could not update %s. Please refresh and try again.", s->ref.buf);
		reply_error(s, m.buf, NULL);
		strbuf_release(&m);
	} else {
		op_fail(op, GRPC_INTERNAL, "updating ref with hooks: %s", r->msg.buf);
	}
}

static void write_commit(struct submodule *s)
{
	struct strbuf date = STRBUF_INIT;
	struct strvec env = STRVEC_INIT;
	const char *flags[] = { "-p", s->head.buf, "-F", "-", NULL };
	const char *args[] = { s->it.tree.buf, NULL };
	op_signature_date(&s->sig, &date);
	strvec_pushf(&env, "GIT_AUTHOR_NAME=%s", s->sig.name.buf);
	strvec_pushf(&env, "GIT_AUTHOR_EMAIL=%s", s->sig.email.buf);
	strvec_pushf(&env, "GIT_AUTHOR_DATE=%s", date.buf);
	strvec_pushf(&env, "GIT_COMMITTER_NAME=%s", s->sig.name.buf);
	strvec_pushf(&env, "GIT_COMMITTER_EMAIL=%s", s->sig.email.buf);
	strvec_pushf(&env, "GIT_COMMITTER_DATE=%s", date.buf);
	sub_git(s, S_COMMIT, "commit-tree", flags, args, (const char *const *)env.v,
		(const char *)s->req->commit_message.data, s->req->commit_message.len, 4096);
	strbuf_release(&date);
	strvec_clear(&env);
}

/* ls-tree -z of the one path: "<mode> <type> <oid>\t<path>\0", or nothing */
static void entry_listed(struct submodule *s, struct strbuf *out)
{
	const char *tab = memchr(out->buf, '\t', out->len);
	const char *sp1 = memchr(out->buf, ' ', out->len);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', out->len - (size_t)(sp1 + 1 - out->buf)) : NULL;
	size_t pathlen = tab ? strnlen(tab + 1, out->len - (size_t)(tab + 1 - out->buf)) : 0;
	if (!tab || !sp2 || sp2 > tab || pathlen != s->path.len || memcmp(tab + 1, s->path.buf, pathlen) ||
	    (size_t)(sp2 - sp1 - 1) != 6 || memcmp(sp1 + 1, "commit", 6)) {
		reply_error(s, INVALID_SUBMODULE_PATH, NULL);
		return;
	}
	if ((size_t)(tab - sp2 - 1) == s->op.hexlen && !memcmp(sp2 + 1, s->req->commit_sha, s->op.hexlen)) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "The submodule %s is already at %s", s->path.buf, s->req->commit_sha);
		reply_error(s, m.buf, NULL);
		strbuf_release(&m);
		return;
	}
	strbuf_addstr(&s->it.base, s->head.buf);
	index_tree_set(&s->it, "160000", s->req->commit_sha, s->path.buf, s->path.len);
	s->step = S_TREE;
	index_tree_run(&s->op, &s->it, sub_step);
}

static void sub_step(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct submodule *s = container_of(op, struct submodule, op);
	switch (s->step) {
	case S_BRANCHES: {
		const char *expected = s->req->expected_old_oid;
		struct strbuf rev = STRBUF_INIT;
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "get branches: %s", err->buf);
			return;
		}
		if (!out->len) {
			reply_error(s, "Repository is empty", NULL);
			return;
		}
		if (expected && *expected) {
			if (op_check_expected_old(op, expected) < 0)
				return;
			strbuf_addf(&rev, "%s^{object}", expected);
		} else {
			strbuf_addstr(&rev, s->ref.buf);
		}
		rev_parse(s, S_OLD, rev.buf);
		strbuf_release(&rev);
		return;
	}
	case S_OLD:
		if (status != 0) {
			if (s->req->expected_old_oid && *s->req->expected_old_oid)
				op_fail(op, GRPC_INVALID_ARGUMENT, "cannot resolve expected old object ID: reference not found");
			else
				op_fail(op, GRPC_INVALID_ARGUMENT, "Cannot find branch");
			return;
		}
		op_chomp(out);
		strbuf_add(&s->old, out->buf, out->len);
		{
			/* the parent is the branch as it is now, whatever expected_old_oid says (as upstream) */
			struct strbuf rev = STRBUF_INIT;
			strbuf_addf(&rev, "%s^{commit}", s->ref.buf);
			rev_parse(s, S_HEAD, rev.buf);
			strbuf_release(&rev);
		}
		return;
	case S_HEAD: {
		static const char *const flags[] = { "-z", "--full-tree", NULL };
		static const char *const env[] = { "GIT_LITERAL_PATHSPECS=1", NULL };
		const char *args[] = { NULL, NULL };
		struct git_call gc;
		const char *why;
		if (status != 0) {
			reply_error(s, INVALID_SUBMODULE_PATH, NULL);
			return;
		}
		op_chomp(out);
		strbuf_add(&s->head, out->buf, out->len);
		why = clean_path(&s->req->submodule, &s->path);
		if (why && !strcmp(why, "entry not found")) {
			reply_error(s, INVALID_SUBMODULE_PATH, NULL);
			return;
		}
		if (why) {
			op_fail(op, GRPC_INTERNAL, "submodule subcommand: modifying tree: %s", why);
			return;
		}
		args[0] = s->head.buf;
		s->step = S_ENTRY;
		op_git_call(op, &gc, "ls-tree");
		gc.flags = flags;
		gc.args = args;
		{
			const char *paths[] = { s->path.buf, NULL };
			gc.paths = paths;
			gc.env = env;
			op_git(op, &gc, NULL, 0, 64 * 1024, sub_step);
		}
		return;
	}
	case S_ENTRY:
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "submodule subcommand: error reading tree: %s", err->buf);
			return;
		}
		entry_listed(s, out);
		return;
	case S_TREE:
		if (index_tree_step(op, &s->it, status, out, err) == 1)
			write_commit(s);
		return;
	case S_COMMIT:
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "submodule subcommand: creating commit: %s", err->buf);
			return;
		}
		op_chomp(out);
		strbuf_add(&s->commit, out->buf, out->len);
		op_update_ref(op, s->req->user, s->ref.buf, s->commit.buf, s->old.buf, updated);
		return;
	}
}

/*
 * The path as upstream's tree edit reads it: cleaned lexically as Go's
 * filepath.Clean (empty and "." components dropped, ".." taking back the one
 * before it), then refused when absolute, starting with "..", empty or under
 * ".git". NULL, or the reason.
 */
static const char *clean_path(const ProtobufCBinaryData *b, struct strbuf *out)
{
	const char *p = (const char *)b->data, *end = p + b->len;
	int rooted = b->len && p[0] == '/';
	struct strvec parts = STRVEC_INIT;
	const char *why = NULL;
	strbuf_reset(out);
	if (memchr(p, '\0', b->len))
		return "entry not found";   /* no tree entry has a NUL in its name */
	while (p < end) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		size_t n = slash ? (size_t)(slash - p) : (size_t)(end - p);
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (parts.nr && strcmp(parts.v[parts.nr - 1], ".."))
			{
				free((char *)parts.v[parts.nr - 1]);
				parts.v[--parts.nr] = NULL;
			}
			else if (!rooted)
				strvec_push(&parts, "..");
		} else if (n && !(n == 1 && p[0] == '.')) {
			strvec_pushf(&parts, "%.*s", (int)n, p);
		}
		p += n + (slash ? 1 : 0);
	}
	for (size_t i = 0; i < parts.nr; i++) {
		if (i)
			strbuf_addch(out, '/');
		strbuf_addstr(out, parts.v[i]);
	}
	if (rooted)
		why = "path is absolute";
	else if (!strncmp(out->buf, "..", 2))
		why = "path contains traversal";
	else if (!out->len)
		why = "path is empty";
	else if (!strcmp(parts.v[0], ".git"))
		why = "disallowed path";
	strvec_clear(&parts);
	return why;
}

static void sub_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct submodule *s = container_of(op, struct submodule, op);
	Gitaly__UserUpdateSubmoduleRequest *req = s->req;
	static const char *const flags[] = { "--count=1", "--format=%(refname)", NULL };
	static const char *const args[] = { "refs/heads/", NULL };
	struct strbuf e = STRBUF_INIT;
	if (!req->user) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty User");
		return;
	}
	if (!req->commit_sha || !*req->commit_sha) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty CommitSha");
		return;
	}
	if (hooks_validate_hex(req->commit_sha, op->hexlen, &e) < 0) {
		strbuf_release(&e);
		op_fail(op, GRPC_INVALID_ARGUMENT, "invalid CommitSha");
		return;
	}
	if (!req->branch.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty Branch");
		return;
	}
	if (!req->submodule.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty Submodule");
		return;
	}
	if (!req->commit_message.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty CommitMessage");
		return;
	}
	if (memchr(req->branch.data, '\0', req->branch.len) || memchr(req->branch.data, '\n', req->branch.len)) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "Cannot find branch");
		return;
	}
	strbuf_addstr(&s->ref, "refs/heads/");
	strbuf_add(&s->ref, req->branch.data, req->branch.len);
	s->have_sig = 1;   /* op_signature() sets its buffers up even when it fails */
	if (op_signature(req->user, req->timestamp, &s->sig, &e) < 0) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "%s", e.buf);
		strbuf_release(&e);
		return;
	}
	strbuf_release(&e);
	sub_git(s, S_BRANCHES, "for-each-ref", flags, args, NULL, NULL, 0, 4096);
}

static void user_update_submodule(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct submodule *s = xcalloc(1, sizeof(*s));
	Gitaly__UserUpdateSubmoduleRequest *req;
	strbuf_init(&s->ref, 0);
	strbuf_init(&s->path, 0);
	strbuf_init(&s->old, 0);
	strbuf_init(&s->head, 0);
	strbuf_init(&s->commit, 0);
	index_tree_init(&s->it);
	op_init(&s->op, data, call, sub_release, 1);
	req = msg_unpack(call, &gitaly__user_update_submodule_request__descriptor, buf, len);
	if (!req)
		return;
	s->req = req;
	if (op_locate(&s->op, req->repository) != GRPC_OK)
		return;
	if (op_quarantine(&s->op) < 0)
		return;
	op_detect_hash(&s->op, sub_hash_known);
}

void op_register_submodule(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.OperationService/UserUpdateSubmodule", user_update_submodule, g);
}

/* OperationService/UserApplyPatch (docs/technical/operations-write.md, "UserApplyPatch"). */
#include "operations/operations.h"
#include "base/fs.h"
#include "base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_PATCHES (128 * 1024 * 1024)
#define MAX_MAIL (MAX_PATCHES + 4096)

enum ap_step { A_TARGET, A_DEFAULT, A_SPLIT, A_INFO, A_STRIP, A_READ, A_APPLY, A_WRITE, A_COMMIT, A_OLD };

struct apply_patch {
	struct op op;
	enum ap_step step;
	Gitaly__UserApplyPatchRequest *first;
	Gitaly__UserApplyPatchRequest__Header *h;
	int done_reading, branch_created;
	struct strbuf patches, ref, parent, scratch, index, subject, message, tree, old;
	struct strbuf author, email, date;
	size_t nr, next;
	struct op_signature sig;
	int have_sig;
};

static void remove_scratch(struct apply_patch *a)
{
	if (a->scratch.len)
		fs_remove_tree(a->scratch.buf);
	strbuf_reset(&a->scratch);
}

static void ap_release(struct op *op)
{
	struct apply_patch *a = container_of(op, struct apply_patch, op);
	remove_scratch(a);
	msg_free(a->first);
	strbuf_release(&a->patches);
	strbuf_release(&a->ref);
	strbuf_release(&a->parent);
	strbuf_release(&a->scratch);
	strbuf_release(&a->index);
	strbuf_release(&a->subject);
	strbuf_release(&a->message);
	strbuf_release(&a->tree);
	strbuf_release(&a->old);
	strbuf_release(&a->author);
	strbuf_release(&a->email);
	strbuf_release(&a->date);
	if (a->have_sig)
		op_signature_release(&a->sig);
	free(a);
}

static void ap_step(struct op *op, int status, struct strbuf *out, struct strbuf *err);

static void ap_git(struct apply_patch *a, enum ap_step step, const char *subcmd, const char *const *flags,
		   const char *const *args, const char *const *env, const char *in, size_t inlen, size_t cap)
{
	struct git_call gc;
	a->step = step;
	op_git_call(&a->op, &gc, subcmd);
	gc.flags = flags;
	gc.args = args;
	gc.env = env;
	op_git(&a->op, &gc, in, inlen, cap, ap_step);
}

static void with_index(struct apply_patch *a, enum ap_step step, const char *subcmd, const char *const *flags,
		       const char *const *args)
{
	struct strbuf e = STRBUF_INIT;
	const char *env[] = { NULL, NULL };
	strbuf_addf(&e, "GIT_INDEX_FILE=%s", a->index.buf);
	env[0] = e.buf;
	ap_git(a, step, subcmd, flags, args, env, NULL, 0, 64 * 1024);
	strbuf_release(&e);
}

static void scratch_path(struct apply_patch *a, struct strbuf *out, const char *name)
{
	strbuf_reset(out);
	strbuf_addf(out, "%s/%s", a->scratch.buf, name);
}

static void rev_parse(struct apply_patch *a, enum ap_step step, const char *rev)
{
	static const char *const flags[] = { "--verify", NULL };
	const char *args[] = { rev, NULL };
	ap_git(a, step, "rev-parse", flags, args, NULL, NULL, 0, 4096);
}

static void updated(struct op *op, const struct op_update_result *r)
{
	struct apply_patch *a = container_of(op, struct apply_patch, op);
	if (r->fail == UPD_OK) {
		Gitaly__UserApplyPatchResponse resp = GITALY__USER_APPLY_PATCH_RESPONSE__INIT;
		Gitaly__OperationBranchUpdate bu = GITALY__OPERATION_BRANCH_UPDATE__INIT;
		bu.commit_id = a->parent.buf;
		bu.branch_created = a->branch_created;
		resp.branch_update = &bu;
		msg_reply(op->base.call, &resp);
		return;
	}
	op_fail(op, GRPC_INTERNAL, "update reference: %s", r->msg.buf);
}

/* All patches are commits: the branch moves from its old value (or expected_old_oid) with hooks. */
static void all_applied(struct apply_patch *a)
{
	const char *expected = a->h->expected_old_oid;
	remove_scratch(a);   /* before the quarantine may migrate */
	if (expected && *expected) {
		struct strbuf e = STRBUF_INIT, rev = STRBUF_INIT;
		if (hooks_validate_hex(expected, a->op.hexlen, &e) < 0) {
			op_fail(&a->op, GRPC_INTERNAL, "expected old object id not expected SHA format: %s", e.buf);
			strbuf_release(&e);
			return;
		}
		strbuf_release(&e);
		strbuf_addf(&rev, "%s^{object}", expected);
		rev_parse(a, A_OLD, rev.buf);
		strbuf_release(&rev);
		return;
	}
	/* a->old holds the parent the first patch applied to, or zero for a new branch */
	op_update_ref(&a->op, a->h->user, a->ref.buf, a->parent.buf, a->old.buf, updated);
}

/* The next mail of the series: mailinfo splits it into message and patch. */
static void next_patch(struct apply_patch *a)
{
	struct strbuf path = STRBUF_INIT, mail = STRBUF_INIT, msg = STRBUF_INIT, patch = STRBUF_INIT;
	const char *args[] = { NULL, NULL, NULL };
	int rc;
	if (a->next == a->nr) {
		all_applied(a);
		return;
	}
	a->next++;
	strbuf_addf(&path, "%s/%04zu", a->scratch.buf, a->next);
	if ((rc = fs_read_file(path.buf, MAX_MAIL, &mail)) < 0) {
		op_fail(&a->op, GRPC_INTERNAL, "apply patch: reading mail %zu: %s", a->next, strerror(-rc));
		goto out;
	}
	scratch_path(a, &msg, "msg");
	scratch_path(a, &patch, "patch");
	args[0] = msg.buf;
	args[1] = patch.buf;
	ap_git(a, A_INFO, "mailinfo", NULL, args, NULL, mail.buf, mail.len, 64 * 1024);
out:
	strbuf_release(&path);
	strbuf_release(&mail);
	strbuf_release(&msg);
	strbuf_release(&patch);
}

static void parse_info(struct apply_patch *a, const struct strbuf *out)
{
	const char *s = out->buf, *end = out->buf + out->len;
	strbuf_reset(&a->author);
	strbuf_reset(&a->email);
	strbuf_reset(&a->date);
	strbuf_reset(&a->subject);
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
		struct { const char *key; struct strbuf *sb; } keys[] = {
			{ "Author: ", &a->author }, { "Email: ", &a->email }, { "Subject: ", &a->subject },
			{ "Date: ", &a->date },
		};
		for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
			size_t k = strlen(keys[i].key);
			if (n >= k && !memcmp(s, keys[i].key, k)) {
				if (keys[i].sb == &a->subject && a->subject.len)
					strbuf_addch(&a->subject, '\n');
				strbuf_add(keys[i].sb, s + k, n - k);
			}
		}
		s += n + (nl ? 1 : 0);
	}
}

/* What `git am` prints when a patch does not apply (builtin/am.c, die_user_resolve()). */
static void patch_failed(struct apply_patch *a)
{
	struct strbuf m = STRBUF_INIT;
	const char *nl = strchr(a->message.buf, '\n');
	strbuf_addf(&m, "Patch failed at %04zu %.*s\n", a->next,
		    (int)(nl ? (size_t)(nl - a->message.buf) : a->message.len), a->message.buf);
	strbuf_addstr(&m, "When you have resolved this problem, run \"git am --continue\".\n"
			  "If you prefer to skip this patch, run \"git am --skip\" instead.\n"
			  "To restore the original branch and stop patching, run \"git am --abort\".\n");
	op_fail(&a->op, GRPC_FAILED_PRECONDITION, "%s", m.buf);
	strbuf_release(&m);
}

static void write_commit(struct apply_patch *a)
{
	struct strbuf cdate = STRBUF_INIT;
	struct strvec env = STRVEC_INIT;
	const char *flags[] = { "-p", a->parent.buf, "-F", "-", NULL };
	const char *args[] = { a->tree.buf, NULL };
	op_signature_date(&a->sig, &cdate);
	/* the author and date the mail carries, as git am records them */
	strvec_pushf(&env, "GIT_AUTHOR_NAME=%s", a->author.buf);
	strvec_pushf(&env, "GIT_AUTHOR_EMAIL=%s", a->email.buf);
	strvec_pushf(&env, "GIT_AUTHOR_DATE=%s", a->date.buf);
	strvec_pushf(&env, "GIT_COMMITTER_NAME=%s", a->sig.name.buf);
	strvec_pushf(&env, "GIT_COMMITTER_EMAIL=%s", a->sig.email.buf);
	strvec_pushf(&env, "GIT_COMMITTER_DATE=%s", cdate.buf);
	ap_git(a, A_COMMIT, "commit-tree", flags, args, (const char *const *)env.v, a->message.buf, a->message.len,
	       4096);
	strbuf_release(&cdate);
	strvec_clear(&env);
}

static void ap_step(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct apply_patch *a = container_of(op, struct apply_patch, op);
	switch (a->step) {
	case A_TARGET:
	case A_DEFAULT: {
		struct strbuf e = STRBUF_INIT, path = STRBUF_INIT;
		const char *args[] = { NULL, NULL };
		const char *flags[] = { NULL, NULL };
		if (status != 0 && a->step == A_TARGET) {
			a->branch_created = 1;
			rev_parse(a, A_DEFAULT, "HEAD^{commit}");
			return;
		}
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "no default branch");
			return;
		}
		op_chomp(out);
		strbuf_add(&a->parent, out->buf, out->len);
		strbuf_addstr(&a->old, a->branch_created ? op_zero_oid(op) : a->parent.buf);
		a->have_sig = 1;   /* op_signature() sets its buffers up even when it fails */
		if (op_signature(a->h->user, a->h->timestamp, &a->sig, &e) < 0) {
			op_fail(op, GRPC_INVALID_ARGUMENT, "%s", e.buf);
			strbuf_release(&e);
			return;
		}
		strbuf_release(&e);
		if (op_quarantine(op) < 0)
			return;
		/* scratch files live in the quarantine, removed before it migrates or with it */
		strbuf_addf(&a->scratch, "%s/tmp_am", op->qdir.buf);
		strbuf_addf(&a->index, "%s/index", a->scratch.buf);
		scratch_path(a, &path, "mbox");
		if (mkdir(a->scratch.buf, 0700) < 0 ||
		    (errno = -fs_write_atomic(path.buf, a->patches.buf, a->patches.len, 0600)) != 0) {
			op_fail(op, GRPC_INTERNAL, "apply patch: scratch files: %s", strerror(errno));
			strbuf_release(&path);
			return;
		}
		strbuf_release(&a->patches);
		strbuf_addf(&e, "-o%s", a->scratch.buf);
		flags[0] = e.buf;
		args[0] = path.buf;
		ap_git(a, A_SPLIT, "mailsplit", flags, args, NULL, NULL, 0, 4096);
		strbuf_release(&e);
		strbuf_release(&path);
		return;
	}
	case A_SPLIT:
		if (status != 0) {
			op_chomp(err);
			op_fail(op, GRPC_INTERNAL, "apply patch: mailsplit: %s", err->buf);
			return;
		}
		a->nr = strtoul(out->buf, NULL, 10);
		if (!a->nr) {
			op_fail(op, GRPC_INTERNAL, "apply patch: Patch format detection failed.");
			return;
		}
		next_patch(a);
		return;
	case A_INFO: {
		struct strbuf msg = STRBUF_INIT, path = STRBUF_INIT, in = STRBUF_INIT;
		struct stat st;
		int rc;
		if (status != 0) {
			op_chomp(err);
			op_fail(op, GRPC_INTERNAL, "apply patch: mailinfo: %s", err->buf);
			return;
		}
		parse_info(a, out);
		scratch_path(a, &path, "patch");
		if (stat(path.buf, &st) < 0 || !st.st_size) {
			op_fail(op, GRPC_FAILED_PRECONDITION, "Patch is empty.");
			goto info_out;
		}
		if (!a->email.len) {
			op_fail(op, GRPC_INTERNAL, "apply patch: Patch does not have a valid e-mail address.");
			goto info_out;
		}
		scratch_path(a, &path, "msg");
		if ((rc = fs_read_file(path.buf, MAX_MAIL, &msg)) < 0) {
			op_fail(op, GRPC_INTERNAL, "apply patch: reading message: %s", strerror(-rc));
			goto info_out;
		}
		/* as git am: the subject, a blank line, the body, then whitespace cleaned */
		strbuf_add(&in, a->subject.buf, a->subject.len);
		strbuf_addstr(&in, "\n\n");
		strbuf_add(&in, msg.buf, msg.len);
		ap_git(a, A_STRIP, "stripspace", NULL, NULL, NULL, in.buf, in.len, MAX_MAIL);
info_out:
		strbuf_release(&msg);
		strbuf_release(&path);
		strbuf_release(&in);
		return;
	}
	case A_STRIP: {
		const char *args[] = { a->parent.buf, NULL };
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "apply patch: stripspace: exit status %d", status);
			return;
		}
		strbuf_reset(&a->message);
		strbuf_add(&a->message, out->buf, out->len);
		with_index(a, A_READ, "read-tree", NULL, args);
		return;
	}
	case A_READ: {
		static const char *const flags[] = { "--cached", "--3way", NULL };
		struct strbuf path = STRBUF_INIT;
		const char *args[] = { NULL, NULL };
		if (status != 0) {
			op_chomp(err);
			op_fail(op, GRPC_INTERNAL, "apply patch: read-tree: %s", err->buf);
			return;
		}
		scratch_path(a, &path, "patch");
		args[0] = path.buf;
		with_index(a, A_APPLY, "apply", flags, args);
		strbuf_release(&path);
		return;
	}
	case A_APPLY:
		if (status != 0) {
			patch_failed(a);
			return;
		}
		with_index(a, A_WRITE, "write-tree", NULL, NULL);
		return;
	case A_WRITE:
		if (status != 0) {
			op_chomp(err);
			op_fail(op, GRPC_INTERNAL, "apply patch: write-tree: %s", err->buf);
			return;
		}
		op_chomp(out);
		strbuf_reset(&a->tree);
		strbuf_add(&a->tree, out->buf, out->len);
		write_commit(a);
		return;
	case A_COMMIT:
		if (status != 0) {
			op_chomp(err);
			op_fail(op, GRPC_INTERNAL, "apply patch: commit-tree: %s", err->buf);
			return;
		}
		op_chomp(out);
		strbuf_reset(&a->parent);
		strbuf_add(&a->parent, out->buf, out->len);
		next_patch(a);
		return;
	case A_OLD:
		if (status != 0) {
			op_fail(op, GRPC_INTERNAL, "expected old object cannot be resolved: reference not found");
			return;
		}
		op_chomp(out);
		strbuf_reset(&a->old);
		strbuf_add(&a->old, out->buf, out->len);
		op_update_ref(op, a->h->user, a->ref.buf, a->parent.buf, a->old.buf, updated);
		return;
	}
}

static void ap_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct apply_patch *a = container_of(op, struct apply_patch, op);
	struct strbuf rev = STRBUF_INIT;
	strbuf_addf(&rev, "%s^{commit}", a->ref.buf);
	rev_parse(a, A_TARGET, rev.buf);
	strbuf_release(&rev);
}

static void ap_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct apply_patch *a = grpc_call_user(call);
	struct op *op = &a->op;
	Gitaly__UserApplyPatchRequest *req;
	if (a->done_reading)
		return;
	req = msg_unpack(call, &gitaly__user_apply_patch_request__descriptor, msg, len);
	if (!req) {
		a->done_reading = 1;
		return;
	}
	if (a->first) {
		if (a->patches.len + req->patches.len > MAX_PATCHES) {
			op_fail(op, GRPC_RESOURCE_EXHAUSTED, "patches exceed %d bytes", MAX_PATCHES);
			a->done_reading = 1;
		} else {
			strbuf_add(&a->patches, req->patches.data, req->patches.len);
		}
		msg_free(req);
		return;
	}
	a->first = req;
	a->done_reading = 1;
	a->h = req->user_apply_patch_request_payload_case ==
			       GITALY__USER_APPLY_PATCH_REQUEST__USER_APPLY_PATCH_REQUEST_PAYLOAD_HEADER
		       ? req->header : NULL;
	if (!a->h) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "empty UserApplyPatch_Header");
		return;
	}
	if (op_locate(op, a->h->repository) != GRPC_OK)
		return;
	if (!a->h->user) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "missing User");
		return;
	}
	if (!a->h->target_branch.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "missing Branch");
		return;
	}
	strbuf_addstr(&a->ref, "refs/heads/");
	strbuf_add(&a->ref, a->h->target_branch.data, a->h->target_branch.len);
	if (memchr(a->ref.buf, '\0', a->ref.len) || strchr(a->ref.buf, '\n')) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "invalid Branch");
		return;
	}
	a->done_reading = 0;
}

static void ap_half_close(struct grpc_call *call)
{
	struct apply_patch *a = grpc_call_user(call);
	if (a->done_reading)
		return;
	a->done_reading = 1;
	if (!a->first) {
		op_fail(&a->op, GRPC_INTERNAL, "EOF");
		return;
	}
	op_detect_hash(&a->op, ap_hash_known);
}

static void ap_close(struct grpc_call *call, enum grpc_code code)
{
	struct apply_patch *a = grpc_call_user(call);
	(void)code;
	op_closed(&a->op);
}

static const struct grpc_call_ops ap_ops = {
	.on_message = ap_message,
	.on_half_close = ap_half_close,
	.on_close = ap_close,
};

static void user_apply_patch(struct grpc_call *call, void *data)
{
	struct apply_patch *a = xcalloc(1, sizeof(*a));
	strbuf_init(&a->patches, 0);
	strbuf_init(&a->ref, 0);
	strbuf_init(&a->parent, 0);
	strbuf_init(&a->scratch, 0);
	strbuf_init(&a->index, 0);
	strbuf_init(&a->subject, 0);
	strbuf_init(&a->message, 0);
	strbuf_init(&a->tree, 0);
	strbuf_init(&a->old, 0);
	strbuf_init(&a->author, 0);
	strbuf_init(&a->email, 0);
	strbuf_init(&a->date, 0);
	op_init(&a->op, data, call, ap_release, 0);
	grpc_call_set_ops(call, &ap_ops, a);
}

void op_register_apply_patch(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_method(s, "/gitaly.OperationService/UserApplyPatch", user_apply_patch, g);
}

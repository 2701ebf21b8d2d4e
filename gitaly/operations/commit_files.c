/* OperationService/UserCommitFiles: a commit built from file actions with git plumbing. */
#include "operations/operations.h"
#include "operations/tree_node.h"
#include "base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Everything a request uploads is held in memory until the commit is written. */
#define MAX_CONTENT (256 * 1024 * 1024)
#define MAX_LS_TREE (256 * 1024 * 1024)

enum action_type { A_CREATE = 0, A_CREATE_DIR, A_UPDATE, A_MOVE, A_DELETE, A_CHMOD };

/* Index error kinds: the values of gitaly.IndexError.ErrorType. */
enum index_err {
	IE_EMPTY_PATH = 1,
	IE_INVALID_PATH = 2,
	IE_DIRECTORY_EXISTS = 3,
	IE_DIRECTORY_TRAVERSAL = 4,
	IE_FILE_EXISTS = 5,
	IE_FILE_NOT_FOUND = 6,
};

struct action {
	int type;
	int base64, exec, infer;
	struct strbuf raw_path, raw_prev;     /* as sent */
	struct strbuf path, prev;             /* cleaned, relative to the repository */
	struct strbuf content;
	struct strbuf oid;                    /* the blob written for it, if any */
};

/* --- the call --- */

struct commit_files {
	struct op op;
	Gitaly__UserCommitFilesRequest *first;
	Gitaly__UserCommitFilesRequestHeader *h;
	struct action *actions;
	size_t nr, alloc;
	size_t content;
	int done_reading;         /* the call was answered while still streaming */
	struct strbuf branch, ref, target, parent, commit, old, tree_oid;
	/* the start repository when it is another repository of this node */
	int remote;
	struct strbuf remote_path;
	int has_branches;
	size_t next;
	struct tree_node *root;
	struct tree_node *writing;
	struct op_signature sig;
	int have_sig;
};

static void cf_release(struct op *op)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	for (size_t i = 0; i < c->nr; i++) {
		struct action *a = &c->actions[i];
		strbuf_release(&a->raw_path);
		strbuf_release(&a->raw_prev);
		strbuf_release(&a->path);
		strbuf_release(&a->prev);
		strbuf_release(&a->content);
		strbuf_release(&a->oid);
	}
	free(c->actions);
	msg_free(c->first);
	strbuf_release(&c->branch);
	strbuf_release(&c->ref);
	strbuf_release(&c->target);
	strbuf_release(&c->parent);
	strbuf_release(&c->commit);
	strbuf_release(&c->old);
	strbuf_release(&c->tree_oid);
	strbuf_release(&c->remote_path);
	tree_node_free(c->root);
	if (c->have_sig)
		op_signature_release(&c->sig);
	free(c);
}

static void index_error(struct op *op, enum index_err type, const char *path)
{
	Gitaly__UserCommitFilesError e = GITALY__USER_COMMIT_FILES_ERROR__INIT;
	Gitaly__IndexError ie = GITALY__INDEX_ERROR__INIT;
	struct strbuf msg = STRBUF_INIT;
	enum grpc_code code = GRPC_INVALID_ARGUMENT;

	switch (type) {
	case IE_DIRECTORY_EXISTS:
		strbuf_addstr(&msg, "A directory with this name already exists");
		code = GRPC_ALREADY_EXISTS;
		break;
	case IE_DIRECTORY_TRAVERSAL:
		strbuf_addstr(&msg, "Path cannot include directory traversal");
		break;
	case IE_EMPTY_PATH:
		strbuf_addstr(&msg, "You must provide a file path");
		break;
	case IE_FILE_EXISTS:
		strbuf_addstr(&msg, "A file with this name already exists");
		code = GRPC_ALREADY_EXISTS;
		break;
	case IE_FILE_NOT_FOUND:
		strbuf_addstr(&msg, "A file with this name doesn't exist");
		code = GRPC_NOT_FOUND;
		break;
	case IE_INVALID_PATH:
		strbuf_addstr(&msg, "invalid path: ");
		hooks_quote(&msg, path, strlen(path));
		break;
	}
	ie.path.data = (uint8_t *)path;
	ie.path.len = strlen(path);
	ie.error_type = (Gitaly__IndexError__ErrorType)type;
	e.error_case = GITALY__USER_COMMIT_FILES_ERROR__ERROR_INDEX_UPDATE;
	e.index_update = &ie;
	op_fail_detail(op, code, msg.buf, &e.base);
	strbuf_release(&msg);
}

/* A tree model error for `path`, as upstream's translateError() reports it. */
static void tree_error(struct op *op, enum tree_node_err err, const char *path)
{
	switch (err) {
	case TE_NOT_FOUND:
		index_error(op, IE_FILE_NOT_FOUND, path);
		break;
	case TE_EXISTS:
		index_error(op, IE_FILE_EXISTS, path);
		break;
	default:
		op_fail(op, GRPC_INTERNAL, "invalid path: '%s'", path);
	}
}

/*
 * storage.ValidateRelativePath() within the repository: clean the path
 * lexically; leaving the repository is a traversal. An empty result is ".".
 */
static int validate_path(const struct strbuf *raw, struct strbuf *out, enum index_err *err)
{
	struct strvec parts = STRVEC_INIT;
	const char *p = raw->buf;
	int rc = 0;

	strbuf_reset(out);
	if (!raw->len) {
		*err = IE_EMPTY_PATH;
		return -1;
	}
	if (strstr(raw->buf, "//") || memchr(raw->buf, '\0', raw->len)) {
		*err = IE_INVALID_PATH;
		return -1;
	}
	while (*p) {
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (!parts.nr) {
				*err = IE_DIRECTORY_TRAVERSAL;
				rc = -1;
				break;
			}
			free((char *)parts.v[parts.nr - 1]);
			parts.v[--parts.nr] = NULL;
		} else if (n && !(n == 1 && p[0] == '.')) {
			char *c = xstrndup(p, n);
			strvec_push(&parts, c);
			free(c);
		}
		p += n;
		if (*p == '/')
			p++;
	}
	for (size_t i = 0; rc == 0 && i < parts.nr; i++) {
		if (i)
			strbuf_addch(out, '/');
		strbuf_addstr(out, parts.v[i]);
	}
	if (rc == 0 && !out->len)
		strbuf_addch(out, '.');
	strvec_clear(&parts);
	return rc;
}

/* Go's base64.StdEncoding through a reader: padded, line breaks ignored. */
static int base64_decode(const struct strbuf *in, struct strbuf *out, size_t *bad)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned v = 0;
	int bits = 0, pad = 0;
	for (size_t i = 0; i < in->len; i++) {
		char ch = in->buf[i];
		const char *pos;
		if (ch == '\r' || ch == '\n')
			continue;
		if (ch == '=') {
			pad++;
			continue;
		}
		pos = ch ? strchr(tbl, ch) : NULL;
		if (!pos || pad) {
			*bad = i;
			return -1;
		}
		v = v << 6 | (unsigned)(pos - tbl);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			strbuf_addch(out, (v >> bits) & 0xff);
		}
	}
	if (bits >= 6 || (bits && pad * 2 != bits)) {
		*bad = in->len;
		return -1;
	}
	return 0;
}

static void cf_updated(struct op *op, const struct op_update_result *r)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	if (r->fail == UPD_OK) {
		Gitaly__UserCommitFilesResponse resp = GITALY__USER_COMMIT_FILES_RESPONSE__INIT;
		Gitaly__OperationBranchUpdate bu = GITALY__OPERATION_BRANCH_UPDATE__INIT;
		bu.commit_id = c->commit.buf;
		bu.repo_created = !c->has_branches;
		bu.branch_created = !strcmp(c->old.buf, op_zero_oid(op));
		resp.branch_update = &bu;
		msg_reply(op->base.call, &resp);
	} else if (r->fail == UPD_CUSTOM_HOOK) {
		op_fail_update(op, r, &gitaly__user_commit_files_error__descriptor, "denied by custom hooks");
	} else if (r->fail == UPD_REF) {
		op_fail(op, GRPC_FAILED_PRECONDITION, "%s", r->msg.buf);
	} else {
		op_fail(op, r->fail == UPD_OTHER && r->code && r->code != GRPC_PERMISSION_DENIED ? r->code
												  : GRPC_INTERNAL,
			"update reference: %s", r->msg.buf);
	}
}

static void cf_update(struct op *op)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	op_update_ref(op, c->h->user, c->ref.buf, c->commit.buf, c->old.buf, cf_updated);
}

static void cf_old_resolved(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	if (status != 0) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "cannot resolve expected old object ID: reference not found");
		return;
	}
	op_chomp(out);
	strbuf_reset(&c->old);
	strbuf_add(&c->old, out->buf, out->len);
	cf_update(op);
}

static void cf_has_branches(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	const char *expected = c->h->expected_old_oid ? c->h->expected_old_oid : "";
	if (status != 0) {
		op_fail(op, GRPC_INTERNAL, "was repo created: %s", err->buf);
		return;
	}
	c->has_branches = out->len > 0;
	if (*expected) {
		struct strbuf e = STRBUF_INIT;
		if (op_check_expected_old(op, expected) < 0)
			return;
		strbuf_addf(&e, "%s^{object}", expected);
		/* in the repository itself, not the quarantine */
		{
			Gitaly__Repository *q = op->qrepo;
			op->qrepo = NULL;
			op_rev_parse(op, e.buf, cf_old_resolved);
			op->qrepo = q;
		}
		strbuf_release(&e);
		return;
	}
	strbuf_reset(&c->old);
	if (!c->target.len)
		strbuf_addstr(&c->old, op_zero_oid(op));
	else if (c->h->force)
		strbuf_add(&c->old, c->target.buf, c->target.len);
	else
		strbuf_add(&c->old, c->parent.buf, c->parent.len);
	cf_update(op);
}

static void count_branches(struct op *op, const char *git_dir, op_git_fn fn)
{
	static const char *const flags[] = { "--count=1", "--format=%(refname)", NULL };
	static const char *const args[] = { "refs/heads/", NULL };
	struct git_call gc;
	op_git_call(op, &gc, "for-each-ref");
	if (git_dir) {
		gc.git_dir = git_dir;
		gc.repo = NULL;
	}
	gc.flags = flags;
	gc.args = args;
	op_git(op, &gc, NULL, 0, 4096, fn);
}

static void cf_committed(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	if (status != 0) {
		if (strstr(err->buf, "name consists only of disallowed characters"))
			op_fail(op, GRPC_INVALID_ARGUMENT,
				"commit: failed to parse signature - Signature cannot have an empty name or email");
		else
			op_fail(op, GRPC_INTERNAL, "commit-tree: exit status %d: %s %s", status, err->buf, out->buf);
		return;
	}
	op_chomp(out);
	strbuf_add(&c->commit, out->buf, out->len);
	count_branches(op, NULL, cf_has_branches);
}

static void trim(const ProtobufCBinaryData *b, struct strbuf *out)
{
	size_t s = 0, e = b->len;
	while (s < e && strchr(" \t\n\r\v\f", b->data[s]) && b->data[s])
		s++;
	while (e > s && strchr(" \t\n\r\v\f", b->data[e - 1]) && b->data[e - 1])
		e--;
	strbuf_add(out, b->data + s, e - s);
}

static void cf_commit(struct op *op)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	struct strbuf an = STRBUF_INIT, ae = STRBUF_INIT, date = STRBUF_INIT;
	struct strvec env = STRVEC_INIT, flags = STRVEC_INIT;
	const char *args[] = { c->tree_oid.buf, NULL };
	struct git_call gc;

	trim(&c->h->commit_author_name, &an);
	trim(&c->h->commit_author_email, &ae);
	if (!an.len)
		strbuf_add(&an, c->sig.name.buf, c->sig.name.len);
	if (!ae.len)
		strbuf_add(&ae, c->sig.email.buf, c->sig.email.len);
	if (!an.len || !ae.len || !c->sig.name.len) {
		op_fail(op, GRPC_INVALID_ARGUMENT,
			"commit: failed to parse signature - Signature cannot have an empty name or email");
		goto out;
	}
	op_signature_date(&c->sig, &date);
	strvec_pushf(&env, "GIT_AUTHOR_NAME=%s", an.buf);
	strvec_pushf(&env, "GIT_AUTHOR_EMAIL=%s", ae.buf);
	strvec_pushf(&env, "GIT_AUTHOR_DATE=%s", date.buf);
	strvec_pushf(&env, "GIT_COMMITTER_NAME=%s", c->sig.name.buf);
	strvec_pushf(&env, "GIT_COMMITTER_EMAIL=%s", c->sig.email.buf);
	strvec_pushf(&env, "GIT_COMMITTER_DATE=%s", date.buf);
	if (c->parent.len)
		strvec_pushl(&flags, "-p", c->parent.buf, NULL);
	strvec_pushl(&flags, "-F", "-", NULL);
	op_git_call(op, &gc, "commit-tree");
	gc.flags = flags.v;
	gc.args = args;
	gc.env = env.v;
	op_git(op, &gc, c->h->commit_message.data ? (const char *)c->h->commit_message.data : "",
	       c->h->commit_message.len, 4096, cf_committed);
out:
	strbuf_release(&an);
	strbuf_release(&ae);
	strbuf_release(&date);
	strvec_clear(&env);
	strvec_clear(&flags);
}

static void cf_write_next_tree(struct op *op);

static void cf_tree_written(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	if (status != 0) {
		op_fail(op, GRPC_INTERNAL, "writing tree: exit status %d: %s", status, err->buf);
		return;
	}
	op_chomp(out);
	snprintf(c->writing->oid, sizeof(c->writing->oid), "%s", out->buf);
	cf_write_next_tree(op);
}

static void cf_write_next_tree(struct op *op)
{
	static const char *const flags[] = { "-t", "tree", "-w", "--stdin", NULL };
	struct commit_files *c = container_of(op, struct commit_files, op);
	struct strbuf body = STRBUF_INIT;
	struct git_call gc;

	c->writing = tree_node_next_dirty(c->root);
	if (!c->writing) {
		strbuf_addstr(&c->tree_oid, c->root->oid);
		cf_commit(op);
		return;
	}
	if (tree_node_body(c->writing, &body) < 0) {
		op_fail(op, GRPC_INTERNAL, "writing tree: invalid object ID in tree entry");
		strbuf_release(&body);
		return;
	}
	op_git_call(op, &gc, "hash-object");
	gc.flags = flags;
	op_git(op, &gc, body.buf, body.len, 4096, cf_tree_written);
	strbuf_release(&body);
}

/* Apply every action to the tree; 0, or -1 with the call failed. */
static int apply_actions(struct op *op)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	for (size_t i = 0; i < c->nr; i++) {
		struct action *a = &c->actions[i];
		struct tree_node *e = NULL;
		enum tree_node_err err;
		switch (a->type) {
		case A_CHMOD:
			err = tree_node_modify(c->root, a->path.buf, &e);
			if (err) {
				tree_error(op, err, a->path.buf);
				return -1;
			}
			if (a->exec)
				snprintf(e->mode, sizeof(e->mode), "100755");
			else if (!strcmp(e->mode, "100755"))
				snprintf(e->mode, sizeof(e->mode), "100644");
			break;
		case A_UPDATE:
			err = tree_node_modify(c->root, a->path.buf, &e);
			if (err) {
				tree_error(op, err, a->path.buf);
				return -1;
			}
			snprintf(e->oid, sizeof(e->oid), "%s", a->oid.buf);
			break;
		case A_MOVE: {
			char mode[8];
			struct strbuf oid = STRBUF_INIT;
			const char *base;
			if (tree_node_get(c->root, a->prev.buf, &e) || e->type != TN_BLOB) {
				index_error(op, IE_FILE_NOT_FOUND, a->prev.buf);
				return -1;
			}
			snprintf(mode, sizeof(mode), "%s", e->mode);
			strbuf_addstr(&oid, a->oid.len ? a->oid.buf : e->oid);
			err = tree_node_delete(c->root, a->prev.buf);
			if (err) {
				strbuf_release(&oid);
				tree_error(op, err, a->prev.buf);
				return -1;
			}
			base = strrchr(a->path.buf, '/');
			base = base ? base + 1 : a->path.buf;
			/* upstream leaves the type of a moved entry unset */
			e = tree_node_new(base, strlen(base), mode, TN_UNKNOWN, oid.buf);
			strbuf_release(&oid);
			err = tree_node_add(c->root, a->path.buf, e, 0, 1);
			if (err) {
				tree_node_free(e);
				tree_error(op, err, a->path.buf);
				return -1;
			}
			break;
		}
		case A_CREATE_DIR: {
			struct strbuf keep = STRBUF_INIT;
			if (tree_node_get(c->root, a->path.buf, &e) == TE_OK) {
				index_error(op, e->type == TN_TREE || e->type == TN_COMMIT ? IE_DIRECTORY_EXISTS
											   : IE_FILE_EXISTS, a->path.buf);
				return -1;
			}
			strbuf_addf(&keep, "%s/.gitkeep", a->path.buf);
			e = tree_node_new(".gitkeep", 8, "100644", TN_BLOB, a->oid.buf);
			err = tree_node_add(c->root, keep.buf, e, 0, 0);
			strbuf_release(&keep);
			if (err) {
				tree_node_free(e);
				if (err == TE_EXISTS)
					index_error(op, IE_DIRECTORY_EXISTS, a->path.buf);
				else
					tree_error(op, err, a->path.buf);
				return -1;
			}
			break;
		}
		case A_CREATE: {
			const char *base = strrchr(a->path.buf, '/');
			base = base ? base + 1 : a->path.buf;
			e = tree_node_new(base, strlen(base), a->exec ? "100755" : "100644", TN_BLOB, a->oid.buf);
			err = tree_node_add(c->root, a->path.buf, e, 0, 1);
			if (err) {
				tree_node_free(e);
				tree_error(op, err, a->path.buf);
				return -1;
			}
			break;
		}
		case A_DELETE:
			err = tree_node_delete(c->root, a->path.buf);
			if (err) {
				tree_error(op, err, a->path.buf);
				return -1;
			}
			break;
		}
	}
	return 0;
}

static void cf_tree_listed(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	if (status != 0 || tree_node_populate(c->root, out) < 0) {
		op_fail(op, GRPC_INTERNAL, "reading tree: %s", err->buf);
		return;
	}
	if (apply_actions(op) < 0)
		return;
	cf_write_next_tree(op);
}

static void cf_build_tree(struct op *op)
{
	static const char *const flags[] = { "-z", "-r", "-t", NULL };
	struct commit_files *c = container_of(op, struct commit_files, op);
	struct strbuf rev = STRBUF_INIT;
	const char *args[] = { NULL, NULL };
	struct git_call gc;

	c->root = tree_node_new("", 0, "040000", TN_TREE, "");
	if (!c->parent.len) {
		if (apply_actions(op) < 0)
			return;
		cf_write_next_tree(op);
		return;
	}
	strbuf_addf(&rev, "%s^{tree}", c->parent.buf);
	args[0] = rev.buf;
	op_git_call(op, &gc, "ls-tree");
	gc.flags = flags;
	gc.args = args;
	op_git(op, &gc, NULL, 0, MAX_LS_TREE, cf_tree_listed);
	strbuf_release(&rev);
}

static void cf_write_blobs(struct op *op);

static void cf_blob_written(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	struct action *a = &c->actions[c->next];
	if (status != 0) {
		op_fail(op, GRPC_INTERNAL, "writing blob failed with error code %d", status);
		return;
	}
	op_chomp(out);
	strbuf_add(&a->oid, out->buf, out->len);
	c->next++;
	cf_write_blobs(op);
}

/* Validate the actions in order and write the blobs they bring (upstream's first pass). */
static void cf_write_blobs(struct op *op)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	for (; c->next < c->nr; c->next++) {
		struct action *a = &c->actions[c->next];
		enum index_err ie;
		int write = 0;
		if (a->type < A_CREATE || a->type > A_CHMOD) {
			op_fail(op, GRPC_INVALID_ARGUMENT, "NoMethodError: undefined method `downcase' for %d:Integer",
				a->type);
			return;
		}
		if (validate_path(&a->raw_path, &a->path, &ie) < 0) {
			index_error(op, ie, a->raw_path.buf);
			return;
		}
		switch (a->type) {
		case A_CREATE:
		case A_UPDATE:
			write = 1;
			break;
		case A_MOVE:
			if (validate_path(&a->raw_prev, &a->prev, &ie) < 0) {
				index_error(op, ie, a->raw_prev.buf);
				return;
			}
			write = !a->infer;
			break;
		case A_CREATE_DIR:
			/* the .gitkeep of a new directory */
			write = 1;
			strbuf_reset(&a->content);
			a->base64 = 0;
			break;
		}
		if (write) {
			static const char *const base_flags[] = { "--stdin", "-w", NULL };
			struct strbuf pathflag = STRBUF_INIT, decoded = STRBUF_INIT;
			const char *flags[4];
			const struct strbuf *content = &a->content;
			struct git_call gc;
			size_t bad;
			if (a->base64) {
				if (base64_decode(&a->content, &decoded, &bad) < 0) {
					op_fail(op, GRPC_INTERNAL, "write %s blob: illegal base64 data at input byte %zu",
						a->type == A_UPDATE ? "updated" : "created", bad);
					strbuf_release(&decoded);
					return;
				}
				content = &decoded;
			}
			if (a->type == A_CREATE_DIR)
				strbuf_addf(&pathflag, "--path=%s/.gitkeep", a->path.buf);
			else
				strbuf_addf(&pathflag, "--path=%s", a->path.buf);
			flags[0] = base_flags[0];
			flags[1] = base_flags[1];
			flags[2] = pathflag.buf;
			flags[3] = NULL;
			op_git_call(op, &gc, "hash-object");
			gc.flags = flags;
			op_git(op, &gc, content->buf, content->len, 4096, cf_blob_written);
			strbuf_release(&pathflag);
			strbuf_release(&decoded);
			return;
		}
	}
	cf_build_tree(op);
}

static void cf_parent_checked(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	if (status != 0) {
		op_fail(op, GRPC_INTERNAL, "fetch missing commit: %s: reference not found",
			c->remote ? "fetch parent commit" : "lookup parent commit");
		return;
	}
	c->next = 0;
	cf_write_blobs(op);
}

static void cf_fetched(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	struct strbuf rev = STRBUF_INIT;
	if (status != 0) {
		op_fail(op, GRPC_INTERNAL, "fetch missing commit: fetch parent commit: %s", err->buf);
		return;
	}
	strbuf_addf(&rev, "%s^{commit}", c->parent.buf);
	op_rev_parse(op, rev.buf, cf_parent_checked);
	strbuf_release(&rev);
}

static void cf_parent_lookup(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	static const char *const flags[] = { "--no-tags", "--no-write-fetch-head", "--quiet", NULL };
	const char *args[] = { c->remote_path.buf, c->parent.buf, NULL };
	struct git_call gc;
	if (status == 0 || !c->remote) {
		cf_parent_checked(op, status, out, err);
		return;
	}
	/* the parent lives in the start repository: copy it into the quarantine */
	op_git_call(op, &gc, "fetch");
	gc.flags = flags;
	gc.args = args;
	op_git(op, &gc, NULL, 0, 4096, cf_fetched);
}

static void cf_parent_known(struct op *op)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	struct strbuf rev = STRBUF_INIT;
	if (!c->parent.len || !strcmp(c->parent.buf, c->target.buf)) {
		c->next = 0;
		cf_write_blobs(op);
		return;
	}
	strbuf_addf(&rev, "%s^{commit}", c->parent.buf);
	op_rev_parse(op, rev.buf, cf_parent_lookup);
	strbuf_release(&rev);
}

static void cf_parent_resolved(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	if (status != 0) {
		const char *start = c->h->start_branch_name.len ? (const char *)c->h->start_branch_name.data : NULL;
		struct strbuf q = STRBUF_INIT, refish = STRBUF_INIT;
		if (start)
			strbuf_addf(&refish, "refs/heads/%.*s^{commit}", (int)c->h->start_branch_name.len, start);
		else
			strbuf_addf(&refish, "%s^{commit}", c->ref.buf);
		hooks_quote(&q, refish.buf, refish.len);
		op_fail(op, GRPC_INTERNAL, "resolve parent commit: resolving refish %s in %s: reference not found", q.buf,
			c->remote ? "*remoterepo.Repo" : "*localrepo.Repo");
		strbuf_release(&q);
		strbuf_release(&refish);
		return;
	}
	op_chomp(out);
	strbuf_reset(&c->parent);
	strbuf_add(&c->parent, out->buf, out->len);
	cf_parent_known(op);
}

/* Does the repository the parent comes from have branches at all? */
static void cf_start_branches(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	struct strbuf refish = STRBUF_INIT;
	static const char *const flags[] = { "--verify", NULL };
	const char *args[] = { NULL, NULL };
	struct git_call gc;
	if (status != 0) {
		op_fail(op, GRPC_INTERNAL, "resolve parent commit: has branches: %s", err->buf);
		return;
	}
	if (!out->len) {
		/* creating the first branch: the start repository may be this very repository */
		strbuf_reset(&c->parent);
		strbuf_add(&c->parent, c->target.buf, c->target.len);
		cf_parent_known(op);
		return;
	}
	if (c->h->start_branch_name.len)
		strbuf_addf(&refish, "refs/heads/%.*s^{commit}", (int)c->h->start_branch_name.len,
			    (const char *)c->h->start_branch_name.data);
	else
		strbuf_addf(&refish, "%s^{commit}", c->ref.buf);
	args[0] = refish.buf;
	op_git_call(op, &gc, "rev-parse");
	if (c->remote) {
		gc.git_dir = c->remote_path.buf;
		gc.repo = NULL;
	}
	gc.flags = flags;
	gc.args = args;
	op_git(op, &gc, NULL, 0, 4096, cf_parent_resolved);
	strbuf_release(&refish);
}

static void cf_target_resolved(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	const char *start_sha = c->h->start_sha ? c->h->start_sha : "";
	if (status == 0) {
		op_chomp(out);
		strbuf_add(&c->target, out->buf, out->len);
	}
	if (*start_sha) {
		strbuf_addstr(&c->parent, start_sha);
		cf_parent_known(op);
		return;
	}
	if (!c->remote && !c->h->start_branch_name.len) {
		strbuf_add(&c->parent, c->target.buf, c->target.len);
		cf_parent_known(op);
		return;
	}
	count_branches(op, c->remote ? c->remote_path.buf : NULL, cf_start_branches);
}

static void cf_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct commit_files *c = container_of(op, struct commit_files, op);
	const char *start_sha = c->h->start_sha ? c->h->start_sha : "";
	const Gitaly__Repository *sr = c->h->start_repository;
	struct strbuf e = STRBUF_INIT;

	if (*start_sha && hooks_validate_hex(start_sha, op->hexlen, &e) < 0) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "%s", e.buf);
		strbuf_release(&e);
		return;
	}
	if (sr && !(!strcmp(sr->storage_name ? sr->storage_name : "", c->h->repository->storage_name) &&
		    !strcmp(sr->relative_path ? sr->relative_path : "", c->h->repository->relative_path))) {
		/*
		 * Another repository. One on this node's storages is read
		 * directly; reaching one on another node (through
		 * gitaly-servers) is not supported yet.
		 */
		if (gitaly_locate(op->base.g, sr, 0, &c->remote_path, &e) != GRPC_OK) {
			op_fail(op, GRPC_INTERNAL, "resolve parent commit: remote repository: %s", e.buf);
			strbuf_release(&e);
			return;
		}
		if (strcmp(c->remote_path.buf, op->path.buf))
			c->remote = 1;
	}
	strbuf_release(&e);
	if (op_quarantine(op) < 0)
		return;
	if (op_signature(c->h->user, c->h->timestamp, &c->sig, &e) < 0) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "%s", e.buf);
		strbuf_release(&e);
		return;
	}
	c->have_sig = 1;
	{
		struct strbuf rev = STRBUF_INIT;
		strbuf_addf(&rev, "%s^{commit}", c->ref.buf);
		op_rev_parse(op, rev.buf, cf_target_resolved);
		strbuf_release(&rev);
	}
}

/* --- streaming in --- */

static void cf_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct commit_files *c = grpc_call_user(call);
	struct op *op = &c->op;
	Gitaly__UserCommitFilesRequest *req;

	if (c->done_reading)
		return;
	req = msg_unpack(call, &gitaly__user_commit_files_request__descriptor, msg, len);
	if (!req) {
		c->done_reading = 1;
		return;
	}
	if (!c->first) {
		Gitaly__UserCommitFilesRequestHeader *h;
		c->first = req;
		h = c->h = req->user_commit_files_request_payload_case ==
				   GITALY__USER_COMMIT_FILES_REQUEST__USER_COMMIT_FILES_REQUEST_PAYLOAD_HEADER
			   ? req->header : NULL;
		c->done_reading = 1;
		if (!h) {
			op_fail(op, GRPC_INVALID_ARGUMENT, "empty UserCommitFilesRequestHeader");
			return;
		}
		if (op_locate(op, h->repository) != GRPC_OK)
			return;
		if (!h->user) {
			op_fail(op, GRPC_INVALID_ARGUMENT, "empty User");
			return;
		}
		if (!h->commit_message.len) {
			op_fail(op, GRPC_INVALID_ARGUMENT, "empty CommitMessage");
			return;
		}
		if (!h->branch_name.len) {
			op_fail(op, GRPC_INVALID_ARGUMENT, "empty BranchName");
			return;
		}
		strbuf_add(&c->branch, h->branch_name.data, h->branch_name.len);
		if (memchr(h->branch_name.data, '\0', h->branch_name.len)) {
			op_fail(op, GRPC_FAILED_PRECONDITION, "reference update: invalid reference format");
			return;
		}
		strbuf_addf(&c->ref, "refs/heads/%s", c->branch.buf);
		c->done_reading = 0;
		return;
	}
	if (req->user_commit_files_request_payload_case !=
		    GITALY__USER_COMMIT_FILES_REQUEST__USER_COMMIT_FILES_REQUEST_PAYLOAD_ACTION ||
	    !req->action) {
		op_fail(op, GRPC_INTERNAL, "unhandled action payload type: <nil>");
		c->done_reading = 1;
	} else if (req->action->user_commit_files_action_payload_case ==
		   GITALY__USER_COMMIT_FILES_ACTION__USER_COMMIT_FILES_ACTION_PAYLOAD_HEADER) {
		Gitaly__UserCommitFilesActionHeader *ah = req->action->header;
		struct action *a;
		ALLOC_GROW(c->actions, c->nr + 1, c->alloc);
		a = &c->actions[c->nr++];
		memset(a, 0, sizeof(*a));
		strbuf_init(&a->raw_path, 0);
		strbuf_init(&a->raw_prev, 0);
		strbuf_init(&a->path, 0);
		strbuf_init(&a->prev, 0);
		strbuf_init(&a->content, 0);
		strbuf_init(&a->oid, 0);
		a->type = (int)ah->action;
		a->base64 = ah->base64_content;
		a->exec = ah->execute_filemode;
		a->infer = ah->infer_content;
		strbuf_add(&a->raw_path, ah->file_path.data, ah->file_path.len);
		strbuf_add(&a->raw_prev, ah->previous_path.data, ah->previous_path.len);
	} else if (req->action->user_commit_files_action_payload_case ==
		   GITALY__USER_COMMIT_FILES_ACTION__USER_COMMIT_FILES_ACTION_PAYLOAD_CONTENT) {
		ProtobufCBinaryData *d = &req->action->content;
		if (!c->nr) {
			op_fail(op, GRPC_INTERNAL, "content sent before action");
			c->done_reading = 1;
		} else if (c->content + d->len > MAX_CONTENT) {
			op_fail(op, GRPC_RESOURCE_EXHAUSTED, "file content exceeds %d bytes", MAX_CONTENT);
			c->done_reading = 1;
		} else {
			c->content += d->len;
			strbuf_add(&c->actions[c->nr - 1].content, d->data, d->len);
		}
	} else {
		op_fail(op, GRPC_INTERNAL, "unhandled action payload type: <nil>");
		c->done_reading = 1;
	}
	msg_free(req);
}

static void cf_half_close(struct grpc_call *call)
{
	struct commit_files *c = grpc_call_user(call);
	if (c->done_reading)
		return;
	c->done_reading = 1;
	if (!c->first) {
		op_fail(&c->op, GRPC_INTERNAL, "EOF");
		return;
	}
	op_detect_hash(&c->op, cf_hash_known);
}

static void cf_close(struct grpc_call *call, enum grpc_code code)
{
	struct commit_files *c = grpc_call_user(call);
	op_closed(&c->op);
}

static const struct grpc_call_ops cf_ops = {
	.on_message = cf_message,
	.on_half_close = cf_half_close,
	.on_close = cf_close,
};

static void user_commit_files(struct grpc_call *call, void *data)
{
	struct commit_files *c = xcalloc(1, sizeof(*c));
	strbuf_init(&c->branch, 0);
	strbuf_init(&c->ref, 0);
	strbuf_init(&c->target, 0);
	strbuf_init(&c->parent, 0);
	strbuf_init(&c->commit, 0);
	strbuf_init(&c->old, 0);
	strbuf_init(&c->tree_oid, 0);
	strbuf_init(&c->remote_path, 0);
	op_init(&c->op, data, call, cf_release, 0);
	grpc_call_set_ops(call, &cf_ops, c);
}

void op_register_commit_files(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_method(s, "/gitaly.OperationService/UserCommitFiles", user_commit_files, g);
}

/* OperationService: UserCreateBranch, UserDeleteBranch, UserCreateTag, UserDeleteTag. */
#include "operations/operations.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

/* A bytes field as a C string; refuses NULs, which no reference or revision may contain. */
static int bytes_str(const ProtobufCBinaryData *b, struct strbuf *out)
{
	strbuf_reset(out);
	strbuf_add(out, b->data, b->len);
	return memchr(b->data ? (const void *)b->data : "", '\0', b->len) ? -1 : 0;
}

/* Fill the AccessCheckError / CustomHookError / ReferenceUpdateError of a failed update. */
void op_detail_access_check(const struct op_update_result *r, Gitaly__AccessCheckError *e)
{
	gitaly__access_check_error__init(e);
	e->error_message = r->api_msg.buf;
	e->user_id = r->user_id.buf;
	e->protocol = r->protocol.buf;
	e->changes.data = (uint8_t *)r->changes.buf;
	e->changes.len = r->changes.len;
}

void op_detail_custom_hook(const struct op_update_result *r, Gitaly__CustomHookError *e)
{
	gitaly__custom_hook_error__init(e);
	e->stdout.data = (uint8_t *)r->hook_stdout.buf;
	e->stdout.len = r->hook_stdout.len;
	e->stderr.data = (uint8_t *)r->hook_stderr.buf;
	e->stderr.len = r->hook_stderr.len;
	e->hook_type = (Gitaly__CustomHookError__HookType)r->hook;
}

void op_detail_reference_update(const struct op_update_result *r, Gitaly__ReferenceUpdateError *e)
{
	gitaly__reference_update_error__init(e);
	e->reference_name.data = (uint8_t *)r->ref;
	e->reference_name.len = strlen(r->ref);
	e->old_oid = (char *)r->old_oid;
	e->new_oid = (char *)r->new_oid;
}

int op_fail_update(struct op *op, const struct op_update_result *r, const ProtobufCMessageDescriptor *desc,
		   const char *msg)
{
	Gitaly__AccessCheckError ac;
	Gitaly__CustomHookError ch;
	Gitaly__ReferenceUpdateError ru;
	const ProtobufCFieldDescriptor *f;
	const ProtobufCMessage *sub;
	enum grpc_code code = GRPC_PERMISSION_DENIED;
	ProtobufCMessage *e;

	switch (r->fail) {
	case UPD_NOT_ALLOWED:
		op_detail_access_check(r, &ac);
		f = protobuf_c_message_descriptor_get_field_by_name(desc, "access_check");
		sub = &ac.base;
		break;
	case UPD_CUSTOM_HOOK:
		op_detail_custom_hook(r, &ch);
		f = protobuf_c_message_descriptor_get_field_by_name(desc, "custom_hook");
		sub = &ch.base;
		break;
	case UPD_REF:
		op_detail_reference_update(r, &ru);
		f = protobuf_c_message_descriptor_get_field_by_name(desc, "reference_update");
		sub = &ru.base;
		code = GRPC_FAILED_PRECONDITION;
		break;
	default:
		return -1;
	}
	if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE || !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
		return -1;
	/* the message, its oneof's case and its member, all set the way generated code reads them */
	e = xcalloc(1, desc->sizeof_message);
	protobuf_c_message_init(desc, e);
	*(uint32_t *)((char *)e + f->quantifier_offset) = f->id;
	*(const ProtobufCMessage **)((char *)e + f->offset) = sub;
	op_fail_detail(op, code, msg, e);
	free(e);
	return 0;
}

/* Upstream returns the other failures unwrapped: INTERNAL unless they carry a code. */
static void fail_plain(struct op *op, const struct op_update_result *r, const char *prefix)
{
	enum grpc_code code = r->fail == UPD_OTHER && r->code ? r->code : GRPC_INTERNAL;
	if (r->fail == UPD_REF)
		code = GRPC_FAILED_PRECONDITION;
	op_fail(op, code, "%s%s", prefix, r->msg.buf);
}

/* ======================= UserCreateBranch ======================= */

struct create_branch {
	struct op op;
	Gitaly__UserCreateBranchRequest *req;
	struct strbuf name, start, ref;
	Gitaly__GitCommit *commit;
};

static void create_branch_release(struct op *op)
{
	struct create_branch *c = container_of(op, struct create_branch, op);
	msg_free(c->req);
	strbuf_release(&c->name);
	strbuf_release(&c->start);
	strbuf_release(&c->ref);
	if (c->commit)
		protobuf_c_message_free_unpacked(&c->commit->base, NULL);
	free(c);
}

static void create_branch_updated(struct op *op, const struct op_update_result *r)
{
	struct create_branch *c = container_of(op, struct create_branch, op);
	if (r->fail == UPD_OK) {
		Gitaly__UserCreateBranchResponse resp = GITALY__USER_CREATE_BRANCH_RESPONSE__INIT;
		Gitaly__Branch b = GITALY__BRANCH__INIT;
		b.name = c->req->branch_name;
		b.target_commit = c->commit;
		resp.branch = &b;
		msg_reply(op->base.call, &resp);
	} else if (r->fail == UPD_CUSTOM_HOOK) {
		/* the hook's output is in the detail; the message stays short */
		op_fail_update(op, r, &gitaly__user_create_branch_error__descriptor, "creation denied by custom hooks");
	} else {
		fail_plain(op, r, "");
	}
}

static void create_branch_commit(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct create_branch *c = container_of(op, struct create_branch, op);
	const char *oid, *type, *data;
	size_t oidlen, typelen, len;
	if (status != 0 || op_parse_batch(out, &oid, &oidlen, &type, &typelen, &data, &len) < 0 ||
	    typelen != 6 || memcmp(type, "commit", 6)) {
		op_fail(op, GRPC_FAILED_PRECONDITION, "revspec '%s' not found", c->start.buf);
		return;
	}
	op->hexlen = oidlen;
	c->commit = op_parse_commit(oid, oidlen, data, len);
	strbuf_addf(&c->ref, "refs/heads/%s", c->name.buf);
	op_update_ref(op, c->req->user, c->ref.buf, c->commit->id, op_zero_oid(op), create_branch_updated);
}

static void user_create_branch(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct create_branch *c = xcalloc(1, sizeof(*c));
	struct strbuf rev = STRBUF_INIT;
	strbuf_init(&c->name, 0);
	strbuf_init(&c->start, 0);
	strbuf_init(&c->ref, 0);
	op_init(&c->op, data, call, create_branch_release, 1);
	c->req = msg_unpack(call, &gitaly__user_create_branch_request__descriptor, buf, len);
	if (!c->req)
		return;
	if (op_locate(&c->op, c->req->repository) != GRPC_OK)
		return;
	if (!c->req->branch_name.len) {
		op_fail(&c->op, GRPC_INVALID_ARGUMENT, "empty branch name");
		return;
	}
	if (!c->req->user) {
		op_fail(&c->op, GRPC_INVALID_ARGUMENT, "empty user");
		return;
	}
	if (!c->req->start_point.len) {
		op_fail(&c->op, GRPC_INVALID_ARGUMENT, "empty start point");
		return;
	}
	if (bytes_str(&c->req->branch_name, &c->name) < 0) {
		op_fail(&c->op, GRPC_FAILED_PRECONDITION, "reference update: invalid reference format");
		return;
	}
	if (bytes_str(&c->req->start_point, &c->start) < 0) {
		op_fail(&c->op, GRPC_FAILED_PRECONDITION, "revspec '%s' not found", c->start.buf);
		return;
	}
	if (op_quarantine(&c->op) < 0)
		return;
	strbuf_addf(&rev, "%s^{commit}", c->start.buf);
	op_read_object(&c->op, rev.buf, create_branch_commit);
	strbuf_release(&rev);
}

/* ======================= UserDeleteBranch / UserDeleteTag ======================= */

struct delete_ref {
	struct op op;
	int tag;                            /* UserDeleteTag */
	const Gitaly__User *user;
	const char *expected_old;
	ProtobufCMessage *req;
	struct strbuf name, ref, old;
};

static void delete_ref_release(struct op *op)
{
	struct delete_ref *d = container_of(op, struct delete_ref, op);
	msg_free(d->req);
	strbuf_release(&d->name);
	strbuf_release(&d->ref);
	strbuf_release(&d->old);
	free(d);
}

static void delete_branch_updated(struct op *op, const struct op_update_result *r)
{
	struct strbuf msg = STRBUF_INIT;

	switch (r->fail) {
	case UPD_OK: {
		Gitaly__UserDeleteBranchResponse resp = GITALY__USER_DELETE_BRANCH_RESPONSE__INIT;
		msg_reply(op->base.call, &resp);
		return;
	}
	case UPD_NOT_ALLOWED:
		strbuf_addf(&msg, "deletion denied by access checks: %s", r->msg.buf);
		break;
	case UPD_CUSTOM_HOOK:
		strbuf_addf(&msg, "deletion denied by custom hooks: %s", r->msg.buf);
		break;
	case UPD_REF:
		strbuf_addf(&msg, "reference update failed: %s", r->msg.buf);
		break;
	default:
		break;
	}
	if (op_fail_update(op, r, &gitaly__user_delete_branch_error__descriptor, msg.buf) < 0)
		op_fail(op, r->code && r->code != GRPC_PERMISSION_DENIED ? r->code : GRPC_INTERNAL,
			"deleting reference: %s", r->msg.buf);
	strbuf_release(&msg);
}

static void delete_tag_updated(struct op *op, const struct op_update_result *r)
{
	Gitaly__UserDeleteTagResponse resp = GITALY__USER_DELETE_TAG_RESPONSE__INIT;
	switch (r->fail) {
	case UPD_OK:
		msg_reply(op->base.call, &resp);
		break;
	case UPD_CUSTOM_HOOK:
		/* a remnant of the old API: the refusal travels in a successful response */
		resp.pre_receive_error = r->hook_error.buf;
		msg_reply(op->base.call, &resp);
		break;
	case UPD_REF:
		op_fail(op, GRPC_FAILED_PRECONDITION, "%s", r->msg.buf);
		break;
	default:
		op_fail(op, r->fail == UPD_OTHER && r->code ? r->code : GRPC_INTERNAL, "%s", r->msg.buf);
	}
}

static void delete_resolved(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct delete_ref *d = container_of(op, struct delete_ref, op);
	if (status != 0) {
		if (*d->expected_old)
			op_fail(op, GRPC_INVALID_ARGUMENT, "cannot resolve expected old object ID: reference not found");
		else if (d->tag)
			op_fail(op, GRPC_FAILED_PRECONDITION, "tag not found: %s", d->name.buf);
		else {
			struct strbuf q = STRBUF_INIT;
			hooks_quote(&q, d->name.buf, d->name.len);
			op_fail(op, GRPC_FAILED_PRECONDITION, "branch not found: %s", q.buf);
			strbuf_release(&q);
		}
		return;
	}
	op_chomp(out);
	strbuf_add(&d->old, out->buf, out->len);
	op_update_ref(op, d->user, d->ref.buf, op_zero_oid(op), d->old.buf,
		      d->tag ? delete_tag_updated : delete_branch_updated);
}

static void delete_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct delete_ref *d = container_of(op, struct delete_ref, op);
	struct strbuf rev = STRBUF_INIT;
	if (*d->expected_old) {
		if (op_check_expected_old(op, d->expected_old) < 0)
			return;
		strbuf_addf(&rev, "%s^{object}", d->expected_old);
	} else {
		strbuf_add(&rev, d->ref.buf, d->ref.len);
	}
	op_rev_parse(op, rev.buf, delete_resolved);
	strbuf_release(&rev);
}

static struct delete_ref *delete_new(struct grpc_call *call, void *data, int tag)
{
	struct delete_ref *d = xcalloc(1, sizeof(*d));
	d->tag = tag;
	strbuf_init(&d->name, 0);
	strbuf_init(&d->ref, 0);
	strbuf_init(&d->old, 0);
	op_init(&d->op, data, call, delete_ref_release, 1);
	return d;
}

/*
 * What UserDeleteBranch and UserDeleteTag share after decoding: validation
 * (each RPC words its errors its own way) and the deletion itself.
 */
static void delete_start(struct delete_ref *d, ProtobufCMessage *req, const Gitaly__Repository *repo,
			 const ProtobufCBinaryData *name, const Gitaly__User *user, const char *expected_old)
{
	d->req = req;
	if (op_locate(&d->op, repo) != GRPC_OK)
		return;
	if (!name->len) {
		op_fail(&d->op, GRPC_INVALID_ARGUMENT, d->tag ? "empty tag name" : "bad request: empty branch name");
		return;
	}
	if (!user) {
		op_fail(&d->op, GRPC_INVALID_ARGUMENT, d->tag ? "empty user" : "bad request: empty user");
		return;
	}
	d->user = user;
	d->expected_old = expected_old ? expected_old : "";
	if (bytes_str(name, &d->name) < 0) {
		op_fail(&d->op, GRPC_FAILED_PRECONDITION, d->tag ? "tag not found: %s" : "branch not found: \"%s\"",
			d->name.buf);
		return;
	}
	strbuf_addf(&d->ref, "refs/%s/%s", d->tag ? "tags" : "heads", d->name.buf);
	op_detect_hash(&d->op, delete_hash_known);
}

static void user_delete_branch(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct delete_ref *d = delete_new(call, data, 0);
	Gitaly__UserDeleteBranchRequest *req = msg_unpack(call, &gitaly__user_delete_branch_request__descriptor,
							  buf, len);
	if (req)
		delete_start(d, &req->base, req->repository, &req->branch_name, req->user, req->expected_old_oid);
}

static void user_delete_tag(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct delete_ref *d = delete_new(call, data, 1);
	Gitaly__UserDeleteTagRequest *req = msg_unpack(call, &gitaly__user_delete_tag_request__descriptor, buf, len);
	if (req)
		delete_start(d, &req->base, req->repository, &req->tag_name, req->user, req->expected_old_oid);
}

/* ======================= UserCreateTag ======================= */

struct create_tag {
	struct op op;
	Gitaly__UserCreateTagRequest *req;
	struct strbuf name, target, ref;
	struct op_signature sig;
	int have_sig;
	int annotated;                  /* the message has a non-space character */
	struct strbuf target_oid, target_type;    /* what the tag (or reference) points to */
	struct strbuf peeled_oid, peeled_type;
	struct strbuf ref_oid;                    /* the new reference value */
	Gitaly__Tag tag;
	Gitaly__GitCommit *commit;
	struct strbuf tag_message;
};

static void create_tag_release(struct op *op)
{
	struct create_tag *t = container_of(op, struct create_tag, op);
	msg_free(t->req);
	strbuf_release(&t->name);
	strbuf_release(&t->target);
	strbuf_release(&t->ref);
	if (t->have_sig)
		op_signature_release(&t->sig);
	strbuf_release(&t->target_oid);
	strbuf_release(&t->target_type);
	strbuf_release(&t->peeled_oid);
	strbuf_release(&t->peeled_type);
	strbuf_release(&t->ref_oid);
	strbuf_release(&t->tag_message);
	if (t->commit)
		protobuf_c_message_free_unpacked(&t->commit->base, NULL);
	free(t);
}

static void create_tag_updated(struct op *op, const struct op_update_result *r)
{
	struct create_tag *t = container_of(op, struct create_tag, op);
	struct strbuf msg = STRBUF_INIT;

	switch (r->fail) {
	case UPD_OK: {
		Gitaly__UserCreateTagResponse resp = GITALY__USER_CREATE_TAG_RESPONSE__INIT;
		resp.tag = &t->tag;
		msg_reply(op->base.call, &resp);
		return;
	}
	case UPD_NOT_ALLOWED:
		strbuf_addf(&msg, "reference update denied by access checks: %s", r->msg.buf);
		break;
	case UPD_CUSTOM_HOOK:
		strbuf_addstr(&msg, "reference update denied by custom hooks");
		break;
	case UPD_REF:
		strbuf_addf(&msg, "reference update failed: %s", r->msg.buf);
		break;
	default:
		break;
	}
	if (op_fail_update(op, r, &gitaly__user_create_tag_error__descriptor, msg.buf) < 0)
		op_fail(op, r->code && r->code != GRPC_PERMISSION_DENIED ? r->code : GRPC_INTERNAL,
			"updating reference: %s", r->msg.buf);
	strbuf_release(&msg);
}

static void create_tag_ref_checked(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct create_tag *t = container_of(op, struct create_tag, op);
	if (status == 0) {
		/* the tag exists: tell the caller what it points to instead of overwriting it */
		Gitaly__UserCreateTagError e = GITALY__USER_CREATE_TAG_ERROR__INIT;
		Gitaly__ReferenceExistsError re = GITALY__REFERENCE_EXISTS_ERROR__INIT;
		op_chomp(out);
		re.reference_name.data = (uint8_t *)t->ref.buf;
		re.reference_name.len = t->ref.len;
		re.oid = out->buf;
		e.error_case = GITALY__USER_CREATE_TAG_ERROR__ERROR_REFERENCE_EXISTS;
		e.reference_exists = &re;
		op_fail_detail(op, GRPC_ALREADY_EXISTS, "tag reference exists already", &e.base);
		return;
	}
	op_update_ref(op, t->req->user, t->ref.buf, t->ref_oid.buf, op_zero_oid(op), create_tag_updated);
}

static void create_tag_check_ref(struct op *op)
{
	struct create_tag *t = container_of(op, struct create_tag, op);
	t->tag.target_commit = t->commit;
	op_rev_parse(op, t->ref.buf, create_tag_ref_checked);
}

static void create_tag_commit(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct create_tag *t = container_of(op, struct create_tag, op);
	const char *oid, *type, *data;
	size_t oidlen, typelen, len;
	if (status != 0 || op_parse_batch(out, &oid, &oidlen, &type, &typelen, &data, &len) < 0) {
		op_fail(op, GRPC_INTERNAL, "getting commit: %s", err->buf);
		return;
	}
	t->commit = op_parse_commit(oid, oidlen, data, len);
	create_tag_check_ref(op);
}

/* The tag object or the plain target is known: add the commit it leads to, if any. */
static void create_tag_target_known(struct op *op)
{
	struct create_tag *t = container_of(op, struct create_tag, op);
	if (!strcmp(t->peeled_type.buf, "commit")) {
		op_read_object(op, t->peeled_oid.buf, create_tag_commit);
		return;
	}
	create_tag_check_ref(op);
}

static void create_tag_read_back(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct create_tag *t = container_of(op, struct create_tag, op);
	const char *oid, *type, *data, *sep;
	size_t oidlen, typelen, len;
	if (status != 0 || op_parse_batch(out, &oid, &oidlen, &type, &typelen, &data, &len) < 0) {
		op_fail(op, GRPC_INTERNAL, "getting tag: %s", err->buf);
		return;
	}
	/* the message is everything after the header's blank line */
	sep = len >= 2 ? memmem(data, len, "\n\n", 2) : NULL;
	if (sep) {
		size_t off = (size_t)(sep + 2 - data);
		strbuf_add(&t->tag_message, data + off, len - off);
		t->tag.message.data = (uint8_t *)t->tag_message.buf;
		t->tag.message.len = t->tag_message.len;
		t->tag.message_size = (int64_t)t->tag_message.len;
	}
	create_tag_target_known(op);
}

static void create_tag_written(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct create_tag *t = container_of(op, struct create_tag, op);
	if (status != 0) {
		op_fail(op, GRPC_NOT_FOUND,
			"Gitlab::Git::CommitError: Could not update refs/tags/%s. Please refresh and try again.",
			t->name.buf);
		return;
	}
	op_chomp(out);
	strbuf_reset(&t->ref_oid);
	strbuf_add(&t->ref_oid, out->buf, out->len);
	t->tag.id = t->ref_oid.buf;
	op_read_object(op, t->ref_oid.buf, create_tag_read_back);
}

static void create_tag_make(struct op *op)
{
	struct create_tag *t = container_of(op, struct create_tag, op);
	struct strbuf obj = STRBUF_INIT;
	struct git_call gc;
	size_t lines = 0;

	t->tag.name = t->req->tag_name;
	if (!t->annotated) {
		strbuf_add(&t->ref_oid, t->target_oid.buf, t->target_oid.len);
		t->tag.id = t->peeled_oid.buf;
		create_tag_target_known(op);
		return;
	}
	strbuf_addf(&obj, "object %s\ntype %s\ntag %s\ntagger %s <%s> ", t->target_oid.buf, t->target_type.buf,
		    t->name.buf, t->sig.name.buf, t->sig.email.buf);
	op_signature_date(&t->sig, &obj);
	strbuf_addch(&obj, '\n');
	for (size_t i = 0; i < obj.len; i++)
		lines += obj.buf[i] == '\n';
	if (lines != 4) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "formatting tag: should have 4 tag header lines, got %zu", lines);
		strbuf_release(&obj);
		return;
	}
	strbuf_addch(&obj, '\n');
	strbuf_add(&obj, t->req->message.data, t->req->message.len);
	op_git_call(op, &gc, "mktag");
	op_git(op, &gc, obj.buf, obj.len, 4096, create_tag_written);
	strbuf_release(&obj);
}

static void create_tag_peeled(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct create_tag *t = container_of(op, struct create_tag, op);
	const char *sp1, *sp2;
	if (status != 0 || !(sp1 = strchr(out->buf, ' ')) || !(sp2 = strchr(sp1 + 1, ' ')) ||
	    !strcmp(sp1 + 1, "missing\n")) {
		op_fail(op, GRPC_INTERNAL, "reading object info: %s", err->buf);
		return;
	}
	strbuf_reset(&t->peeled_oid);
	strbuf_add(&t->peeled_oid, out->buf, (size_t)(sp1 - out->buf));
	strbuf_reset(&t->peeled_type);
	strbuf_add(&t->peeled_type, sp1 + 1, (size_t)(sp2 - sp1 - 1));
	if (!t->annotated) {
		/* a lightweight tag of a tag points where the tag leads */
		strbuf_reset(&t->target_oid);
		strbuf_add(&t->target_oid, t->peeled_oid.buf, t->peeled_oid.len);
	}
	create_tag_make(op);
}

static void create_tag_target_info(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct create_tag *t = container_of(op, struct create_tag, op);
	const char *sp1, *sp2;
	if (status != 0 || !(sp1 = strchr(out->buf, ' ')) || !(sp2 = strchr(sp1 + 1, ' '))) {
		op_fail(op, GRPC_FAILED_PRECONDITION, "revspec '%s' not found", t->target.buf);
		return;
	}
	op->hexlen = (size_t)(sp1 - out->buf);
	strbuf_add(&t->target_oid, out->buf, (size_t)(sp1 - out->buf));
	strbuf_add(&t->target_type, sp1 + 1, (size_t)(sp2 - sp1 - 1));
	strbuf_add(&t->peeled_oid, t->target_oid.buf, t->target_oid.len);
	strbuf_add(&t->peeled_type, t->target_type.buf, t->target_type.len);
	if (!strcmp(t->target_type.buf, "tag")) {
		struct strbuf rev = STRBUF_INIT;
		strbuf_addf(&rev, "%s^{}", t->target.buf);
		op_object_info(op, rev.buf, create_tag_peeled);
		strbuf_release(&rev);
		return;
	}
	create_tag_make(op);
}

/* Go's regexp \S: anything but ASCII space, \t, \n, \f, \r */
static int has_non_space(const ProtobufCBinaryData *m)
{
	for (size_t i = 0; i < m->len; i++)
		if (!strchr(" \t\n\f\r", m->data[i]) || !m->data[i])
			return 1;
	return 0;
}

static void user_create_tag(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct create_tag *t = xcalloc(1, sizeof(*t));
	struct strbuf err = STRBUF_INIT;
	Gitaly__UserCreateTagRequest *req;

	strbuf_init(&t->name, 0);
	strbuf_init(&t->target, 0);
	strbuf_init(&t->ref, 0);
	strbuf_init(&t->target_oid, 0);
	strbuf_init(&t->target_type, 0);
	strbuf_init(&t->peeled_oid, 0);
	strbuf_init(&t->peeled_type, 0);
	strbuf_init(&t->ref_oid, 0);
	strbuf_init(&t->tag_message, 0);
	gitaly__tag__init(&t->tag);
	op_init(&t->op, data, call, create_tag_release, 1);
	req = t->req = msg_unpack(call, &gitaly__user_create_tag_request__descriptor, buf, len);
	if (!req)
		return;
	if (!req->tag_name.len) {
		op_fail(&t->op, GRPC_INVALID_ARGUMENT, "empty tag name");
		return;
	}
	if (gitaly_check_revision((const char *)req->tag_name.data, req->tag_name.len, &err) < 0) {
		op_fail(&t->op, GRPC_INVALID_ARGUMENT, "invalid tag name: %s", err.buf);
		strbuf_release(&err);
		return;
	}
	if (!req->user) {
		op_fail(&t->op, GRPC_INVALID_ARGUMENT, "empty user");
		return;
	}
	if (!req->target_revision.len) {
		op_fail(&t->op, GRPC_INVALID_ARGUMENT, "empty target revision");
		return;
	}
	if (req->message.len && memchr(req->message.data, '\0', req->message.len)) {
		op_fail(&t->op, GRPC_INVALID_ARGUMENT, "tag message contains NUL byte");
		return;
	}
	if (op_locate(&t->op, req->repository) != GRPC_OK)
		return;
	if (op_signature(req->user, req->timestamp, &t->sig, &err) < 0) {
		t->have_sig = 1;
		op_fail(&t->op, GRPC_INVALID_ARGUMENT, "%s", err.buf);
		strbuf_release(&err);
		return;
	}
	t->have_sig = 1;
	bytes_str(&req->tag_name, &t->name);   /* NUL-free: checked as a revision above */
	if (bytes_str(&req->target_revision, &t->target) < 0) {
		op_fail(&t->op, GRPC_FAILED_PRECONDITION, "revspec '%s' not found", t->target.buf);
		return;
	}
	strbuf_addf(&t->ref, "refs/tags/%s", t->name.buf);
	t->annotated = has_non_space(&req->message);
	if (op_quarantine(&t->op) < 0)
		return;
	op_object_info(&t->op, t->target.buf, create_tag_target_info);
}

void gitaly_register_operations(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.OperationService/UserCreateBranch", user_create_branch, g);
	gitaly_add_unary(s, "/gitaly.OperationService/UserDeleteBranch", user_delete_branch, g);
	gitaly_add_unary(s, "/gitaly.OperationService/UserCreateTag", user_create_tag, g);
	gitaly_add_unary(s, "/gitaly.OperationService/UserDeleteTag", user_delete_tag, g);
	op_register_commit_files(g, s);
	op_register_merge(g, s);
	op_register_squash(g, s);
	op_register_cherry_pick(g, s);
	op_register_rebase(g, s);
}

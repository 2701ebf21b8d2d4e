/* RefService tag reads: FindTag, FindAllTags. */
#include "read/ref.h"
#include "base/util.h"
#include "errors.pb-c.h"
#include "ref.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
		rd_finish_detail(rd, GRPC_NOT_FOUND, "tag does not exist", &e.base);
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

void ref_find_tag(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindTagRequest *req = msg_unpack(call, &gitaly__find_tag_request__descriptor, buf, len);
	static const char *const flags[] = { "-l", "--format=%(objectname) %(objecttype) %(refname:lstrip=2)", NULL };
	struct ref_ctx *x;

	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, REF_KIND_OTHER);
	if (!x)
		return;
	if (!req->tag_name.len) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "tag name is empty");
		return;
	}
	if (ref_check_bytes(x, &req->tag_name, "tag name") < 0)
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
	if (!ref_past_token(x, f[2], (size_t)(end - f[2])))
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
		ref_flush_batch(x);
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
	.on_end = ref_listing_end,
	.free_item = tag_item_free,
};

static void tags_leased(struct rd *rd)
{
	ref_start_listing(rd, &tags_ops);
}

void ref_find_all_tags(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindAllTagsRequest *req = msg_unpack(call, &gitaly__find_all_tags_request__descriptor, buf, len);
	static const char *const keys[] = { "refname", "creatordate", "version:refname" };
	struct ref_ctx *x;

	if (!req)
		return;
	x = ref_start(data, call, req, req->repository, REF_KIND_ALL_TAGS);
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
	ref_set_pagination(x, req->pagination_params);
	if (ref_empty_page(x, GRPC_INVALID_ARGUMENT))
		return;
	rd_lease(&x->rd, tags_leased);
}

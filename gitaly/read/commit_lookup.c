/*
 * CommitService lookups of commits named in the request: ListCommitsByOid,
 * ListCommitsByRefName, GetCommitMessages (docs/technical/gitaly-reads.md,
 * "Lookups by name"). No git process per call: every name becomes a read
 * on the leased cat-file process, at most CATFILE_WINDOW in flight, and no
 * new read is queued while the call's send queue is full.
 */
#include "read/read.h"
#include "base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct lookup;
struct lookup_ops {
	/* The i-th name and its length. */
	const char *(*name)(struct lookup *x, size_t i, size_t *len);
	/* The i-th read finished (in request order). */
	void (*on_object)(struct lookup *x, size_t i, int status, const struct catfile_info *info,
			  struct strbuf *data);
	/* Every read done. */
	void (*on_end)(struct lookup *x);
};

struct lookup {
	struct rd rd;
	const struct lookup_ops *ops;
	size_t n, issued, done;
	int waiting;                 /* stopped on a full send queue, resumed from on_writable */
	Gitaly__GitCommit **batch;   /* items waiting for their message (CommitForRef for by-ref-name) */
	size_t nbatch, alloc, bytes;
};

static void lookup_pump(struct lookup *x);

static void lookup_read(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct lookup *x = arg;
	size_t i = x->done++;
	x->ops->on_object(x, i, status, info, data);
	if (!x->rd.base.call)
		return;
	if (x->done == x->n) {
		x->ops->on_end(x);
		return;
	}
	lookup_pump(x);
}

/* A name with a NUL would end cat-file's request early: it is answered as missing, in its turn. */
static int lookup_skip_nul(struct lookup *x)
{
	x->issued++;
	x->done++;
	x->ops->on_object(x, x->done - 1, CATFILE_MISSING, NULL, NULL);
	if (x->rd.base.call && x->done == x->n)
		x->ops->on_end(x);
	return x->rd.base.call != NULL;
}

static void lookup_pump(struct lookup *x)
{
	struct strbuf rev = STRBUF_INIT;
	while (x->rd.base.call && x->issued < x->n && x->issued - x->done < CATFILE_WINDOW) {
		size_t len;
		const char *name;
		if (rd_full(&x->rd)) {
			x->waiting = 1;
			break;
		}
		name = x->ops->name(x, x->issued, &len);
		if (rd_has_nul(name, len)) {
			if (x->issued != x->done)
				break;   /* resumed when the reads ahead of it are answered */
			if (!lookup_skip_nul(x))
				break;
			continue;
		}
		strbuf_reset(&rev);
		strbuf_add(&rev, name, len);
		/* catfile.GetCommit peels: a tag's name answers its commit */
		strbuf_addstr(&rev, "^{commit}");
		if (!x->rd.cf || catfile_read(x->rd.cf, rev.buf, rev.len, 64u << 20, lookup_read, x) < 0) {
			rd_finish(&x->rd, GRPC_INTERNAL, "reading commit: object reader failed");
			break;
		}
		x->issued++;
	}
	strbuf_release(&rev);
}

static void lookup_writable(struct rd *rd)
{
	struct lookup *x = (struct lookup *)rd;
	if (x->waiting) {
		x->waiting = 0;
		lookup_pump(x);
	}
}

static void lookup_free(struct rd *rd)
{
	struct lookup *x = (struct lookup *)rd;
	for (size_t i = 0; i < x->nbatch; i++)
		gitaly_commit_free(x->batch[i]);
	free(x->batch);
}

static void lookup_leased(struct rd *rd)
{
	struct lookup *x = (struct lookup *)rd;
	if (!x->n) {
		x->ops->on_end(x);
		return;
	}
	lookup_pump(x);
}

static struct lookup *lookup_start(struct gitaly *g, struct grpc_call *call, size_t size, void *req,
				   const Gitaly__Repository *repo, const struct lookup_ops *ops, size_t n)
{
	struct lookup *x = (struct lookup *)rd_start(g, call, size, req, repo);
	if (!x)
		return NULL;
	x->ops = ops;
	x->n = n;
	x->rd.on_writable = lookup_writable;
	x->rd.on_free = lookup_free;
	return x;
}

/* Queue a packed item of `sz` bytes; `flush` sends the batch (upstream's 1 MiB chunker). */
static void batch_add(struct lookup *x, void *item, size_t sz, void (*flush)(struct lookup *x))
{
	if (x->nbatch && x->bytes + sz >= BATCH_BYTES)
		flush(x);
	ALLOC_GROW(x->batch, x->nbatch + 1, x->alloc);
	x->batch[x->nbatch++] = item;
	x->bytes += sz;
}

/* --- ListCommitsByOid --- */

static const char *by_oid_name(struct lookup *x, size_t i, size_t *len)
{
	const Gitaly__ListCommitsByOidRequest *req = x->rd.req;
	const char *s = req->oid[i] ? req->oid[i] : "";
	*len = strlen(s);
	return s;
}

static void by_oid_flush(struct lookup *x)
{
	Gitaly__ListCommitsByOidResponse resp = GITALY__LIST_COMMITS_BY_OID_RESPONSE__INIT;
	if (!x->nbatch)
		return;
	resp.commits = x->batch;
	resp.n_commits = x->nbatch;
	rd_send(&x->rd, &resp);
	for (size_t i = 0; i < x->nbatch; i++)
		gitaly_commit_free(x->batch[i]);
	x->nbatch = 0;
	x->bytes = 0;
}

static int commit_status(struct lookup *x, int status, const struct catfile_info *info)
{
	if (status == CATFILE_MISSING)
		return 1;   /* unknown names are skipped */
	if (status < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "reading commit: %s", strerror(-status));
		return -1;
	}
	(void)info;
	return 0;
}

static void by_oid_object(struct lookup *x, size_t i, int status, const struct catfile_info *info,
			  struct strbuf *data)
{
	Gitaly__GitCommit *c;
	(void)i;
	if (commit_status(x, status, info))
		return;
	c = gitaly_commit_parse(info->oid, data->buf, data->len);
	batch_add(x, c, protobuf_c_message_get_packed_size(&c->base), by_oid_flush);
}

static void by_oid_end(struct lookup *x)
{
	by_oid_flush(x);
	rd_ok(&x->rd);
}

static const struct lookup_ops by_oid_ops = { by_oid_name, by_oid_object, by_oid_end };

static void list_commits_by_oid(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__ListCommitsByOidRequest *req = msg_unpack(call, &gitaly__list_commits_by_oid_request__descriptor, buf, len);
	struct lookup *x;
	if (!req)
		return;
	x = lookup_start(data, call, sizeof(*x), req, req->repository, &by_oid_ops, req->n_oid);
	if (x)
		rd_lease(&x->rd, lookup_leased);
}

/* --- ListCommitsByRefName --- */

static const char *by_ref_name(struct lookup *x, size_t i, size_t *len)
{
	const Gitaly__ListCommitsByRefNameRequest *req = x->rd.req;
	*len = req->ref_names[i].len;
	return (const char *)req->ref_names[i].data;
}

static void by_ref_flush(struct lookup *x)
{
	Gitaly__ListCommitsByRefNameResponse resp = GITALY__LIST_COMMITS_BY_REF_NAME_RESPONSE__INIT;
	Gitaly__ListCommitsByRefNameResponse__CommitForRef **refs = (void *)x->batch;
	if (!x->nbatch)
		return;
	resp.commit_refs = refs;
	resp.n_commit_refs = x->nbatch;
	rd_send(&x->rd, &resp);
	for (size_t i = 0; i < x->nbatch; i++) {
		gitaly_commit_free(refs[i]->commit);
		free(refs[i]);
	}
	x->nbatch = 0;
	x->bytes = 0;
}

static void by_ref_free(struct rd *rd)
{
	struct lookup *x = (struct lookup *)rd;
	Gitaly__ListCommitsByRefNameResponse__CommitForRef **refs = (void *)x->batch;
	for (size_t i = 0; i < x->nbatch; i++) {
		gitaly_commit_free(refs[i]->commit);
		free(refs[i]);
	}
	free(x->batch);
}

static void by_ref_object(struct lookup *x, size_t i, int status, const struct catfile_info *info,
			  struct strbuf *data)
{
	const Gitaly__ListCommitsByRefNameRequest *req = x->rd.req;
	Gitaly__ListCommitsByRefNameResponse__CommitForRef *e;
	if (commit_status(x, status, info))
		return;
	e = xcalloc(1, sizeof(*e));
	gitaly__list_commits_by_ref_name_response__commit_for_ref__init(e);
	e->commit = gitaly_commit_parse(info->oid, data->buf, data->len);
	e->ref_name = req->ref_names[i];   /* borrowed from the request */
	batch_add(x, e, protobuf_c_message_get_packed_size(&e->base), by_ref_flush);
}

static void by_ref_end(struct lookup *x)
{
	by_ref_flush(x);
	rd_ok(&x->rd);
}

static const struct lookup_ops by_ref_ops = { by_ref_name, by_ref_object, by_ref_end };

static void list_commits_by_ref_name(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__ListCommitsByRefNameRequest *req =
		msg_unpack(call, &gitaly__list_commits_by_ref_name_request__descriptor, buf, len);
	struct lookup *x;
	if (!req)
		return;
	x = lookup_start(data, call, sizeof(*x), req, req->repository, &by_ref_ops, req->n_ref_names);
	if (!x)
		return;
	x->rd.on_free = by_ref_free;
	rd_lease(&x->rd, lookup_leased);
}

/* --- GetCommitMessages --- */

static const char *messages_name(struct lookup *x, size_t i, size_t *len)
{
	const Gitaly__GetCommitMessagesRequest *req = x->rd.req;
	const char *s = req->commit_ids[i] ? req->commit_ids[i] : "";
	*len = strlen(s);
	return s;
}

/* The message of a raw commit: everything after the first blank line. */
static void messages_object(struct lookup *x, size_t i, int status, const struct catfile_info *info,
			    struct strbuf *data)
{
	const Gitaly__GetCommitMessagesRequest *req = x->rd.req;
	Gitaly__GetCommitMessagesResponse resp = GITALY__GET_COMMIT_MESSAGES_RESPONSE__INIT;
	const char *body = NULL;
	size_t blen = 0;
	(void)info;
	if (status == CATFILE_MISSING) {
		rd_finish(&x->rd, GRPC_INTERNAL, "failed to get commit message: object not found");
		return;
	}
	if (status < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "failed to get commit message: %s", strerror(-status));
		return;
	}
	for (size_t k = 0; k + 1 < data->len; k++) {
		if (data->buf[k] == '\n' && data->buf[k + 1] == '\n') {
			body = data->buf + k + 2;
			blen = data->len - k - 2;
			break;
		}
	}
	if (!body && !(data->len && data->buf[data->len - 1] == '\n')) {
		rd_finish(&x->rd, GRPC_INTERNAL, "failed to get commit message: invalid commit");
		return;
	}
	/* the id alone, then the message in chunks */
	resp.commit_id = req->commit_ids[i];
	rd_send(&x->rd, &resp);
	resp.commit_id = (char *)"";
	while (blen) {
		size_t n = MIN(blen, (size_t)MSG_CHUNK);
		resp.message.data = (uint8_t *)body;
		resp.message.len = n;
		rd_send(&x->rd, &resp);
		body += n;
		blen -= n;
	}
}

static void messages_end(struct lookup *x)
{
	rd_ok(&x->rd);
}

static const struct lookup_ops messages_ops = { messages_name, messages_object, messages_end };

static void get_commit_messages(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__GetCommitMessagesRequest *req =
		msg_unpack(call, &gitaly__get_commit_messages_request__descriptor, buf, len);
	struct lookup *x;
	if (!req)
		return;
	x = lookup_start(data, call, sizeof(*x), req, req->repository, &messages_ops, req->n_commit_ids);
	if (x)
		rd_lease(&x->rd, lookup_leased);
}

void gitaly_register_commit_lookup(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.CommitService/ListCommitsByOid", list_commits_by_oid, g);
	gitaly_add_unary(s, "/gitaly.CommitService/ListCommitsByRefName", list_commits_by_ref_name, g);
	gitaly_add_unary(s, "/gitaly.CommitService/GetCommitMessages", get_commit_messages, g);
}

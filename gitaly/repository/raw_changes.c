/*
 * RepositoryService/GetRawChanges: the entries of `git diff --raw -z`
 * between two revisions, each completed with its blob's id and size from the
 * leased cat-file process, sent in batches as they come (a listing ->
 * cat-file pipeline, read/read.h). docs/technical/gitaly-repository.md,
 * "Raw changes".
 */
#include "repository/repository.h"
#include "read/read.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SUBMODULE_MODE "160000"

struct change {
	Gitaly__GetRawChangesResponse__RawChange m;
	char status;
	int paths_needed, paths_seen;
	char src_mode[8], dst_mode[8];
	char src_oid[CATFILE_HEXSZ_MAX + 1], dst_oid[CATFILE_HEXSZ_MAX + 1];
	char *src_path, *dst_path;
	int submodule;
	char *lookup;               /* the id whose size is reported */
	char *blob_id;              /* ours; m.blob_id points here once known */
};

struct raw_changes {
	struct rd rd;
	struct rd_pipe pipe;
	int pipe_started, checking;   /* checking: 0 from, 1 to */
	const char *from, *to;
	struct change *cur;          /* entry whose paths are still coming */
	Gitaly__GetRawChangesResponse__RawChange **batch;
	size_t nbatch, alloc, bytes;
	struct strvec args;
};

static void change_free(void *it)
{
	struct change *c = it;
	if (!c)
		return;
	free(c->src_path);
	free(c->dst_path);
	free(c->blob_id);
	free(c);
}

static void rc_free(struct rd *rd)
{
	struct raw_changes *x = (struct raw_changes *)rd;
	if (x->pipe_started)
		rd_pipe_release(&x->pipe);
	change_free(x->cur);
	for (size_t i = 0; i < x->nbatch; i++)
		change_free(container_of(x->batch[i], struct change, m));
	free(x->batch);
	strvec_clear(&x->args);
}

static void rc_writable(struct rd *rd)
{
	struct raw_changes *x = (struct raw_changes *)rd;
	if (x->pipe_started)
		rd_pipe_writable(&x->pipe);
}

static void rc_flush(struct raw_changes *x)
{
	Gitaly__GetRawChangesResponse resp = GITALY__GET_RAW_CHANGES_RESPONSE__INIT;
	if (!x->nbatch)
		return;
	resp.raw_changes = x->batch;
	resp.n_raw_changes = x->nbatch;
	rd_send(&x->rd, &resp);
	for (size_t i = 0; i < x->nbatch; i++)
		change_free(container_of(x->batch[i], struct change, m));
	x->nbatch = 0;
	x->bytes = 0;
}

static int all_zeros(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s != '0')
			return 0;
	return 1;
}

static int parse_mode(const char *s, int32_t *out)
{
	char *end;
	long v;
	errno = 0;
	v = strtol(s, &end, 8);
	if (!*s || *end || errno || v < 0 || v > INT32_MAX)
		return -1;
	*out = (int32_t)v;
	return 0;
}

/* ":<src mode> <dst mode> <src id> <dst id> <status>" */
static struct change *parse_header(const char *h, size_t len)
{
	struct change *c;
	char buf[2 * CATFILE_HEXSZ_MAX + 64], *f[5], *save = NULL;
	size_t n = 0;
	if (len < 2 || h[0] != ':' || len - 1 >= sizeof(buf))
		return NULL;
	memcpy(buf, h + 1, len - 1);
	buf[len - 1] = '\0';
	for (char *p = buf, *t; n < 5 && (t = strtok_r(p, " ", &save)); p = NULL)
		f[n++] = t;
	if (n != 5 || strlen(f[0]) >= 8 || strlen(f[1]) >= 8 || strlen(f[2]) > CATFILE_HEXSZ_MAX ||
	    strlen(f[3]) > CATFILE_HEXSZ_MAX || !f[4][0])
		return NULL;
	c = xcalloc(1, sizeof(*c));
	gitaly__get_raw_changes_response__raw_change__init(&c->m);
	memcpy(c->src_mode, f[0], strlen(f[0]) + 1);
	memcpy(c->dst_mode, f[1], strlen(f[1]) + 1);
	memcpy(c->src_oid, f[2], strlen(f[2]) + 1);
	memcpy(c->dst_oid, f[3], strlen(f[3]) + 1);
	c->status = f[4][0];
	c->paths_needed = c->status == 'R' || c->status == 'C' ? 2 : 1;
	return c;
}

/* The operation and paths as upstream reports them; -1 on a bad mode. */
static int finish_change(struct change *c)
{
	Gitaly__GetRawChangesResponse__RawChange *m = &c->m;
	const char *mode;
	if (parse_mode(c->dst_mode, &m->new_mode) < 0 || parse_mode(c->src_mode, &m->old_mode) < 0)
		return -1;
	m->new_path_bytes.data = (uint8_t *)c->src_path;
	m->new_path_bytes.len = strlen(c->src_path);
	m->old_path_bytes = m->new_path_bytes;
	switch (c->status) {
	case 'A':
		m->operation = GITALY__GET_RAW_CHANGES_RESPONSE__RAW_CHANGE__OPERATION__ADDED;
		m->old_path_bytes.data = NULL;
		m->old_path_bytes.len = 0;
		break;
	case 'C':
	case 'R':
		m->operation = c->status == 'C' ? GITALY__GET_RAW_CHANGES_RESPONSE__RAW_CHANGE__OPERATION__COPIED
						: GITALY__GET_RAW_CHANGES_RESPONSE__RAW_CHANGE__OPERATION__RENAMED;
		m->new_path_bytes.data = (uint8_t *)c->dst_path;
		m->new_path_bytes.len = strlen(c->dst_path);
		break;
	case 'D':
		m->operation = GITALY__GET_RAW_CHANGES_RESPONSE__RAW_CHANGE__OPERATION__DELETED;
		m->new_path_bytes.data = NULL;
		m->new_path_bytes.len = 0;
		break;
	case 'M':
		m->operation = GITALY__GET_RAW_CHANGES_RESPONSE__RAW_CHANGE__OPERATION__MODIFIED;
		break;
	case 'T':
		m->operation = GITALY__GET_RAW_CHANGES_RESPONSE__RAW_CHANGE__OPERATION__TYPE_CHANGED;
		break;
	default:
		m->operation = GITALY__GET_RAW_CHANGES_RESPONSE__RAW_CHANGE__OPERATION__UNKNOWN;
		break;
	}
	/* a deleted file reports what it was */
	c->lookup = all_zeros(c->dst_oid) ? c->src_oid : c->dst_oid;
	mode = all_zeros(c->dst_oid) ? c->src_mode : c->dst_mode;
	c->submodule = !strcmp(mode, SUBMODULE_MODE);
	return 0;
}

static int rc_line(struct rd_pipe *p, char *tok, size_t len)
{
	struct raw_changes *x = container_of(p, struct raw_changes, pipe);
	struct change *c = x->cur;
	if (!c) {
		if (!len)
			return 0;
		if (!(x->cur = parse_header(tok, len))) {
			rd_finish(&x->rd, GRPC_INTERNAL, "read diff: invalid diff header %.*s", (int)MIN(len, (size_t)200),
				  tok);
			return -1;
		}
		return 0;
	}
	if (c->paths_seen++ == 0)
		c->src_path = xstrndup(tok, len);
	else
		c->dst_path = xstrndup(tok, len);
	if (c->paths_seen < c->paths_needed)
		return 0;
	x->cur = NULL;
	if (finish_change(c) < 0) {
		change_free(c);
		rd_finish(&x->rd, GRPC_INTERNAL, "build change from diff line: parsing mode: invalid syntax");
		return -1;
	}
	/* submodules too go through cat-file, so that every entry keeps its place */
	if (rd_pipe_info(p, c->lookup, strlen(c->lookup), c, 1) < 0) {
		change_free(c);
		rd_finish(&x->rd, GRPC_INTERNAL, "build change from diff line: object reader is gone");
		return -1;
	}
	return 0;
}

static void rc_object(struct rd_pipe *p, void *item, int status, const struct catfile_info *info,
		      struct strbuf *data)
{
	struct raw_changes *x = container_of(p, struct raw_changes, pipe);
	struct change *c = item;
	size_t size;
	(void)data;
	if (!x->rd.base.call) {
		change_free(c);
		return;
	}
	if (!c->submodule) {
		if (status != 0 || !info) {
			rd_finish(&x->rd, GRPC_INTERNAL, "build change from diff line: find \"%s\": object not found",
				  c->lookup);
			change_free(c);
			return;
		}
		c->m.blob_id = c->blob_id = xstrndup(info->oid, info->oid_len);
		c->m.size = (int64_t)info->size;
	}
	/* upstream's chunker: a change that would fill the message goes into the next one */
	size = protobuf_c_message_get_packed_size(&c->m.base);
	if (x->nbatch && x->bytes + size >= BATCH_BYTES)
		rc_flush(x);
	ALLOC_GROW(x->batch, x->nbatch + 1, x->alloc);
	x->batch[x->nbatch++] = &c->m;
	x->bytes += size;
}

static void rc_end(struct rd_pipe *p, int status, const struct strbuf *err)
{
	struct raw_changes *x = container_of(p, struct raw_changes, pipe);
	struct strbuf sb = STRBUF_INIT;
	(void)err;
	if (status != 0) {
		gitaly_describe_status(&sb, status);
		rd_finish(&x->rd, GRPC_INTERNAL, "wait git diff: %s", sb.buf);
		strbuf_release(&sb);
		return;
	}
	rc_flush(x);
	rd_ok(&x->rd);
}

static const struct rd_pipe_ops rc_ops = {
	.on_line = rc_line,
	.on_object = rc_object,
	.on_end = rc_end,
	.free_item = change_free,
};

static void rc_diff(struct raw_changes *x)
{
	static const char *const flags[] = { "--raw", "-z", "--no-abbrev", NULL };
	struct git_call gc;
	if (all_zeros(x->to)) {
		rd_ok(&x->rd);
		return;
	}
	if (all_zeros(x->from))
		strvec_push(&x->args, strlen(x->from) == 64
					      ? "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321"
					      : "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
	else
		strvec_push(&x->args, x->from);
	strvec_push(&x->args, x->to);
	rd_git_call(&x->rd, &gc, "diff");
	gc.flags = flags;
	gc.args = x->args.v;
	x->pipe_started = 1;
	rd_pipe_start(&x->pipe, &x->rd, &gc, '\0', &rc_ops);
}

/* --- both revisions must exist (unless they are the null id) --- */

static void rc_check_next(struct raw_changes *x);

static void rc_checked(void *arg, int status)
{
	struct raw_changes *x = arg;
	if (!x->rd.base.call)
		return;
	if (status != 0) {
		const char *rev = x->checking == 0 ? x->from : x->to;
		struct strbuf q = STRBUF_INIT;
		strbuf_addch(&q, '"');
		for (const char *s = rev; *s; s++) {
			if (*s == '"' || *s == '\\')
				strbuf_addch(&q, '\\');
			strbuf_addch(&q, *s);
		}
		strbuf_addch(&q, '"');
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "invalid '%s' revision: %s", x->checking == 0 ? "from" : "to",
			  q.buf);
		strbuf_release(&q);
		return;
	}
	x->checking++;
	rc_check_next(x);
}

static const struct catfile_read_ops rc_check_ops = { NULL, NULL, rc_checked };

static void rc_check_next(struct raw_changes *x)
{
	for (; x->checking < 2; x->checking++) {
		const char *rev = x->checking == 0 ? x->from : x->to;
		if (all_zeros(rev) && (strlen(rev) == 40 || strlen(rev) == 64))
			continue;
		/* cat-file reads names a line at a time: such a name is no revision */
		if (!*rev || strchr(rev, '\n') || catfile_info(x->rd.cf, rev, strlen(rev), &rc_check_ops, x) < 0) {
			rc_checked(x, CATFILE_MISSING);
			return;
		}
		return;
	}
	rc_diff(x);
}

static void rc_leased(struct rd *rd)
{
	rc_check_next((struct raw_changes *)rd);
}

void reposvc_get_raw_changes(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__GetRawChangesRequest *req = msg_unpack(call, &gitaly__get_raw_changes_request__descriptor, buf, len);
	struct raw_changes *x;
	if (!req)
		return;
	if (!(x = (struct raw_changes *)rd_start(data, call, sizeof(*x), req, req->repository)))
		return;
	strvec_init(&x->args);
	x->rd.on_free = rc_free;
	x->rd.on_writable = rc_writable;
	x->from = req->from_revision ? req->from_revision : "";
	x->to = req->to_revision ? req->to_revision : "";
	if (*x->from == '-' || *x->to == '-') {
		/* never an option for git diff; cat-file would not find it either */
		x->checking = *x->from == '-' ? 0 : 1;
		rc_checked(x, CATFILE_MISSING);
		return;
	}
	rd_lease(&x->rd, rc_leased);
}

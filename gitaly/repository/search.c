/*
 * RepositoryService/SearchFilesByName (`git ls-tree` of the paths matching a
 * pathspec, filtered by a regular expression) and SearchFilesByContent (`git
 * grep` with two lines of context, one match group after the other). Both
 * read git's output line by line, paused while the call's send queue is full.
 * docs/technical/gitaly-repository.md, "Searching files".
 */
#include "repository/repository.h"
#include "read/read.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <regex.h>
#include <stdlib.h>
#include <string.h>

/* Longest filter upstream compiles. */
#define FILTER_MAX_LEN 1000
/* match_data chunks: upstream's stream writer size. */
#define MATCH_CHUNK (128 * 1024)

/* The checks both searches share; 0, or -1 after finishing the call. */
static int check_search(struct rd *rd, const char *query, const ProtobufCBinaryData *ref)
{
	if (!query || !*query) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "no query given");
		return -1;
	}
	if (!ref->len) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "no ref given");
		return -1;
	}
	if (ref->data[0] == '-') {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "invalid ref argument");
		return -1;
	}
	if (rd_has_nul(ref->data, ref->len)) {
		rd_finish(rd, GRPC_INTERNAL, "cmd start failed: ref contains NUL byte");
		return -1;
	}
	return 0;
}

/* --- by name --- */

struct by_name {
	struct rd rd;
	regex_t re;
	int have_re;
	uint32_t offset, limit;
	uint64_t index, found;
	ProtobufCBinaryData *files;  /* the batch being built */
	size_t nr, alloc, bytes;
	int sent;
	struct strvec argv;
};

static void bn_free(struct rd *rd)
{
	struct by_name *x = (struct by_name *)rd;
	if (x->have_re)
		regfree(&x->re);
	for (size_t i = 0; i < x->nr; i++)
		free(x->files[i].data);
	free(x->files);
	strvec_clear(&x->argv);
}

/*
 * Upstream answers with one message holding every file; a list beyond the
 * batch size is cut into several, which clients concatenate the same way.
 */
static void bn_flush(struct by_name *x, int last)
{
	Gitaly__SearchFilesByNameResponse resp = GITALY__SEARCH_FILES_BY_NAME_RESPONSE__INIT;
	if (!x->nr && (!last || x->sent))
		return;
	resp.files = x->files;
	resp.n_files = x->nr;
	rd_send(&x->rd, &resp);
	for (size_t i = 0; i < x->nr; i++)
		free(x->files[i].data);
	x->nr = 0;
	x->bytes = 0;
	x->sent = 1;
}

static void bn_line(struct rd *rd, char *line, size_t len)
{
	struct by_name *x = (struct by_name *)rd;
	ProtobufCBinaryData *f;

	if (!len || !rd->base.call)
		return;
	if (x->have_re) {
		line[len] = '\0';   /* the delimiter's place: a path holds no NUL */
		if (regexec(&x->re, line, 0, NULL, 0) != 0)
			return;
	}
	if (++x->index <= x->offset)
		return;
	ALLOC_GROW(x->files, x->nr + 1, x->alloc);
	f = &x->files[x->nr++];
	f->data = xmalloc(len);
	memcpy(f->data, line, len);
	f->len = len;
	x->bytes += len;
	x->found++;
	if (x->limit && x->found >= x->limit) {
		rd_lines_stop(rd);
		bn_flush(x, 1);
		rd_ok(rd);
		return;
	}
	if (x->bytes >= BATCH_BYTES)
		bn_flush(x, 0);
	if (rd_full(rd))
		rd_lines_pause(rd);
}

static void bn_end(struct rd *rd, int status, const struct strbuf *err)
{
	(void)status;
	(void)err;
	/* as upstream: a ref that does not resolve lists nothing, and that is all */
	bn_flush((struct by_name *)rd, 1);
	rd_ok(rd);
}

static void search_writable(struct rd *rd)
{
	if (!rd_full(rd))
		rd_lines_resume(rd);
}

void reposvc_search_files_by_name(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	static const char *const flags[] = { "--full-tree", "--name-status", "-r", "-z", NULL };
	Gitaly__SearchFilesByNameRequest *req =
		msg_unpack(call, &gitaly__search_files_by_name_request__descriptor, buf, len);
	const char *paths[2];
	struct git_call gc;
	struct by_name *x;

	if (!req)
		return;
	if (!(x = (struct by_name *)rd_start(data, call, sizeof(*x), req, req->repository)))
		return;
	strvec_init(&x->argv);
	x->rd.on_free = bn_free;
	x->rd.on_writable = search_writable;
	if (check_search(&x->rd, req->query, &req->ref) < 0)
		return;
	if (req->filter && *req->filter) {
		int rc;
		if (strlen(req->filter) > FILTER_MAX_LEN) {
			rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "filter exceeds maximum length");
			return;
		}
		/* POSIX extended expressions stand in for Go's RE2 syntax (see the doc) */
		if ((rc = regcomp(&x->re, req->filter, REG_EXTENDED | REG_NOSUB)) != 0) {
			char e[256];
			regerror(rc, &x->re, e, sizeof(e));
			rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "filter did not compile: error parsing regexp: %s", e);
			return;
		}
		x->have_re = 1;
	}
	x->offset = req->offset;
	x->limit = req->limit;
	strvec_pushf(&x->argv, "%.*s", (int)req->ref.len, (const char *)req->ref.data);
	paths[0] = req->query;
	paths[1] = NULL;
	rd_git_call(&x->rd, &gc, "ls-tree");
	gc.flags = flags;
	gc.args = x->argv.v;
	gc.paths = paths;
	rd_lines_start(&x->rd, &gc, '\0', bn_line, bn_end);
}

/* --- by content --- */

struct by_content {
	struct rd rd;
	struct strbuf pending;   /* match data not sent yet */
	int open;                /* the current group has data */
	struct strvec argv;
};

static void bc_free(struct rd *rd)
{
	struct by_content *x = (struct by_content *)rd;
	strbuf_release(&x->pending);
	strvec_clear(&x->argv);
}

static void bc_send(struct by_content *x, size_t len)
{
	Gitaly__SearchFilesByContentResponse resp = GITALY__SEARCH_FILES_BY_CONTENT_RESPONSE__INIT;
	resp.match_data.data = (uint8_t *)x->pending.buf;
	resp.match_data.len = len;
	rd_send(&x->rd, &resp);
	strbuf_remove_front(&x->pending, len);
}

/* The group is over: the rest of its data, then a message with end_of_match alone. */
static void bc_end_group(struct by_content *x)
{
	Gitaly__SearchFilesByContentResponse resp = GITALY__SEARCH_FILES_BY_CONTENT_RESPONSE__INIT;
	if (x->pending.len)
		bc_send(x, x->pending.len);
	resp.end_of_match = 1;
	rd_send(&x->rd, &resp);
	x->open = 0;
}

static void bc_line(struct rd *rd, char *line, size_t len)
{
	struct by_content *x = (struct by_content *)rd;
	if (!rd->base.call)
		return;
	if (len == 2 && line[0] == '-' && line[1] == '-') {
		bc_end_group(x);
	} else {
		strbuf_add(&x->pending, line, len);
		strbuf_addch(&x->pending, '\n');
		x->open = 1;
		while (x->pending.len >= MATCH_CHUNK)
			bc_send(x, MATCH_CHUNK);
	}
	if (rd_full(rd))
		rd_lines_pause(rd);
}

static void bc_end(struct rd *rd, int status, const struct strbuf *err)
{
	struct by_content *x = (struct by_content *)rd;
	(void)err;
	if (status == -E2BIG) {
		rd_finish(rd, GRPC_INTERNAL, "sending chunked response failed: bufio.Scanner: token too long");
		return;
	}
	/* no match (exit 1) and an unknown ref both end in an empty answer, as upstream's */
	if (x->open)
		bc_end_group(x);
	rd_ok(rd);
}

void reposvc_search_files_by_content(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__SearchFilesByContentRequest *req =
		msg_unpack(call, &gitaly__search_files_by_content_request__descriptor, buf, len);
	const char *flags[12];
	struct by_content *x;
	struct git_call gc;
	size_t n = 0;

	if (!req)
		return;
	if (!(x = (struct by_content *)rd_start(data, call, sizeof(*x), req, req->repository)))
		return;
	strbuf_init(&x->pending, 0);
	strvec_init(&x->argv);
	x->rd.on_free = bc_free;
	x->rd.on_writable = search_writable;
	if (check_search(&x->rd, req->query, &req->ref) < 0)
		return;
	flags[n++] = "--ignore-case";
	flags[n++] = "-I";
	flags[n++] = "--line-number";
	flags[n++] = "--null";
	flags[n++] = "--before-context=2";
	flags[n++] = "--after-context=2";
	flags[n++] = "--perl-regexp";
	flags[n++] = "-e";
	flags[n++] = req->query;
	flags[n] = NULL;
	strvec_pushf(&x->argv, "%.*s", (int)req->ref.len, (const char *)req->ref.data);
	rd_git_call(&x->rd, &gc, "grep");
	gc.flags = flags;
	gc.args = x->argv.v;
	rd_lines_start(&x->rd, &gc, '\n', bc_line, bc_end);
}

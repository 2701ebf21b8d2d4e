/*
 * CommitService RawBlame: `git blame -p` of one file, streamed as raw bytes
 * (docs/technical/gitaly-reads.md, "Blame"). One git process per call: blame
 * has no long-lived form. Its output is relayed in chunks of MSG_CHUNK bytes
 * and git is paused while the call's send queue is full.
 */
#include "read/read.h"
#include "base/util.h"
#include "errors.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct blame {
	struct rd rd;
	Gitaly__RawBlameRequest *req;
	struct strbuf out;                 /* bytes not sent yet */
	int running;
};

static void blame_free(struct rd *rd)
{
	strbuf_release(&((struct blame *)rd)->out);
}

static void blame_send(struct blame *x, size_t keep_below)
{
	Gitaly__RawBlameResponse resp = GITALY__RAW_BLAME_RESPONSE__INIT;
	size_t off = 0;
	while (x->out.len - off > keep_below || (keep_below == 0 && off < x->out.len)) {
		size_t n = MIN(x->out.len - off, (size_t)MSG_CHUNK);
		resp.data.data = (uint8_t *)x->out.buf + off;
		resp.data.len = n;
		rd_send(&x->rd, &resp);
		off += n;
	}
	strbuf_remove_front(&x->out, off);
}

static void blame_line(struct rd *rd, char *line, size_t len)
{
	struct blame *x = (struct blame *)rd;
	strbuf_add(&x->out, line, len);
	strbuf_addch(&x->out, '\n');
	if (x->out.len >= MSG_CHUNK)
		blame_send(x, MSG_CHUNK - 1);
	if (rd_full(rd))
		rd_lines_pause(rd);
}

static void blame_writable(struct rd *rd)
{
	struct blame *x = (struct blame *)rd;
	if (x->running && !rd_full(rd))
		rd_lines_resume(rd);
}

/* "fatal: file <path> has only <N> line(s)\n" */
static int only_lines(const char *err, size_t len, uint64_t *n)
{
	const char *p, *end = err + len;
	static const char prefix[] = "fatal: file ";
	if (len < sizeof(prefix) || memcmp(err, prefix, sizeof(prefix) - 1) || end[-1] != '\n')
		return 0;
	if (memchr(err, '\n', len - 1))
		return 0;
	/* the last " has only " (the path may hold one too), then digits and " line(s)" */
	if (len < sizeof(prefix) - 1 + 10)
		return 0;
	for (p = end - 10; p >= err + sizeof(prefix) - 1; p--) {
		const char *q;
		uint64_t v = 0;
		if (memcmp(p, " has only ", 10))
			continue;
		q = p + 10;
		if (q >= end || *q < '0' || *q > '9')
			return 0;
		while (q < end && *q >= '0' && *q <= '9')
			v = v * 10 + (uint64_t)(*q++ - '0');
		if ((size_t)(end - q) == 6 && !memcmp(q, " line\n", 6))
			return *n = v, 1;
		if ((size_t)(end - q) == 7 && !memcmp(q, " lines\n", 7))
			return *n = v, 1;
		return 0;
	}
	return 0;
}

static void blame_end(struct rd *rd, int status, const struct strbuf *err)
{
	struct blame *x = (struct blame *)rd;
	static const char no_path[] = "fatal: no such path ";
	struct strbuf sb = STRBUF_INIT;
	uint64_t lines;
	x->running = 0;
	if (!rd->base.call)
		return;
	if (status == 0) {
		blame_send(x, 0);
		rd_ok(rd);
		return;
	}
	if (err->len >= sizeof(no_path) - 1 && !memcmp(err->buf, no_path, sizeof(no_path) - 1)) {
		Gitaly__PathNotFoundError pnf = GITALY__PATH_NOT_FOUND_ERROR__INIT;
		Gitaly__RawBlameError detail = GITALY__RAW_BLAME_ERROR__INIT;
		pnf.path = x->req->path;
		detail.error_case = GITALY__RAW_BLAME_ERROR__ERROR_PATH_NOT_FOUND;
		detail.path_not_found = &pnf;
		rd_finish_detail(rd, GRPC_NOT_FOUND, "path not found in revision", &detail.base);
		return;
	}
	if (only_lines(err->buf, err->len, &lines)) {
		Gitaly__RawBlameError__OutOfRangeError oor = GITALY__RAW_BLAME_ERROR__OUT_OF_RANGE_ERROR__INIT;
		Gitaly__RawBlameError detail = GITALY__RAW_BLAME_ERROR__INIT;
		oor.actual_lines = lines;
		detail.error_case = GITALY__RAW_BLAME_ERROR__ERROR_OUT_OF_RANGE;
		detail.out_of_range = &oor;
		rd_finish_detail(rd, GRPC_INVALID_ARGUMENT, "range is outside of the file length", &detail.base);
		return;
	}
	gitaly_describe_status(&sb, status);
	rd_finish(rd, GRPC_UNKNOWN, "blaming file: %s", sb.buf);
	strbuf_release(&sb);
}

/* `\A\d+,\d+\z` */
static int valid_range(const char *s, size_t len)
{
	size_t i = 0, a, b;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++;
	a = i;
	if (!a || i >= len || s[i] != ',')
		return 0;
	i++;
	b = i;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++;
	return i == len && i > b;
}

static void raw_blame(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__RawBlameRequest *req = msg_unpack(call, &gitaly__raw_blame_request__descriptor, buf, len);
	struct strbuf msg = STRBUF_INIT, rev = STRBUF_INIT, path = STRBUF_INIT, range = STRBUF_INIT;
	struct strvec flags = STRVEC_INIT;
	const char *args[2], *paths[2];
	struct git_call gc;
	struct blame *x;

	if (!req)
		return;
	x = (struct blame *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	x->rd.on_free = blame_free;
	x->rd.on_writable = blame_writable;
	strbuf_init(&x->out, 0);
	if (gitaly_check_revision((const char *)req->revision.data, req->revision.len, &msg) < 0) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "%s", msg.buf);
		goto out;
	}
	if (!req->path.len) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "empty Path");
		goto out;
	}
	if (!rd_path_is_local((const char *)req->path.data, req->path.len) || rd_has_nul(req->path.data, req->path.len)) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "path escapes repository root");
		goto out;
	}
	if (req->range.len && !valid_range((const char *)req->range.data, req->range.len)) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "invalid Range");
		goto out;
	}
	strvec_push(&flags, "-p");
	if (req->range.len) {
		strbuf_add(&range, req->range.data, req->range.len);
		strvec_push(&flags, "-L");
		strvec_push(&flags, range.buf);
	}
	strbuf_add(&rev, req->revision.data, req->revision.len);
	strbuf_add(&path, req->path.data, req->path.len);
	args[0] = rev.buf;
	args[1] = NULL;
	paths[0] = path.buf;
	paths[1] = NULL;
	rd_git_call(&x->rd, &gc, "blame");
	gc.flags = flags.v;
	gc.args = args;
	gc.paths = paths;
	x->running = 1;
	if (rd_lines_start(&x->rd, &gc, '\n', blame_line, blame_end) < 0)
		x->running = 0;
out:
	strbuf_release(&msg);
	strbuf_release(&rev);
	strbuf_release(&path);
	strbuf_release(&range);
	strvec_clear(&flags);
}

void gitaly_register_blame(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.CommitService/RawBlame", raw_blame, g);
}

/*
 * CommitService CommitStats: lines added and deleted by one commit
 * (docs/technical/gitaly-reads.md, "Commit stats"). The commit comes from
 * the cat-file process; the numbers from one `git diff --numstat` against
 * its first parent (or the empty tree), read line by line.
 */
#include "read/read.h"
#include "base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define EMPTY_TREE_SHA1 "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
#define EMPTY_TREE_SHA256 "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321"

struct stats {
	struct rd rd;
	Gitaly__CommitStatsRequest *req;
	char oid[CATFILE_HEXSZ_MAX + 1];
	int64_t added, deleted;
	int failed;
};

/* strconv.ParseInt(s, 10, 32) */
static int parse_i32(const char *s, size_t len, int32_t *out)
{
	int64_t v = 0;
	int neg = 0;
	size_t i = 0;
	if (len && (s[0] == '-' || s[0] == '+'))
		neg = s[0] == '-', i = 1;
	if (i == len)
		return -1;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
		if (v > (int64_t)INT32_MAX + 1)
			return -1;
	}
	if (neg)
		v = -v;
	if (v > INT32_MAX || v < INT32_MIN)
		return -1;
	*out = (int32_t)v;
	return 0;
}

/* "<added> TAB <deleted> TAB <path>"; binary files show "-" for both */
static void stats_line(struct rd *rd, char *line, size_t len)
{
	struct stats *x = (struct stats *)rd;
	char *t1 = memchr(line, '\t', len), *t2;
	int32_t a, d;
	if (x->failed)
		return;
	t2 = t1 ? memchr(t1 + 1, '\t', len - (size_t)(t1 + 1 - line)) : NULL;
	if (!t2) {
		x->failed = 1;
		rd_finish(rd, GRPC_INTERNAL, "invalid numstat line \"%.*s\"", (int)len, line);
		return;
	}
	if (t1 - line == 1 && line[0] == '-' && t2 - t1 == 2 && t1[1] == '-')
		return;
	if (parse_i32(line, (size_t)(t1 - line), &a) < 0) {
		x->failed = 1;
		rd_finish(rd, GRPC_INTERNAL, "strconv.ParseInt: parsing \"%.*s\": invalid syntax", (int)(t1 - line), line);
		return;
	}
	if (parse_i32(t1 + 1, (size_t)(t2 - t1 - 1), &d) < 0) {
		x->failed = 1;
		rd_finish(rd, GRPC_INTERNAL, "strconv.ParseInt: parsing \"%.*s\": invalid syntax", (int)(t2 - t1 - 1),
			  t1 + 1);
		return;
	}
	/* upstream sums into int32 */
	x->added = (int32_t)(uint32_t)(x->added + a);
	x->deleted = (int32_t)(uint32_t)(x->deleted + d);
}

static void stats_end(struct rd *rd, int status, const struct strbuf *err)
{
	struct stats *x = (struct stats *)rd;
	Gitaly__CommitStatsResponse resp = GITALY__COMMIT_STATS_RESPONSE__INIT;
	struct strbuf sb = STRBUF_INIT;
	(void)err;
	if (!rd->base.call || x->failed)
		return;
	if (status != 0) {
		gitaly_describe_status(&sb, status);
		rd_finish(rd, GRPC_INTERNAL, "%s", sb.buf);
		strbuf_release(&sb);
		return;
	}
	resp.oid = x->oid;
	resp.additions = (int32_t)x->added;
	resp.deletions = (int32_t)x->deleted;
	rd_send(rd, &resp);
	rd_ok(rd);
}

static void stats_read(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct stats *x = arg;
	static const char *const flags[] = { "--numstat", NULL };
	Gitaly__GitCommit *c;
	struct strbuf parent = STRBUF_INIT;
	const char *args[3];
	struct git_call gc;
	if (status == CATFILE_MISSING) {
		rd_finish(&x->rd, GRPC_INTERNAL, "object not found");
		return;
	}
	if (status < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "reading commit: %s", strerror(-status));
		return;
	}
	c = gitaly_commit_parse(info->oid, data->buf, data->len);
	memcpy(x->oid, info->oid, sizeof(x->oid));
	if (c->n_parent_ids) {
		strbuf_addf(&parent, "%s^", info->oid);
		args[0] = parent.buf;
	} else {
		args[0] = info->oid_len > 40 ? EMPTY_TREE_SHA256 : EMPTY_TREE_SHA1;
	}
	args[1] = x->oid;
	args[2] = NULL;
	gitaly_commit_free(c);
	/* the object reader is done: back to the cache while diff runs */
	catfile_release(x->rd.cf);
	x->rd.cf = NULL;
	rd_git_call(&x->rd, &gc, "diff");
	gc.flags = flags;
	gc.args = args;
	rd_lines_start(&x->rd, &gc, '\n', stats_line, stats_end);
	strbuf_release(&parent);
}

static void stats_leased(struct rd *rd)
{
	struct stats *x = (struct stats *)rd;
	struct strbuf rev = STRBUF_INIT;
	strbuf_add(&rev, x->req->revision.data, x->req->revision.len);
	strbuf_addstr(&rev, "^{commit}");
	if (catfile_read(rd->cf, rev.buf, rev.len, 64u << 20, stats_read, x) < 0)
		rd_finish(rd, GRPC_INTERNAL, "reading commit: object reader failed");
	strbuf_release(&rev);
}

static void commit_stats(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__CommitStatsRequest *req = msg_unpack(call, &gitaly__commit_stats_request__descriptor, buf, len);
	struct strbuf msg = STRBUF_INIT;
	struct stats *x;
	if (!req)
		return;
	x = (struct stats *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	if (gitaly_check_revision((const char *)req->revision.data, req->revision.len, &msg) < 0)
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "%s", msg.buf);
	else
		rd_lease(&x->rd, stats_leased);
	strbuf_release(&msg);
}

void gitaly_register_commit_stats(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.CommitService/CommitStats", commit_stats, g);
}

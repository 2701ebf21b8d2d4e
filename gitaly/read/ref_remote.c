/*
 * FindAllRemoteBranches: the branches under refs/remotes/<remote_name>, each
 * with its commit, read through the for-each-ref -> cat-file pipeline
 * (docs/technical/refs.md, "FindAllRemoteBranches").
 */
#include "read/read.h"
#include "base/util.h"
#include "ref.pb-c.h"

#include <stdlib.h>
#include <string.h>

struct remote_branches {
	struct rd rd;
	Gitaly__FindAllRemoteBranchesRequest *req;
	struct rd_pipe pipe;
	int pipe_started;
	Gitaly__Branch *batch[LINES_PER_MESSAGE];
	size_t nbatch;
};

struct rb_item {
	size_t len;
	char name[];
};

static void rb_free_branch(Gitaly__Branch *b)
{
	gitaly_commit_free(b->target_commit);
	free(b->name.data);
	free(b);
}

static void rb_free(struct rd *rd)
{
	struct remote_branches *x = (struct remote_branches *)rd;
	for (size_t i = 0; i < x->nbatch; i++)
		rb_free_branch(x->batch[i]);
	if (x->pipe_started)
		rd_pipe_release(&x->pipe);
}

static void rb_writable(struct rd *rd)
{
	struct remote_branches *x = (struct remote_branches *)rd;
	if (x->pipe_started)
		rd_pipe_writable(&x->pipe);
}

static void rb_flush(struct remote_branches *x)
{
	Gitaly__FindAllRemoteBranchesResponse resp = GITALY__FIND_ALL_REMOTE_BRANCHES_RESPONSE__INIT;
	if (!x->nbatch)
		return;
	resp.branches = x->batch;
	resp.n_branches = x->nbatch;
	rd_send(&x->rd, &resp);
	for (size_t i = 0; i < x->nbatch; i++)
		rb_free_branch(x->batch[i]);
	x->nbatch = 0;
}

static int rb_line(struct rd_pipe *p, char *line, size_t len)
{
	struct remote_branches *x = container_of(p, struct remote_branches, pipe);
	char *nul = memchr(line, '\0', len);
	struct strbuf rev = STRBUF_INIT;
	struct rb_item *it;
	int rc;

	if (!nul) {
		rd_finish(&x->rd, GRPC_INTERNAL, "finding refs: error parsing ref %.*s", (int)MIN(len, (size_t)200), line);
		return -1;
	}
	it = xcalloc(1, sizeof(*it) + (size_t)(nul - line) + 1);
	it->len = (size_t)(nul - line);
	memcpy(it->name, line, it->len);
	strbuf_add(&rev, nul + 1, len - it->len - 1);
	strbuf_addstr(&rev, "^{commit}");
	rc = rd_pipe_read(p, rev.buf, rev.len, it, 1);
	strbuf_release(&rev);
	if (rc < 0) {
		free(it);
		rd_finish(&x->rd, GRPC_INTERNAL, "finding refs: object reader failed");
		return -1;
	}
	return 0;
}

static void rb_object(struct rd_pipe *p, void *item, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct remote_branches *x = container_of(p, struct remote_branches, pipe);
	struct rb_item *it = item;
	Gitaly__Branch *b;

	if (status != 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "finding refs: object not found: %.*s", (int)it->len, it->name);
		free(it);
		return;
	}
	b = xcalloc(1, sizeof(*b));
	gitaly__branch__init(b);
	b->name.data = xmemdup(it->name, it->len + 1);
	b->name.len = it->len;
	b->target_commit = gitaly_commit_parse(info->oid, data->buf, data->len);
	free(it);
	x->batch[x->nbatch++] = b;
	/* upstream's lines sender: a message every LINES_PER_MESSAGE branches */
	if (x->nbatch == LINES_PER_MESSAGE)
		rb_flush(x);
}

static void rb_end(struct rd_pipe *p, int status, const struct strbuf *err)
{
	struct remote_branches *x = container_of(p, struct remote_branches, pipe);
	struct strbuf sb = STRBUF_INIT;
	(void)err;
	if (status != 0) {
		strbuf_addstr(&sb, "finding refs: ");
		gitaly_describe_status(&sb, status);
		rd_finish(&x->rd, GRPC_INTERNAL, "%s", sb.buf);
		strbuf_release(&sb);
		return;
	}
	rb_flush(x);
	rd_ok(&x->rd);
}

static void rb_free_item(void *item)
{
	free(item);
}

static const struct rd_pipe_ops rb_ops = {
	.on_line = rb_line,
	.on_object = rb_object,
	.on_end = rb_end,
	.free_item = rb_free_item,
};

static void rb_leased(struct rd *rd)
{
	struct remote_branches *x = (struct remote_branches *)rd;
	static const char *const flags[] = { "--format=%(refname)%00%(objectname)", NULL };
	struct strbuf pattern = STRBUF_INIT;
	const char *args[2];
	struct git_call gc;

	strbuf_addf(&pattern, "refs/remotes/%s", x->req->remote_name);
	args[0] = pattern.buf;
	args[1] = NULL;
	rd_git_call(rd, &gc, "for-each-ref");
	gc.flags = flags;
	gc.args = args;
	x->pipe_started = 1;
	rd_pipe_start(&x->pipe, rd, &gc, '\n', &rb_ops);
	strbuf_release(&pattern);
}

static void find_all_remote_branches(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindAllRemoteBranchesRequest *req =
		msg_unpack(call, &gitaly__find_all_remote_branches_request__descriptor, buf, len);
	struct remote_branches *x;

	if (!req)
		return;
	x = (struct remote_branches *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	x->rd.on_free = rb_free;
	x->rd.on_writable = rb_writable;
	if (!req->remote_name || !*req->remote_name) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "empty RemoteName");
		return;
	}
	rd_lease(&x->rd, rb_leased);
}

void gitaly_register_ref_remote(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.RefService/FindAllRemoteBranches", find_all_remote_branches, g);
}

/*
 * CommitService ListAllCommits: every commit object of the repository,
 * reachable or not, in object-store order (docs/technical/gitaly-reads.md,
 * "All commits"). One `git cat-file --batch-all-objects --batch-check`
 * listing per call (the walk over every pack and loose object has no
 * cached form) feeds the leased cat-file process through rd_pipe, so
 * memory stays flat whatever the size of the object store.
 */
#include "read/read.h"
#include "base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct list_all {
	struct rd rd;
	Gitaly__ListAllCommitsRequest *req;
	struct rd_pipe pipe;
	int pipe_started, token_seen;
	int32_t count;
	struct rd_commits batch;
};

static void la_free(struct rd *rd)
{
	struct list_all *x = (struct list_all *)rd;
	if (x->pipe_started)
		rd_pipe_release(&x->pipe);
	rd_commits_release(&x->batch);
}

static void la_writable(struct rd *rd)
{
	struct list_all *x = (struct list_all *)rd;
	if (x->pipe_started)
		rd_pipe_writable(&x->pipe);
}

/* "<oid> SP <type> SP <size>" */
static int la_line(struct rd_pipe *p, char *line, size_t len)
{
	struct list_all *x = container_of(p, struct list_all, pipe);
	char *sp = memchr(line, ' ', len), *sp2;
	size_t olen;
	int step;
	if (!sp) {
		rd_finish(&x->rd, GRPC_INTERNAL, "iterating objects: invalid object info line");
		return -1;
	}
	olen = (size_t)(sp - line);
	sp2 = memchr(sp + 1, ' ', len - olen - 1);
	/* the token is any object, whatever its type: only commits count towards the limit */
	if (x->token_seen || !x->req->pagination_params || !x->req->pagination_params->page_token ||
	    !*x->req->pagination_params->page_token) {
		if (!sp2 || (size_t)(sp2 - sp - 1) != 6 || memcmp(sp + 1, "commit", 6))
			return 0;
	}
	step = rd_page_step(x->req->pagination_params, &x->token_seen, &x->count, line, olen);
	if (step)
		return step < 0 ? -1 : 0;
	if (rd_pipe_read(p, line, olen, NULL, 0) < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "iterating objects: object reader failed");
		return -1;
	}
	return 0;
}

static void la_object(struct rd_pipe *p, void *item, int status, const struct catfile_info *info,
		      struct strbuf *data)
{
	struct list_all *x = container_of(p, struct list_all, pipe);
	Gitaly__GitCommit *c;
	(void)item;
	if (status != 0 || info->type != CATFILE_COMMIT) {
		rd_finish(&x->rd, GRPC_INTERNAL, "iterating objects: %s",
			  status < 0 ? strerror(-status) : "object not found");
		return;
	}
	c = gitaly_commit_parse(info->oid, data->buf, data->len);
	rd_commits_add(&x->rd, &x->batch, c);
}

static void la_end(struct rd_pipe *p, int status, const struct strbuf *err)
{
	struct list_all *x = container_of(p, struct list_all, pipe);
	if (status != 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "iterating objects: cat-file: exit status %d, stderr: %.*s", status,
			  (int)err->len, err->buf);
		return;
	}
	rd_commits_flush(&x->rd, &x->batch);
	rd_ok(&x->rd);
}

static const struct rd_pipe_ops la_ops = {
	.on_line = la_line,
	.on_object = la_object,
	.on_end = la_end,
};

static void la_leased(struct rd *rd)
{
	struct list_all *x = (struct list_all *)rd;
	static const char *const flags[] = { "--batch-check", "--batch-all-objects", "--buffer", "--unordered", NULL };
	struct git_call gc;
	rd_git_call(rd, &gc, "cat-file");
	gc.flags = flags;
	x->pipe_started = 1;
	rd_pipe_start(&x->pipe, rd, &gc, '\n', &la_ops);
}

static void list_all_commits(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__ListAllCommitsRequest *req = msg_unpack(call, &gitaly__list_all_commits_request__descriptor, buf, len);
	struct list_all *x;
	if (!req)
		return;
	x = (struct list_all *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	x->batch.resp = &gitaly__list_all_commits_response__descriptor;
	x->rd.on_free = la_free;
	x->rd.on_writable = la_writable;
	rd_lease(&x->rd, la_leased);
}

void gitaly_register_commit_all(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.CommitService/ListAllCommits", list_all_commits, g);
}

/* The read RPCs' shared machinery: cat-file cache glue, per-call contexts, line listings. */
#include "read/read.h"
#include "base/pb.h"
#include "base/util.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* --- the node's cat-file cache --- */

/* Created at start-up (main.c), drained when the server stops. */
struct catfile_cache *gitaly_catfile_cache(struct gitaly *g)
{
	return g->catfile;
}

/* --- per-call contexts --- */

static void rd_release(struct gitaly_call *c)
{
	struct rd *rd = container_of(c, struct rd, base);
	if (rd->on_free)
		rd->on_free(rd);
	msg_free(rd->req);
	strbuf_release(&rd->path);
	free(rd);
}

static void release_objects(struct rd *rd)
{
	if (rd->wait) {
		catfile_wait_cancel(rd->wait);
		rd->wait = NULL;
	}
	if (rd->cf) {
		/* back to the cache when clean, killed when a read was cut short */
		catfile_release(rd->cf);
		rd->cf = NULL;
	}
}

static void rd_call_writable(struct grpc_call *call)
{
	struct rd *rd = grpc_call_user(call);
	if (rd->on_writable)
		rd->on_writable(rd);
}

static void rd_call_close(struct grpc_call *call, enum grpc_code code)
{
	struct rd *rd = grpc_call_user(call);
	(void)code;
	release_objects(rd);
	rd_lines_stop(rd);
	gitaly_call_closed(&rd->base);
}

static const struct grpc_call_ops rd_call_ops = {
	.on_writable = rd_call_writable,
	.on_close = rd_call_close,
};

struct rd *rd_start(struct gitaly *g, struct grpc_call *call, size_t size, void *req,
		    const Gitaly__Repository *repo)
{
	struct rd *rd = xcalloc(1, size);
	struct strbuf msg = STRBUF_INIT;
	enum grpc_code code;

	gitaly_call_init(&rd->base, g, call, rd_release);
	rd->req = req;
	rd->repo = repo;
	strbuf_init(&rd->path, 0);
	grpc_call_set_ops(call, &rd_call_ops, rd);
	code = gitaly_locate(g, repo, 0, &rd->path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		strbuf_release(&msg);
		return NULL;
	}
	strbuf_release(&msg);
	return rd;
}

void rd_finish(struct rd *rd, enum grpc_code code, const char *fmt, ...)
{
	struct strbuf msg = STRBUF_INIT;
	va_list ap;
	release_objects(rd);
	rd_lines_stop(rd);
	if (!rd->base.call)
		return;
	if (fmt) {
		va_start(ap, fmt);
		strbuf_vaddf(&msg, fmt, ap);
		va_end(ap);
	}
	gitaly_call_finish(&rd->base, code, fmt ? msg.buf : NULL, NULL);
	strbuf_release(&msg);
}

void rd_ok(struct rd *rd)
{
	rd_finish(rd, GRPC_OK, NULL);
}

void rd_finish_detail(struct rd *rd, enum grpc_code code, const char *msg, const ProtobufCMessage *detail)
{
	release_objects(rd);
	rd_lines_stop(rd);
	gitaly_call_finish_detail(&rd->base, code, msg, detail);
}

int rd_send(struct rd *rd, const void *msg)
{
	return gitaly_call_send(&rd->base, msg);
}

int rd_full(const struct rd *rd)
{
	return rd->base.call && grpc_call_send_full(rd->base.call);
}

void rd_git_call(struct rd *rd, struct git_call *gc, const char *subcmd)
{
	memset(gc, 0, sizeof(*gc));
	gc->git_dir = rd->path.buf;
	gc->repo = rd->repo;
	gc->subcmd = subcmd;
	gc->rpc = rd->base.call;
}

/* --- leases --- */

static void on_leased(void *arg, struct catfile *cf, int err)
{
	struct rd *rd = arg;
	rd->wait = NULL;
	if (!cf) {
		rd_finish(rd, GRPC_INTERNAL, "creating object reader: %s", uv_strerror(err));
		return;
	}
	rd->cf = cf;
	rd->lease_cb(rd);
}

void rd_lease(struct rd *rd, void (*cb)(struct rd *rd))
{
	static const char *const flags[] = { "--batch-command", "--buffer", "-z", NULL };
	struct strvec argv = STRVEC_INIT, env = STRVEC_INIT;
	struct strbuf key = STRBUF_INIT, msg = STRBUF_INIT;
	struct catfile_spec spec = { 0 };
	struct git_call gc;
	int rc;

	rd_git_call(rd, &gc, "cat-file");
	gc.flags = flags;
	gc.rpc = NULL; /* a cached process outlives the call: nothing call-specific in it */
	if (gitaly_git_spec(rd->base.g, &gc, &argv, &env, &msg) < 0) {
		rd_finish(rd, GRPC_INTERNAL, "creating object reader: %s", msg.buf);
		goto out;
	}
	/* processes with the same command line and environment are interchangeable */
	for (size_t i = 0; i < argv.nr; i++)
		strbuf_add(&key, argv.v[i], strlen(argv.v[i]) + 1);
	strbuf_addch(&key, '\n');
	for (size_t i = 0; i < env.nr; i++)
		strbuf_add(&key, env.v[i], strlen(env.v[i]) + 1);
	spec.key = key.buf;
	spec.key_len = key.len;
	spec.argv = argv.v;
	spec.env = env.v;
	rd->lease_cb = cb;
	rc = catfile_lease(gitaly_catfile_cache(rd->base.g), &spec, on_leased, rd, &rd->wait);
	if (rc < 0)
		rd_finish(rd, GRPC_INTERNAL, "creating object reader: %s", uv_strerror(rc));
out:
	strvec_clear(&argv);
	strvec_clear(&env);
	strbuf_release(&key);
	strbuf_release(&msg);
}

/* --- captures --- */

struct capture {
	struct rd *rd;
	rd_capture_fn cb;
};

static void on_captured(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct capture *c = arg;
	struct rd *rd = c->rd;
	if (rd->base.call)
		c->cb(rd, status, out, err);
	free(c);
	gitaly_call_drop(&rd->base);
}

void rd_capture(struct rd *rd, const struct git_call *gc, size_t max, rd_capture_fn cb)
{
	struct capture *c = xcalloc(1, sizeof(*c));
	struct strbuf msg = STRBUF_INIT;
	c->rd = rd;
	c->cb = cb;
	gitaly_call_hold(&rd->base);
	/*
	 * The capture always reports (a spawn failure too, from the loop), so
	 * the context stays alive until then; a cancelled call just ignores it.
	 */
	if (gitaly_git_capture(rd->base.g, gc, NULL, 0, max, on_captured, c, NULL, &msg) < 0) {
		rd_finish(rd, GRPC_INTERNAL, "%s", msg.buf);
		free(c);
		rd->base.holds--;   /* nothing started: undo the hold without a release */
	}
	strbuf_release(&msg);
}

/* --- line listings --- */

#define LINE_MAX_LEN (16 * 1024 * 1024)
/* With rd_lines_fragments(), a line without its delimiter yet goes on in pieces of at least this much. */
#define LINE_FRAGMENT_LEN (64 * 1024)

struct rd_lines {
	struct rd *rd;
	struct git_cmd *cmd;          /* NULL once git exited */
	char delim;
	struct strbuf buf;
	size_t off;                   /* consumed bytes at the front of buf */
	int paused, exited, status, draining, stopped, ended, too_long;
	struct strbuf err;
	rd_line_fn on_line;
	rd_line_fn on_fragment;       /* rd_lines_fragments() */
	rd_end_fn on_end;
};

static void lines_free(struct rd_lines *l)
{
	if (l->cmd)
		git_cmd_detach(l->cmd);
	strbuf_release(&l->buf);
	strbuf_release(&l->err);
	free(l);
}

/* Deliver complete lines until paused; report the end once everything is out. */
static void lines_drain(struct rd_lines *l)
{
	if (l->draining)
		return;
	l->draining = 1;
	while (!l->paused && !l->stopped) {
		char *start = l->buf.buf + l->off;
		size_t avail = l->buf.len - l->off;
		char *nl = memchr(start, l->delim, avail);
		if (nl) {
			l->off += (size_t)(nl - start) + 1;
			l->on_line(l->rd, start, (size_t)(nl - start));
			continue;
		}
		if (!l->exited) {
			if (l->on_fragment && avail >= LINE_FRAGMENT_LEN) {
				l->off += avail;
				l->on_fragment(l->rd, start, avail);
				continue;
			}
			break;
		}
		if (avail) {
			/* a last line without its delimiter */
			l->off += avail;
			l->on_line(l->rd, start, avail);
			continue;
		}
		l->ended = 1;
		l->rd->lines = NULL;
		l->on_end(l->rd, l->too_long ? -E2BIG : l->status, &l->err);
		l->stopped = 1;
		break;
	}
	if (!l->stopped) {
		if (l->off) {
			strbuf_remove_front(&l->buf, l->off);
			l->off = 0;
		}
		/*
		 * Not paused, every complete line is out: what is left is the
		 * start of a line (bounded by LINE_MAX_LEN), and git must go on
		 * for it to end.
		 */
		if (l->cmd) {
			if (!l->paused)
				git_cmd_resume_stdout(l->cmd);
			else
				git_cmd_pause_stdout(l->cmd);
		}
	}
	l->draining = 0;
	if (l->stopped)
		lines_free(l);
}

static void lines_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct rd_lines *l = git_cmd_user(cmd);
	strbuf_add(&l->buf, buf, len);
	if (!l->on_fragment && l->buf.len - l->off > LINE_MAX_LEN &&
	    !memchr(l->buf.buf + l->off, l->delim, l->buf.len - l->off)) {
		l->too_long = 1;
		git_cmd_stop(cmd);
		strbuf_reset(&l->buf);
		l->off = 0;
		return;
	}
	lines_drain(l);
}

static void lines_exit(struct git_cmd *cmd, int status)
{
	struct rd_lines *l = git_cmd_user(cmd);
	const struct strbuf *e = git_cmd_stderr(cmd);
	strbuf_add(&l->err, e->buf, e->len);
	l->cmd = NULL;
	l->exited = 1;
	l->status = status;
	lines_drain(l);
}

static const struct git_cmd_ops lines_ops = {
	.on_stdout = lines_stdout,
	.on_exit = lines_exit,
};

int rd_lines_start(struct rd *rd, const struct git_call *gc, char delim, rd_line_fn on_line,
		   rd_end_fn on_end)
{
	struct rd_lines *l = xcalloc(1, sizeof(*l));
	struct strbuf msg = STRBUF_INIT;
	int rc;

	l->rd = rd;
	l->delim = delim;
	l->on_line = on_line;
	l->on_end = on_end;
	strbuf_init(&l->buf, 0);
	strbuf_init(&l->err, 0);
	rc = gitaly_git_spawn(rd->base.g, gc, 0, 1, &lines_ops, l, &l->cmd, &msg);
	if (rc < 0) {
		l->cmd = NULL;
		lines_free(l);
		rd_finish(rd, rc == -EINVAL ? GRPC_INVALID_ARGUMENT : GRPC_INTERNAL, "%s", msg.buf);
		strbuf_release(&msg);
		return -1;
	}
	strbuf_release(&msg);
	rd->lines = l;
	return 0;
}

void rd_lines_fragments(struct rd *rd, rd_line_fn on_fragment)
{
	if (rd->lines)
		rd->lines->on_fragment = on_fragment;
}

void rd_lines_pause(struct rd *rd)
{
	if (rd->lines)
		rd->lines->paused = 1;
}

void rd_lines_resume(struct rd *rd)
{
	struct rd_lines *l = rd->lines;
	if (!l || !l->paused)
		return;
	l->paused = 0;
	lines_drain(l);
}

void rd_lines_stop(struct rd *rd)
{
	struct rd_lines *l = rd->lines;
	if (!l)
		return;
	rd->lines = NULL;
	l->stopped = 1;
	if (!l->draining)
		lines_free(l);
}

/* --- request checks --- */

int rd_has_nul(const void *p, size_t len)
{
	return len && memchr(p, '\0', len) != NULL;
}

static int has_prefix(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	return len >= n && !memcmp(s, prefix, n);
}

static int equals(const char *s, size_t len, const char *word)
{
	return strlen(word) == len && !memcmp(s, word, len);
}

int rd_check_pseudo_revision(const char *rev, size_t len, struct strbuf *msg)
{
	if (equals(rev, len, "--all") || equals(rev, len, "--not") || equals(rev, len, "--branches") ||
	    equals(rev, len, "--tags") || equals(rev, len, "--alternate-refs") ||
	    ((has_prefix(rev, len, "--branches=") || has_prefix(rev, len, "--tags=") ||
	      has_prefix(rev, len, "--glob=")) && !rd_has_nul(rev, len)))
		return 0;
	return gitaly_check_revision(rev, len, msg);
}

/* --- streaming object content --- */

void rd_stream_begin(struct rd_stream *s, const void *first_msg, uint32_t field)
{
	size_t n = protobuf_c_message_get_packed_size(first_msg);
	strbuf_init(&s->first, n + 16);
	strbuf_setlen(&s->first, n);
	protobuf_c_message_pack(first_msg, (uint8_t *)s->first.buf);
	s->first_pending = 1;
	s->field = field;
	s->paused = 0;
}

void rd_stream_data(struct rd *rd, struct rd_stream *s, const char *buf, size_t len)
{
	struct strbuf msg = STRBUF_INIT;
	if (!rd->base.call)
		return;
	while (len) {
		size_t n = MIN(len, (size_t)MSG_CHUNK);
		strbuf_reset(&msg);
		if (s->first_pending) {
			/* protobuf fields may come in any order: metadata, then data */
			strbuf_add(&msg, s->first.buf, s->first.len);
			s->first_pending = 0;
		}
		pb_put_bytes(&msg, s->field, buf, n);
		grpc_call_send(rd->base.call, msg.buf, msg.len);
		buf += n;
		len -= n;
	}
	strbuf_release(&msg);
	if (rd->cf && !s->paused && grpc_call_send_full(rd->base.call)) {
		s->paused = 1;
		catfile_pause(rd->cf);
	}
}

void rd_stream_end(struct rd *rd, struct rd_stream *s)
{
	if (s->first_pending && rd->base.call)
		grpc_call_send(rd->base.call, s->first.buf, s->first.len);
	s->first_pending = 0;
}

void rd_stream_writable(struct rd *rd, struct rd_stream *s)
{
	if (s->paused && rd->cf) {
		s->paused = 0;
		catfile_resume(rd->cf);
	}
}

void rd_stream_release(struct rd_stream *s)
{
	strbuf_release(&s->first);
}

/* --- listing -> cat-file pipelines --- */

#define MAX_OBJECT_SIZE (64u * 1024 * 1024)

struct pipe_read {
	struct pipe_read *next;
	struct rd_pipe *p;
	void *item;
	int owns;
	struct catfile_info info;     /* info-only reads */
	int have_info;
};

static void pipe_check_end(struct rd_pipe *p)
{
	if (p->ended || !p->listing_done || p->inflight || !p->rd->base.call)
		return;
	p->ended = 1;
	p->ops->on_end(p, p->stopped ? 0 : p->status, &p->err);
}

/* Let the listing run while there is room in the window and in the call. */
static void pipe_flow(struct rd_pipe *p)
{
	struct rd *rd = p->rd;
	if (!rd->base.call || p->listing_done)
		return;
	if (rd_full(rd)) {
		p->blocked = 1;
		rd_lines_pause(rd);
	} else if (p->inflight >= CATFILE_WINDOW) {
		rd_lines_pause(rd);
	} else {
		rd_lines_resume(rd);
	}
}

static void pipe_line(struct rd *rd, char *line, size_t len)
{
	struct rd_pipe *p = rd->pipe;
	if (p->ops->on_line(p, line, len) < 0) {
		rd_pipe_stop(p);
		return;
	}
	if (rd->base.call && (p->inflight >= CATFILE_WINDOW || rd_full(rd))) {
		p->blocked = rd_full(rd);
		rd_lines_pause(rd);
	}
}

static void pipe_end(struct rd *rd, int status, const struct strbuf *err)
{
	struct rd_pipe *p = rd->pipe;
	p->listing_done = 1;
	p->status = status;
	strbuf_add(&p->err, err->buf, err->len);
	pipe_check_end(p);
}

int rd_pipe_start(struct rd_pipe *p, struct rd *rd, const struct git_call *gc, char delim,
		  const struct rd_pipe_ops *ops)
{
	memset(p, 0, sizeof(*p));
	p->rd = rd;
	p->ops = ops;
	strbuf_init(&p->err, 0);
	rd->pipe = p;
	return rd_lines_start(rd, gc, delim, pipe_line, pipe_end);
}

static void pipe_object(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct pipe_read *r = arg;
	struct rd_pipe *p = r->p;
	void *item = r->item;
	struct catfile_info copy;
	if (info) {
		/* info may live in r (info-only reads), which goes away below */
		copy = *info;
		info = &copy;
	}
	/* replies come in request order: this is the head */
	p->head = r->next;
	if (!p->head)
		p->tail = NULL;
	p->inflight--;
	free(r);
	p->ops->on_object(p, item, status, info, data);
	if (!p->rd->base.call)
		return;
	pipe_flow(p);
	pipe_check_end(p);
}

static uint64_t pipe_info_info(void *arg, const struct catfile_info *info)
{
	struct pipe_read *r = arg;
	r->info = *info;
	r->have_info = 1;
	return 0;
}

static void pipe_info_done(void *arg, int status)
{
	struct pipe_read *r = arg;
	struct strbuf empty = STRBUF_INIT;
	pipe_object(r, status, r->have_info ? &r->info : NULL, &empty);
}

static const struct catfile_read_ops pipe_info_ops = { pipe_info_info, NULL, pipe_info_done };

/* Ask cat-file for the whole object or (info_only) its header; replies queue in request order. */
static int pipe_request(struct rd_pipe *p, const char *rev, size_t len, void *item, int owns, int info_only)
{
	struct pipe_read *r = xcalloc(1, sizeof(*r));
	int rc = -1;
	r->p = p;
	r->item = item;
	r->owns = owns;
	if (p->rd->cf)
		rc = info_only ? catfile_info(p->rd->cf, rev, len, &pipe_info_ops, r)
			       : catfile_read(p->rd->cf, rev, len, MAX_OBJECT_SIZE, pipe_object, r);
	if (rc < 0) {
		free(r);
		return -1;
	}
	if (p->tail)
		p->tail->next = r;
	else
		p->head = r;
	p->tail = r;
	p->inflight++;
	return 0;
}

int rd_pipe_read(struct rd_pipe *p, const char *rev, size_t len, void *item, int owns)
{
	return pipe_request(p, rev, len, item, owns, 0);
}

int rd_pipe_info(struct rd_pipe *p, const char *rev, size_t len, void *item, int owns)
{
	return pipe_request(p, rev, len, item, owns, 1);
}

void rd_pipe_stop(struct rd_pipe *p)
{
	if (p->listing_done)
		return;
	p->stopped = 1;
	p->listing_done = 1;
	rd_lines_stop(p->rd);
	pipe_check_end(p);
}

void rd_pipe_writable(struct rd_pipe *p)
{
	if (p->blocked) {
		p->blocked = 0;
		pipe_flow(p);
	}
}

void rd_pipe_release(struct rd_pipe *p)
{
	while (p->head) {
		struct pipe_read *r = p->head;
		p->head = r->next;
		if (r->owns && p->ops->free_item)
			p->ops->free_item(r->item);
		free(r);
	}
	strbuf_release(&p->err);
}

/* --- commit batches and page tokens --- */

void rd_commits_flush(struct rd *rd, struct rd_commits *b)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(b->resp, "commits");
	ProtobufCMessage *m;
	if (!b->n)
		return;
	/* the repeated field's count and array, set the way generated code reads them */
	m = xcalloc(1, b->resp->sizeof_message);
	protobuf_c_message_init(b->resp, m);
	*(size_t *)((char *)m + f->quantifier_offset) = b->n;
	*(Gitaly__GitCommit ***)((char *)m + f->offset) = b->v;
	rd_send(rd, m);
	free(m);
	for (size_t i = 0; i < b->n; i++)
		gitaly_commit_free(b->v[i]);
	b->n = 0;
	b->bytes = 0;
}

void rd_commits_add(struct rd *rd, struct rd_commits *b, Gitaly__GitCommit *c)
{
	size_t sz = protobuf_c_message_get_packed_size(&c->base);
	if (b->n && b->bytes + sz >= BATCH_BYTES)
		rd_commits_flush(rd, b);
	ALLOC_GROW(b->v, b->n + 1, b->alloc);
	b->v[b->n++] = c;
	b->bytes += sz;
}

void rd_commits_release(struct rd_commits *b)
{
	for (size_t i = 0; i < b->n; i++)
		gitaly_commit_free(b->v[i]);
	free(b->v);
	b->v = NULL;
	b->n = b->alloc = b->bytes = 0;
}

int rd_page_step(const Gitaly__PaginationParameter *pp, int *token_seen, int32_t *count, const char *id,
		 size_t len)
{
	const char *token = pp && pp->page_token ? pp->page_token : "";
	if (*token && !*token_seen) {
		*token_seen = strlen(token) == len && !memcmp(token, id, len);
		return 1;
	}
	if (pp && pp->limit > 0 && *count >= pp->limit)
		return -1;
	(*count)++;
	return 0;
}

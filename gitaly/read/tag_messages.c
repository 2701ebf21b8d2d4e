/*
 * GetTagMessages: the whole message of each requested tag object, streamed
 * from cat-file as it comes (docs/technical/refs.md, "GetTagMessages").
 */
#include "read/read.h"
#include "base/pb.h"
#include "base/util.h"
#include "ref.pb-c.h"

#include <errno.h>
#include <string.h>

struct tag_messages {
	struct rd rd;
	Gitaly__GetTagMessagesRequest *req;
	size_t idx;
	int in_body, prev_nl, cf_paused, failed;
	struct strbuf piece;
};

static void tm_free(struct rd *rd)
{
	struct tag_messages *x = (struct tag_messages *)rd;
	strbuf_release(&x->piece);
}

static void tm_send_piece(struct tag_messages *x)
{
	struct strbuf msg = STRBUF_INIT;
	if (!x->piece.len || !x->rd.base.call)
		return;
	pb_put_bytes(&msg, 2, x->piece.buf, x->piece.len);   /* message = 2 */
	grpc_call_send(x->rd.base.call, msg.buf, msg.len);
	strbuf_release(&msg);
	strbuf_reset(&x->piece);
	if (x->rd.cf && !x->cf_paused && rd_full(&x->rd)) {
		x->cf_paused = 1;
		catfile_pause(x->rd.cf);
	}
}

static uint64_t tm_info(void *arg, const struct catfile_info *info)
{
	struct tag_messages *x = arg;
	Gitaly__GetTagMessagesResponse first = GITALY__GET_TAG_MESSAGES_RESPONSE__INIT;
	if (info->type != CATFILE_TAG) {
		x->failed = 1;
		rd_finish(&x->rd, GRPC_INTERNAL, "getting tag: expected tag, got %s", catfile_type_name(info->type));
		return 0;
	}
	first.tag_id = x->req->tag_ids[x->idx];
	rd_send(&x->rd, &first);
	x->in_body = 0;
	x->prev_nl = 1;      /* the headers end at the first empty line */
	return info->size;
}

static void tm_data(void *arg, const char *buf, size_t len)
{
	struct tag_messages *x = arg;
	size_t i = 0;
	if (x->failed)
		return;
	if (!x->in_body) {
		for (; i < len; i++) {
			if (buf[i] == '\n') {
				if (x->prev_nl) {
					x->in_body = 1;
					i++;
					break;
				}
				x->prev_nl = 1;
			} else {
				x->prev_nl = 0;
			}
		}
	}
	while (x->in_body && i < len && x->rd.base.call) {
		size_t n = MIN(len - i, (size_t)MSG_CHUNK - x->piece.len);
		strbuf_add(&x->piece, buf + i, n);
		i += n;
		if (x->piece.len == MSG_CHUNK)
			tm_send_piece(x);
	}
}

static void tm_next(struct tag_messages *x);

static void tm_done(void *arg, int status)
{
	struct tag_messages *x = arg;
	if (x->failed || !x->rd.base.call)
		return;
	if (status == CATFILE_MISSING) {
		rd_finish(&x->rd, GRPC_INTERNAL, "getting tag: object not found");
		return;
	}
	if (status < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "getting tag: %s", strerror(-status));
		return;
	}
	tm_send_piece(x);
	x->idx++;
	tm_next(x);
}

static const struct catfile_read_ops tm_ops = { tm_info, tm_data, tm_done };

static void tm_next(struct tag_messages *x)
{
	const char *id;
	int rc;
	if (!x->rd.base.call)
		return;
	if (x->idx == x->req->n_tag_ids) {
		rd_ok(&x->rd);
		return;
	}
	id = x->req->tag_ids[x->idx] ? x->req->tag_ids[x->idx] : "";
	rc = catfile_contents(x->rd.cf, id, strlen(id), &tm_ops, x);
	if (rc == -EINVAL)
		rd_finish(&x->rd, GRPC_INTERNAL, "getting tag: object not found");
	else if (rc < 0)
		rd_finish(&x->rd, GRPC_INTERNAL, "getting tag: %s", strerror(-rc));
}

static void tm_writable(struct rd *rd)
{
	struct tag_messages *x = (struct tag_messages *)rd;
	if (x->cf_paused && rd->cf && !rd_full(rd)) {
		x->cf_paused = 0;
		catfile_resume(rd->cf);
	}
}

static void tm_leased(struct rd *rd)
{
	tm_next((struct tag_messages *)rd);
}

static void get_tag_messages(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__GetTagMessagesRequest *req = msg_unpack(call, &gitaly__get_tag_messages_request__descriptor, buf, len);
	struct tag_messages *x;

	if (!req)
		return;
	x = (struct tag_messages *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	x->rd.on_free = tm_free;
	x->rd.on_writable = tm_writable;
	strbuf_init(&x->piece, 0);
	if (!req->n_tag_ids) {
		rd_ok(&x->rd);
		return;
	}
	rd_lease(&x->rd, tm_leased);
}

void gitaly_register_tag_messages(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.RefService/GetTagMessages", get_tag_messages, g);
}

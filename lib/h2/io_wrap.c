/* An io that replays bytes already read from another io, then passes everything through. */
#include "io.h"
#include "../base/util.h"

#include <stdlib.h>
#include <string.h>

struct io_wrap {
	struct io io;
	struct io *inner;
	char *prefix;
	size_t prefix_len;
	int reading;
	uv_idle_t replay;             /* delivers the prefix from the loop */
	int replay_active;
	void (*on_close_hook)(void *arg);
	void *hook_arg;
	int inner_closed, replay_closed;
};

static void wrap_maybe_free(struct io_wrap *w)
{
	if (!w->inner_closed || !w->replay_closed)
		return;
	if (w->io.on_close)
		w->io.on_close(&w->io);
	if (w->on_close_hook)
		w->on_close_hook(w->hook_arg);
	free(w->prefix);
	free(w);
}

static void on_inner_read(struct io *inner, const char *buf, ssize_t n)
{
	struct io_wrap *w = inner->data;
	if (w->io.on_read)
		w->io.on_read(&w->io, buf, n);
}

static void on_inner_close(struct io *inner)
{
	struct io_wrap *w = inner->data;
	w->inner_closed = 1;
	wrap_maybe_free(w);
}

static void on_replay(uv_idle_t *h)
{
	struct io_wrap *w = h->data;
	char *p = w->prefix;
	size_t n = w->prefix_len;
	uv_idle_stop(h);
	w->replay_active = 0;
	w->prefix = NULL;
	w->prefix_len = 0;
	if (n && w->io.on_read && !w->io.closing)
		w->io.on_read(&w->io, p, (ssize_t)n);
	free(p);
	if (w->reading && !w->io.closing)
		io_read_start(w->inner);
}

static int wrap_read_start(struct io *io)
{
	struct io_wrap *w = (struct io_wrap *)io;
	w->reading = 1;
	if (w->prefix_len) {
		if (!w->replay_active) {
			w->replay_active = 1;
			uv_idle_start(&w->replay, on_replay);
		}
		return 0;
	}
	return io_read_start(w->inner);
}

static int wrap_read_stop(struct io *io)
{
	struct io_wrap *w = (struct io_wrap *)io;
	w->reading = 0;
	if (w->replay_active) {
		uv_idle_stop(&w->replay);
		w->replay_active = 0;
	}
	return io_read_stop(w->inner);
}

struct wrap_write {
	struct io_wrap *w;
	io_write_cb cb;
	void *arg;
};

static void on_inner_written(struct io *inner, int status, void *arg)
{
	struct wrap_write *ww = arg;
	io_write_cb cb = ww->cb;
	void *cbarg = ww->arg;
	struct io_wrap *w = ww->w;
	free(ww);
	if (cb)
		cb(&w->io, status, cbarg);
}

static int wrap_write(struct io *io, const char *buf, size_t len, io_write_cb cb, void *arg)
{
	struct io_wrap *w = (struct io_wrap *)io;
	struct wrap_write *ww = xmalloc(sizeof(*ww));
	int rc;
	ww->w = w;
	ww->cb = cb;
	ww->arg = arg;
	rc = io_write(w->inner, buf, len, on_inner_written, ww);
	if (rc < 0)
		free(ww);
	return rc;
}

static int wrap_writev(struct io *io, const uv_buf_t *bufs, unsigned nbufs, io_write_cb cb, void *arg)
{
	struct io_wrap *w = (struct io_wrap *)io;
	struct wrap_write *ww;
	int rc;

	if (!w->inner->ops->writev)
		return UV_ENOSYS;
	ww = xmalloc(sizeof(*ww));
	ww->w = w;
	ww->cb = cb;
	ww->arg = arg;
	rc = io_writev(w->inner, bufs, nbufs, on_inner_written, ww);
	if (rc < 0)
		free(ww);
	return rc;
}

static ssize_t wrap_try_write(struct io *io, const char *buf, size_t len)
{
	return io_try_write(((struct io_wrap *)io)->inner, buf, len);
}

static void on_replay_closed(uv_handle_t *h)
{
	struct io_wrap *w = h->data;
	w->replay_closed = 1;
	wrap_maybe_free(w);
}

static void wrap_close(struct io *io)
{
	struct io_wrap *w = (struct io_wrap *)io;
	uv_close((uv_handle_t *)&w->replay, on_replay_closed);
	io_close(w->inner);
}

static const char *wrap_peer(struct io *io)
{
	return io_peer(((struct io_wrap *)io)->inner);
}

static const struct io_ops wrap_ops = {
	.read_start = wrap_read_start,
	.read_stop = wrap_read_stop,
	.write = wrap_write,
	.close = wrap_close,
	.peer = wrap_peer,
	.writev = wrap_writev,
	.try_write = wrap_try_write,
};

struct io *io_wrap(uv_loop_t *loop, struct io *inner, const char *prefix, size_t len,
		   void (*on_close_hook)(void *arg), void *hook_arg)
{
	struct io_wrap *w = xcalloc(1, sizeof(*w));
	w->io.ops = &wrap_ops;
	w->inner = inner;
	w->prefix = len ? xmemdup(prefix, len) : NULL;
	w->prefix_len = len;
	w->on_close_hook = on_close_hook;
	w->hook_arg = hook_arg;
	uv_idle_init(loop, &w->replay);
	w->replay.data = w;
	inner->data = w;
	inner->on_read = on_inner_read;
	inner->on_close = on_inner_close;
	return &w->io;
}

struct io *io_wrap_inner(struct io *io)
{
	return io->ops == &wrap_ops ? ((struct io_wrap *)io)->inner : NULL;
}

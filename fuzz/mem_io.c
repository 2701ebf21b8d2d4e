/* The memory transport of the fuzz harnesses: see mem_io.h. */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "mem_io.h"

static volatile int write_sink;

int mem_io_busy(const struct mem_io *m)
{
	const struct mem_feed *f = m->feed;

	if (m->close_requested || m->writes_nr)
		return 1;
	return m->reading && (f->off < f->len || (f->send_eof && !f->eof_sent));
}

static void mem_schedule(struct mem_io *m);

static void mem_freed(uv_handle_t *h)
{
	struct mem_io *m = h->data;

	free(m->writes);
	free(m);
}

/*
 * Complete the writes queued before this turn. A callback may queue more
 * (the next frames): those complete on a later turn, as on a real socket.
 */
static void mem_complete_writes(struct mem_io *m, int status)
{
	size_t n = m->writes_nr, i;

	if (!n)
		return;   /* writes may still be NULL: no pointer arithmetic on it */
	for (i = 0; i < n; i++) {
		struct mem_pending_write w = m->writes[i];

		/*
		 * The buffer must still be valid: memchr reads all of it, and ASan's
		 * interceptor checks the whole range at once (a byte loop would
		 * cost most of the fuzzer's time).
		 */
		if (w.len)
			write_sink ^= memchr(w.buf, 0xa5, w.len) != NULL;
		if (w.cb)
			w.cb(&m->io, status, w.arg);
	}
	memmove(m->writes, m->writes + n, (m->writes_nr - n) * sizeof(*m->writes));
	m->writes_nr -= n;
}

static void mem_deliver(struct mem_io *m)
{
	struct mem_feed *f = m->feed;

	if (f->off < f->len) {
		size_t n = MIN(f->chunk, f->len - f->off);
		char *buf = xmemdup(f->in + f->off, n);   /* the reader may not keep it */

		f->off += n;
		m->io.on_read(&m->io, buf, (ssize_t)n);
		free(buf);
	} else if (f->send_eof && !f->eof_sent) {
		f->eof_sent = 1;
		m->io.on_read(&m->io, NULL, UV_EOF);
	}
}

static void mem_tick(uv_idle_t *h)
{
	struct mem_io *m = h->data;

	if (!m->close_requested) {
		mem_complete_writes(m, 0);
		if (!m->close_requested && m->reading)
			mem_deliver(m);
	}
	if (m->close_requested) {
		/* Writes still queued fail, as libuv cancels them at close. */
		mem_complete_writes(m, UV_ECANCELED);
		uv_idle_stop(&m->tick);
		m->feed->conn = NULL;
		if (m->io.on_close)
			m->io.on_close(&m->io);
		uv_close((uv_handle_t *)&m->tick, mem_freed);
		return;
	}
	mem_schedule(m);
}

static void mem_schedule(struct mem_io *m)
{
	if (mem_io_busy(m))
		uv_idle_start(&m->tick, mem_tick);
	else
		uv_idle_stop(&m->tick);
}

static int mem_read_start(struct io *io)
{
	struct mem_io *m = container_of(io, struct mem_io, io);

	if (io->closing || m->close_requested)
		return UV_EPIPE;
	m->reading = 1;
	mem_schedule(m);
	return 0;
}

static int mem_read_stop(struct io *io)
{
	struct mem_io *m = container_of(io, struct mem_io, io);

	m->reading = 0;
	if (!m->close_requested)
		mem_schedule(m);
	return 0;
}

static int mem_write(struct io *io, const char *buf, size_t len, io_write_cb cb, void *arg)
{
	struct mem_io *m = container_of(io, struct mem_io, io);

	/* As io_uv: no writes once closing, and then the callback never fires. */
	if (io->closing || m->close_requested)
		return UV_EPIPE;
	ALLOC_GROW(m->writes, m->writes_nr + 1, m->writes_alloc);
	m->writes[m->writes_nr++] = (struct mem_pending_write){ buf, len, cb, arg };
	mem_schedule(m);
	return 0;
}

static void mem_close(struct io *io)
{
	struct mem_io *m = container_of(io, struct mem_io, io);

	if (m->close_requested)
		return;
	m->close_requested = 1;
	m->reading = 0;
	uv_idle_start(&m->tick, mem_tick);
}

static const char *mem_peer(struct io *io)
{
	return "fuzz";
}

static const struct io_ops mem_ops = {
	.read_start = mem_read_start,
	.read_stop = mem_read_stop,
	.write = mem_write,
	.close = mem_close,
	.peer = mem_peer,
};

struct mem_io *mem_io_new(uv_loop_t *loop, struct mem_feed *f)
{
	struct mem_io *m = xcalloc(1, sizeof(*m));

	m->io.ops = &mem_ops;
	m->feed = f;
	uv_idle_init(loop, &m->tick);
	m->tick.data = m;
	f->conn = m;
	return m;
}


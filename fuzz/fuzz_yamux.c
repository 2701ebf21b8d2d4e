/*
 * libFuzzer target: arbitrary bytes from the peer into a yamux session.
 *
 * The first bytes are handed over as read ahead by a handshake (preread);
 * the rest arrive through a memory transport (struct io) that delivers them
 * in chunks from the loop, as a socket would, and completes writes one loop
 * turn later. Before the input flows, the session has opened streams of its
 * own (one with more data queued than a window, one idle, one closed at
 * once, one waiting for the accept backlog, one dialled) and sent a ping, so
 * the fuzzer's ACKs, window updates, RSTs and pongs find something to act on.
 *
 * The first input byte chooses how the rest is presented:
 *   bits 0-2  read chunk size
 *   bit  3    end with EOF from the peer (else we close the session first)
 *   bits 4-5  what owners do with accepted streams: 0 echo everything back
 *             and close at EOF; 1 never read (data waits in the window);
 *             2 reset at once (odd ids) or close at once, so that their
 *             data is dropped and credited (even ids); 3 read, and stop
 *             reading after each chunk until the echo is written
 *   bit  6    16 MiB stream windows instead of 256 KiB
 *   bit  7    the session is the client (odd ids are ours)
 *
 * After the input is consumed the session is closed; every stream owner
 * closes its stream, the loop must end up empty, and LeakSanitizer finds
 * anything not freed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/log.h"
#include "base/util.h"
#include "h2/io.h"
#include "yamux/yamux.h"
#include "mem_io.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TURNS 100000
#define QUIET_TURNS 4

static const size_t chunk_sizes[] = { 1, 5, 12, 13, 64, 512, 4096, SIZE_MAX };

/* --- stream owners --- */

enum mode { MODE_ECHO, MODE_IDLE, MODE_RESET, MODE_STOPGO };

struct owner {
	struct io *io;
	int closed;          /* on_close fired: io is gone */
	int done;            /* final read seen */
	enum mode mode;
	unsigned writes;     /* outstanding */
};

struct world {
	enum mode mode;
	struct owner **owners;
	size_t nr, alloc;
	int session_closed;
	int pings;
	int dialled;
};

static void owner_on_close(struct io *io)
{
	struct owner *o = io->data;

	o->closed = 1;
	o->io = NULL;
}

static void owner_on_write(struct io *io, int status, void *arg)
{
	struct owner *o = io->data;

	free(arg);
	o->writes--;
	/* stop-and-go: resume reading once the echo is out (or failed: then the read fails too) */
	if (o->mode == MODE_STOPGO && !o->done && !io->closing)
		io_read_start(io);
}

static void owner_on_read(struct io *io, const char *buf, ssize_t n)
{
	struct owner *o = io->data;

	if (n < 0) {
		o->done = 1;
		io_close(io);
		return;
	}
	if (o->mode == MODE_ECHO || o->mode == MODE_STOPGO) {
		char *copy = xmemdup(buf, (size_t)n);

		if (io_write(io, copy, (size_t)n, owner_on_write, copy) < 0) {
			free(copy);
			return;
		}
		o->writes++;
		if (o->mode == MODE_STOPGO)
			io_read_stop(io);
	}
}

static struct owner *owner_new(struct world *w, struct io *io, enum mode mode)
{
	struct owner *o = xcalloc(1, sizeof(*o));

	ALLOC_GROW(w->owners, w->nr + 1, w->alloc);
	w->owners[w->nr++] = o;
	o->io = io;
	o->mode = mode;
	io->data = o;
	io->on_read = owner_on_read;
	io->on_close = owner_on_close;
	return o;
}

static void on_accept(struct yamux_session *s, struct io *stream, void *data)
{
	struct world *w = data;
	struct owner *o = owner_new(w, stream, w->mode);

	switch (w->mode) {
	case MODE_RESET:
		if (yamux_stream_id(stream) & 1)
			yamux_stream_reset(stream);
		else
			io_close(stream);
		break;
	case MODE_IDLE:
		break;
	case MODE_ECHO:
	case MODE_STOPGO:
		io_read_start(o->io);
		break;
	}
}

static void on_session_close(struct yamux_session *s, int reason, void *data)
{
	struct world *w = data;

	w->session_closed++;
}

static void on_ping(struct yamux_session *s, int status, uint64_t rtt_ms, void *arg)
{
	struct world *w = arg;

	w->pings++;
}

static void on_dialled(void *arg, struct io *io, int status)
{
	struct world *w = arg;

	w->dialled++;
	if (io) {
		owner_new(w, io, MODE_IDLE);
		io_write(io, "dialled", 7, NULL, NULL);
	}
}

static void print_handle(uv_handle_t *h, void *arg)
{
	fprintf(stderr, "fuzz_yamux: handle left open: %s active=%d closing=%d\n",
		uv_handle_type_name(h->type), uv_is_active(h), uv_is_closing(h));
}

static int all_closed(const struct world *w)
{
	for (size_t i = 0; i < w->nr; i++)
		if (!w->owners[i]->closed)
			return 0;
	return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *lvl = getenv("FUZZ_LOG");
	int level = lvl ? log_level_parse(lvl) : -1;

	log_configure(LOG_FORMAT_TEXT, level >= 0 ? (enum log_level)level : LOG_FATAL, NULL);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char ours[300 * 1024];   /* more than one initial window */
	struct mem_feed f = { 0 };
	struct world w = { 0 };
	struct yamux_opts opts;
	struct yamux_session *s;
	struct io *io;
	uv_loop_t loop;
	unsigned flags;
	int turns, quiet;

	if (!size)
		return 0;
	flags = data[0];
	data++;
	size--;
	/* 13 bytes: a header split between read-ahead and transport */
	f.in = data + MIN(size, (size_t)13);
	f.len = size - MIN(size, (size_t)13);
	f.chunk = chunk_sizes[flags & 7];
	f.send_eof = !!(flags & 0x08);
	w.mode = (enum mode)((flags >> 4) & 3);

	if (uv_loop_init(&loop))
		abort();
	yamux_opts_default(&opts);
	opts.max_stream_window = (flags & 0x40) ? YAMUX_MAX_WINDOW : YAMUX_INITIAL_WINDOW;
	opts.max_streams = 16;         /* small, so that inputs reach the limit */
	opts.accept_backlog = 2;
	opts.on_accept = on_accept;
	opts.on_close = on_session_close;
	opts.data = &w;
	opts.preread = data;
	opts.preread_len = MIN(size, (size_t)13);
	s = yamux_session_new(&loop, &mem_io_new(&loop, &f)->io, !!(flags & 0x80), &opts);

	/* Our own streams: one with more data than a window, one idle, one closed at once. */
	if (yamux_open_stream(s, &io) == 0) {
		owner_new(&w, io, MODE_ECHO);
		io_read_start(io);
		if (io_write(io, ours, sizeof(ours), NULL, NULL) < 0)
			abort();
		yamux_stream_shutdown(io);
	}
	if (yamux_open_stream(s, &io) == 0) {
		owner_new(&w, io, MODE_IDLE);
		io_write(io, "x", 1, NULL, NULL);
	}
	if (yamux_open_stream(s, &io) == 0) {   /* beyond the backlog: never sent */
		owner_new(&w, io, MODE_IDLE);
		io_close(io);
	}
	if (yamux_open_stream(s, &io) == 0) {   /* waits for an ACK, then goes */
		owner_new(&w, io, MODE_IDLE);
		io_write(io, "waiting", 7, NULL, NULL);
	}
	if (yamux_dial(&loop, "", s, on_dialled, &w) < 0)
		abort();
	yamux_session_ping(s, on_ping, &w);

	for (turns = 0, quiet = 0; turns < MAX_TURNS && quiet < QUIET_TURNS; turns++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		quiet = f.conn && mem_io_busy(f.conn) ? 0 : quiet + 1;
	}

	/* Close the session; owners close their streams once told (or now, if idle). */
	if (!w.session_closed)
		yamux_session_close(s);
	for (size_t i = 0; i < w.nr; i++)
		if (!w.owners[i]->closed && w.owners[i]->mode == MODE_IDLE)
			io_close(w.owners[i]->io);
	for (turns = 0; turns < MAX_TURNS && !(w.session_closed && all_closed(&w)); turns++)
		uv_run(&loop, UV_RUN_NOWAIT);
	if (!all_closed(&w)) {
		fprintf(stderr, "fuzz_yamux: a reading owner was never told the session closed\n");
		abort();
	}
	uv_run(&loop, UV_RUN_DEFAULT);

	if (w.session_closed != 1 || !all_closed(&w) || w.pings != 1 || w.dialled != 1) {
		fprintf(stderr, "fuzz_yamux: teardown incomplete (session_closed=%d, owners closed=%d, pings=%d, dialled=%d)\n",
			w.session_closed, all_closed(&w), w.pings, w.dialled);
		abort();
	}
	if (uv_loop_close(&loop)) {
		uv_walk(&loop, print_handle, NULL);
		abort();
	}
	for (size_t i = 0; i < w.nr; i++)
		free(w.owners[i]);
	free(w.owners);
	return 0;
}

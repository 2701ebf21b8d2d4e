/*
 * libFuzzer target: arbitrary bytes from a "client" into a gRPC server connection.
 *
 * The bytes reach the server through a memory transport (struct io) that
 * delivers them in chunks from the loop, as a socket would, and completes
 * writes one loop turn later. The server has a unary echo, a streaming echo
 * with backpressure, a method that fails with a message made of request bytes,
 * and the health service, so both the HTTP/2 layer and the gRPC framing above
 * it are reached.
 *
 * The first input byte chooses how the rest is presented:
 *   bits 0-1  0: raw bytes; 1: client preface + raw bytes;
 *             2: preface + a valid HEADERS frame for stream 1 + raw bytes;
 *             3: preface + HEADERS + the rest as DATA frames ending the stream
 *                (the fuzzer then works on gRPC message framing directly)
 *   bits 2-3  the method named by that HEADERS frame
 *   bit  4    end with EOF from the client (else the server shuts down first)
 *   bits 5-7  read chunk size
 *
 * After the input is consumed the server shuts down and is freed; the loop
 * must then be empty and LeakSanitizer finds anything not freed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/log.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "grpc/server.h"
#include "h2/io.h"
#include "mem_io.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Loop turns while feeding input; far more than any input up to -max_len needs. */
#define MAX_TURNS 100000
/* Turns with nothing left for the transport to do before we call it quiet. */
#define QUIET_TURNS 4

static const char *const methods[] = {
	"/fuzz.Test/Unary",
	"/fuzz.Test/Stream",
	"/fuzz.Test/Fail",
	"/grpc.health.v1.Health/Check",
};
static const size_t chunk_sizes[] = { 1, 3, 9, 17, 64, 512, 4096, SIZE_MAX };

/* --- handlers --- */

static void unary_echo(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	grpc_call_reply(call, req, len);
}

static void unary_fail(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct grpc_metadata trailers = GRPC_METADATA_INIT;
	char *msg = xstrndup((const char *)req, MIN(len, 256));

	/* Request bytes go into the status message and a -bin trailer: both get encoded. */
	grpc_metadata_add(&trailers, "x-fuzz-bin", 10, (const char *)req, MIN(len, 64));
	grpc_call_finish(call, GRPC_INVALID_ARGUMENT, *msg ? msg : NULL, &trailers);
	grpc_metadata_release(&trailers);
	free(msg);
}

static void stream_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	grpc_call_send(call, msg, len);
	if (grpc_call_send_full(call))
		grpc_call_pause_recv(call);
}

static void stream_writable(struct grpc_call *call)
{
	grpc_call_resume_recv(call);
}

static void stream_half_close(struct grpc_call *call)
{
	grpc_call_finish(call, GRPC_OK, NULL, NULL);
}

static const struct grpc_call_ops stream_ops = {
	.on_message = stream_message,
	.on_half_close = stream_half_close,
	.on_writable = stream_writable,
};

static void stream_start(struct grpc_call *call, void *data)
{
	grpc_call_set_ops(call, &stream_ops, NULL);
}

/* Refuse calls that carry "x-fuzz-deny", so the refusal path is reached too. */
static enum grpc_code deny_hook(struct grpc_call *call, struct strbuf *msg, void *data)
{
	if (grpc_metadata_get(grpc_call_metadata(call), "x-fuzz-deny")) {
		strbuf_addstr(msg, "denied");
		return GRPC_PERMISSION_DENIED;
	}
	return GRPC_OK;
}

static const struct grpc_server_hooks hooks = { .on_call_start = deny_hook };

/* --- building the input --- */

/* HPACK "literal header field without indexing, new name", no Huffman. */
static void hpack_literal(struct strbuf *sb, const char *name, const char *value)
{
	strbuf_addch(sb, 0);
	strbuf_addch(sb, (int)strlen(name));
	strbuf_addstr(sb, name);
	strbuf_addch(sb, (int)strlen(value));
	strbuf_addstr(sb, value);
}

static void frame_header(struct strbuf *sb, size_t len, int type, int flags, uint32_t stream)
{
	unsigned char h[9] = {
		(unsigned char)(len >> 16), (unsigned char)(len >> 8), (unsigned char)len,
		(unsigned char)type, (unsigned char)flags,
		(unsigned char)(stream >> 24), (unsigned char)(stream >> 16),
		(unsigned char)(stream >> 8), (unsigned char)stream,
	};

	strbuf_add(sb, h, sizeof(h));
}

static void add_preface(struct strbuf *sb)
{
	static const char magic[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

	strbuf_add(sb, magic, sizeof(magic) - 1);
	frame_header(sb, 0, 0x4, 0, 0);   /* empty SETTINGS */
}

static void add_request_headers(struct strbuf *sb, const char *path)
{
	struct strbuf block = STRBUF_INIT;

	hpack_literal(&block, ":method", "POST");
	hpack_literal(&block, ":scheme", "http");
	hpack_literal(&block, ":path", path);
	hpack_literal(&block, ":authority", "localhost");
	hpack_literal(&block, "content-type", "application/grpc");
	hpack_literal(&block, "te", "trailers");
	frame_header(sb, block.len, 0x1, 0x4, 1);   /* HEADERS, END_HEADERS */
	strbuf_add(sb, block.buf, block.len);
	strbuf_release(&block);
}

/* The rest as DATA frames on stream 1 within the default 16 KiB frame size. */
static void add_data(struct strbuf *sb, const uint8_t *data, size_t len)
{
	do {
		size_t n = MIN(len, 16384);

		frame_header(sb, n, 0x0, n == len ? 0x1 : 0, 1);
		strbuf_add(sb, data, n);
		data += n;
		len -= n;
	} while (len);
}

/* --- driver --- */

static void shutdown_done(struct grpc_server *s, void *arg)
{
	int *shut_down = arg;

	*shut_down = 1;
	grpc_server_free(s);
}

static void print_handle(uv_handle_t *h, void *arg)
{
	fprintf(stderr, "fuzz_h2_server: handle left open: %s active=%d closing=%d\n",
		uv_handle_type_name(h->type), uv_is_active(h), uv_is_closing(h));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* FUZZ_LOG=debug to see what the server says; silent by default for speed. */
	const char *lvl = getenv("FUZZ_LOG");
	int level = lvl ? log_level_parse(lvl) : -1;

	log_configure(LOG_FORMAT_TEXT, level >= 0 ? (enum log_level)level : LOG_FATAL, NULL);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf in = STRBUF_INIT;
	struct mem_feed f = { 0 };
	struct grpc_server_opts opts;
	struct grpc_server *s;
	struct mem_io *m;
	uv_loop_t loop;
	unsigned mode, flags;
	int turns, quiet, shut_down = 0;

	if (!size)
		return 0;
	flags = data[0];
	data++;
	size--;

	mode = flags & 3;
	if (mode >= 1)
		add_preface(&in);
	if (mode >= 2)
		add_request_headers(&in, methods[(flags >> 2) & 3]);
	if (mode == 3)
		add_data(&in, data, size);
	else
		strbuf_add(&in, data, size);
	f.in = (const uint8_t *)in.buf;
	f.len = in.len;
	f.send_eof = !!(flags & 0x10);
	f.chunk = chunk_sizes[flags >> 5];

	if (uv_loop_init(&loop))
		abort();
	grpc_server_opts_default(&opts);
	/* Small limits so that inputs of a few KiB reach them. */
	opts.max_recv_msg = 1024;
	opts.stream_window = 4096;
	opts.max_concurrent_streams = 8;
	s = grpc_server_new(&loop, &opts);
	grpc_server_add_unary(s, methods[0], unary_echo, NULL);
	grpc_server_add_method(s, methods[1], stream_start, NULL);
	grpc_server_add_unary(s, methods[2], unary_fail, NULL);
	grpc_server_add_health(s);
	grpc_server_set_hooks(s, &hooks);

	m = mem_io_new(&loop, &f);
	if (grpc_server_adopt(s, &m->io) < 0 && f.conn && !m->close_requested)
		io_close(&m->io);

	/* Feed everything, and let the server answer, until the transport is quiet. */
	for (turns = 0, quiet = 0; turns < MAX_TURNS && quiet < QUIET_TURNS; turns++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		quiet = f.conn && mem_io_busy(f.conn) ? 0 : quiet + 1;
	}

	/* Shutting down cancels what is left and closes the connection. */
	grpc_server_shutdown(s, 0, shutdown_done, &shut_down);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (!shut_down || f.conn) {
		fprintf(stderr, "fuzz_h2_server: shutdown did not complete (done=%d, io %s)\n",
			shut_down, f.conn ? "still open" : "closed");
		abort();
	}
	if (uv_loop_close(&loop)) {
		uv_walk(&loop, print_handle, NULL);
		abort();
	}
	strbuf_release(&in);
	return 0;
}

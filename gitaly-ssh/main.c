/* gitaly-ssh: lets git reach a gitaly's SSHService as if it were ssh; see docs/technical/gitaly-transport.md, "gitaly-ssh". */
#include "base/pb.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "backchannel/backchannel.h"
#include "cli/cli.h"
#include "grpc/auth.h"
#include "grpc/client.h"
#include "grpc/metadata.h"
#include "h2/io.h"
#include "yamux/yamux.h"
#include "ssh.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Environment (set by the node that runs git against ssh://gitaly/...):
 *   GITALY_ADDRESS       unix:/path, unix:///path, tcp://host:port (dns:[///]host:port)
 *   GITALY_PAYLOAD       the first request as protobuf JSON
 *   GITALY_TOKEN         shared secret; a v2 token is derived for the call
 *   GITALY_FEATUREFLAGS  "name:true,other:false" -> gitaly-feature-* metadata
 *   GITALY_WD            directory to chdir into first
 *   CORRELATION_ID       -> x-gitlab-correlation-id
 *   GITALY_USE_SIDECHANNEL  true: upload-pack goes through SSHUploadPackWithSidechannel
 *                       (a backchannel connection; docs/technical/sidechannel.md).
 * Exit code: the last exit_status the server sent (0 if none); 1 on any error.
 */

#define STDIN_CHUNK (64 * 1024)
#define OUT_HIGH (1024 * 1024)
#define OUT_LOW (256 * 1024)
#define PAYLOAD_MAX (1024 * 1024)

enum verb { UPLOAD_PACK, RECEIVE_PACK, UPLOAD_ARCHIVE };

struct pack_rpc {
	const char *method;
	const ProtobufCMessageDescriptor *desc;
};

/* The pack commands, in enum verb's order (git runs `gitaly-ssh <verb> <host> <command>`). */
static const struct cli_command verbs[] = {
	{ "upload-pack", NULL, "fetch", &(const struct pack_rpc){ "/gitaly.SSHService/SSHUploadPack",
							     &gitaly__sshupload_pack_request__descriptor } },
	{ "receive-pack", NULL, "push", &(const struct pack_rpc){ "/gitaly.SSHService/SSHReceivePack",
							      &gitaly__sshreceive_pack_request__descriptor } },
	{ "upload-archive", NULL, "archive", &(const struct pack_rpc){ "/gitaly.SSHService/SSHUploadArchive",
								   &gitaly__sshupload_archive_request__descriptor } },
};

static const struct pack_rpc *verb_of(enum verb v)
{
	return verbs[v].data;
}

static void err_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void err_line(const char *fmt, ...)
{
	va_list ap;
	fputs("gitaly-ssh: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

/* --- GITALY_PAYLOAD: protobuf JSON into a protobuf-c message --- */

/* protojson's default JSON name: "gl_id" -> "glId". */
static void json_name(const char *proto, struct strbuf *out)
{
	int up = 0;
	strbuf_reset(out);
	for (; *proto; proto++) {
		if (*proto == '_') {
			up = 1;
			continue;
		}
		strbuf_addch(out, up && *proto >= 'a' && *proto <= 'z' ? *proto - 'a' + 'A' : *proto);
		up = 0;
	}
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d, const char *key)
{
	struct strbuf jn = STRBUF_INIT;
	const ProtobufCFieldDescriptor *f = NULL;
	for (unsigned i = 0; i < d->n_fields && !f; i++) {
		json_name(d->fields[i].name, &jn);
		if (!strcmp(key, jn.buf) || !strcmp(key, d->fields[i].name))
			f = &d->fields[i];
	}
	strbuf_release(&jn);
	return f;
}

static int fill_message(ProtobufCMessage *m, json_t *obj, struct strbuf *err);

/* One scalar or message value into `slot` (a field, or an element of a repeated field). */
static int fill_value(const ProtobufCFieldDescriptor *f, void *slot, json_t *v, struct strbuf *err)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING:
		if (!json_is_string(v))
			goto bad;
		*(char **)slot = xstrndup(json_string_value(v), json_string_length(v));
		return 0;
	case PROTOBUF_C_TYPE_BYTES: {
		struct strbuf b64 = STRBUF_INIT, raw = STRBUF_INIT;
		ProtobufCBinaryData *bd = slot;
		int rc;
		if (!json_is_string(v))
			goto bad;
		/* protojson takes standard or URL-safe base64, padded or not */
		strbuf_add(&b64, json_string_value(v), json_string_length(v));
		for (size_t i = 0; i < b64.len; i++)
			b64.buf[i] = b64.buf[i] == '-' ? '+' : b64.buf[i] == '_' ? '/' : b64.buf[i];
		while (b64.len && b64.buf[b64.len - 1] == '=')
			strbuf_setlen(&b64, b64.len - 1);
		rc = grpc_base64_decode(&raw, b64.buf, b64.len);
		strbuf_release(&b64);
		if (rc < 0) {
			strbuf_release(&raw);
			goto bad;
		}
		bd->len = raw.len;
		bd->data = (uint8_t *)strbuf_detach(&raw, NULL);
		return 0;
	}
	case PROTOBUF_C_TYPE_BOOL:
		if (!json_is_boolean(v))
			goto bad;
		*(protobuf_c_boolean *)slot = json_is_true(v);
		return 0;
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_ENUM:
		if (!json_is_integer(v))
			goto bad;
		*(int32_t *)slot = (int32_t)json_integer_value(v);
		return 0;
	case PROTOBUF_C_TYPE_UINT32:
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			goto bad;
		*(uint32_t *)slot = (uint32_t)json_integer_value(v);
		return 0;
	case PROTOBUF_C_TYPE_INT64:
		if (!json_is_integer(v))
			goto bad;
		*(int64_t *)slot = json_integer_value(v);
		return 0;
	case PROTOBUF_C_TYPE_UINT64:
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			goto bad;
		*(uint64_t *)slot = (uint64_t)json_integer_value(v);
		return 0;
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessageDescriptor *d = f->descriptor;
		ProtobufCMessage *sub;
		if (!json_is_object(v))
			goto bad;
		sub = xcalloc(1, d->sizeof_message);
		d->message_init(sub);
		*(ProtobufCMessage **)slot = sub;
		return fill_message(sub, v, err);
	}
	default:
		strbuf_addf(err, "field \"%s\": unsupported type", f->name);
		return -1;
	}
bad:
	strbuf_addf(err, "invalid value for field \"%s\"", f->name);
	return -1;
}

static size_t value_size(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_UINT64: return 8;
	case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
	default: return 4;
	}
}

/* Unknown keys are errors, as protojson.Unmarshal makes them; null leaves the default. */
static int fill_message(ProtobufCMessage *m, json_t *obj, struct strbuf *err)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v) {
		const ProtobufCFieldDescriptor *f = find_field(d, key);
		char *slot;
		if (!f) {
			strbuf_addf(err, "unknown field \"%s\"", key);
			return -1;
		}
		if (json_is_null(v))
			continue;
		slot = (char *)m + f->offset;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n, *count = (size_t *)((char *)m + f->quantifier_offset);
			char *arr;
			if (!json_is_array(v)) {
				strbuf_addf(err, "invalid value for field \"%s\"", f->name);
				return -1;
			}
			n = json_array_size(v);
			if (*count) {
				strbuf_addf(err, "duplicate field \"%s\"", f->name);
				return -1;
			}
			arr = xcalloc(n ? n : 1, value_size(f));
			*(char **)slot = arr;
			for (size_t i = 0; i < n; i++) {
				if (fill_value(f, arr + i * value_size(f), json_array_get(v, i), err) < 0)
					return -1;
				*count = i + 1;
			}
			continue;
		}
		if (f->type == PROTOBUF_C_TYPE_STRING && *(char **)slot != (char *)protobuf_c_empty_string &&
		    *(char **)slot) {
			strbuf_addf(err, "duplicate field \"%s\"", f->name);
			return -1;
		}
		if (f->type == PROTOBUF_C_TYPE_MESSAGE && *(ProtobufCMessage **)slot) {
			strbuf_addf(err, "duplicate field \"%s\"", f->name);
			return -1;
		}
		if (fill_value(f, slot, v, err) < 0)
			return -1;
		if (f->label == PROTOBUF_C_LABEL_OPTIONAL || (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
			*(uint32_t *)((char *)m + f->quantifier_offset) =
				(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ? f->id : 1;
	}
	return 0;
}

/* Parse `json` as a `d` message; NULL with `err` set on failure. */
static ProtobufCMessage *parse_payload(const ProtobufCMessageDescriptor *d, const char *json,
				       struct strbuf *err)
{
	json_error_t je;
	json_t *root;
	ProtobufCMessage *m;

	if (strlen(json) > PAYLOAD_MAX) {
		strbuf_addstr(err, "json unmarshal: payload too large");
		return NULL;
	}
	root = json_loads(json, JSON_REJECT_DUPLICATES, &je);
	if (!root || !json_is_object(root)) {
		strbuf_addf(err, "json unmarshal: %s", root ? "not an object" : je.text);
		json_decref(root);
		return NULL;
	}
	m = xcalloc(1, d->sizeof_message);
	d->message_init(m);
	if (fill_message(m, root, err) < 0) {
		struct strbuf full = STRBUF_INIT;
		strbuf_addf(&full, "json unmarshal: %s", err->buf);
		strbuf_reset(err);
		strbuf_add(err, full.buf, full.len);
		strbuf_release(&full);
		protobuf_c_message_free_unpacked(m, NULL);
		m = NULL;
	}
	json_decref(root);
	return m;
}

/* --- the session --- */

struct input {
	int is_stream;
	union {
		uv_pipe_t pipe;
		uv_tty_t tty;
		uv_tcp_t tcp;
	} h;
	uv_fs_t req;          /* regular files and other fds: reads in the thread pool */
	int fs_pending;
	int reading, eof, closed;
	char buf[STDIN_CHUNK];
};

struct output {
	int is_stream;
	union {
		uv_pipe_t pipe;
		uv_tty_t tty;
		uv_tcp_t tcp;
	} h;
	size_t queued;
	int closed;
};

struct out_write {
	uv_write_t req;
	size_t len;
	char data[];
};

static struct session {
	uv_loop_t *loop;
	enum verb verb;
	struct grpc_channel *ch;
	struct grpc_client_call *call;   /* NULL once closed */
	struct input in;
	struct output out;
	struct strbuf msg;               /* scratch for encoding stdin messages */
	int exit_status;
	int recv_paused;
	int call_done;
	int failed;                      /* an error was printed: exit 1 */
	int finished;
} S;

/* The sidechannel of SSHUploadPackWithSidechannel (docs/technical/sidechannel.md). */
#define SC_ID 1
#define SC_MAGIC "sidechannel"
static struct sidechannel {
	int on;                  /* upload-pack with GITALY_USE_SIDECHANNEL */
	struct bc_client bc;
	struct io *stream;       /* the node opened it; NULL once closed */
	int ready;               /* "ok" sent: stdin flows */
	int done;                /* the stream closed */
	char head[19];           /* "sidechannel" + the 8-byte id */
	size_t head_len;
	char hdr[4];             /* side-band demultiplexing of the node's output */
	size_t hdr_len, left;
	int band;                /* of the current packet; 0 before its band byte */
	size_t in_flight;        /* stdin bytes written to the stream, not yet sent */
	int read_paused;
} SC;

static void maybe_finish(void);
static void stdin_start(void);
static void stdin_pause(void);

struct sc_write {
	size_t len;
	char data[];
};

static void on_sc_written(struct io *io, int status, void *arg)
{
	struct sc_write *w = arg;
	SC.in_flight -= w->len;
	free(w);
	if (SC.in_flight < OUT_LOW)
		stdin_start();
}

/* stdin as pkt-lines (at most 65516 payload bytes each); a flush ends it. */
static void sc_send(const char *buf, size_t len)
{
	while (len && SC.stream) {
		size_t n = MIN(len, (size_t)65516);
		struct sc_write *w = xmalloc(sizeof(*w) + n + 4);
		char hdr[8];
		snprintf(hdr, sizeof(hdr), "%04zx", n + 4);
		memcpy(w->data, hdr, 4);
		memcpy(w->data + 4, buf, n);
		w->len = n + 4;
		SC.in_flight += w->len;
		if (io_write(SC.stream, w->data, w->len, on_sc_written, w) < 0) {
			SC.in_flight -= w->len;
			free(w);
			return;
		}
		buf += n;
		len -= n;
	}
}

static void on_flush_written(struct io *io, int status, void *arg)
{
}

static int input_full(void)
{
	return SC.on ? SC.in_flight >= OUT_HIGH : grpc_client_call_send_full(S.call);
}

static void send_stdin(const char *buf, size_t len)
{
	if (SC.on) {
		sc_send(buf, len);
		return;
	}
	strbuf_reset(&S.msg);
	pb_put_bytes(&S.msg, 2, buf, len);
	grpc_client_call_send(S.call, S.msg.buf, S.msg.len);
}

static void stdin_eof(void)
{
	S.in.eof = 1;
	S.in.reading = 0;
	if (S.in.is_stream)
		uv_read_stop((uv_stream_t *)&S.in.h);
	if (SC.on) {
		if (SC.stream)
			io_write(SC.stream, "0000", 4, on_flush_written, NULL);
		return;
	}
	if (S.call)
		grpc_client_call_close_send(S.call);
}

static void on_stdin_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	buf->base = S.in.buf;
	buf->len = sizeof(S.in.buf);
}

static void stdin_pause(void)
{
	S.in.reading = 0;
	if (S.in.is_stream)
		uv_read_stop((uv_stream_t *)&S.in.h);
}

static void on_stdin_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	if (n == 0 || !S.call)
		return;
	if (n < 0) {
		stdin_eof();
		return;
	}
	send_stdin(buf->base, (size_t)n);
	/* the call's send queue (or the sidechannel) is full: stop reading until it drains */
	if (input_full())
		stdin_pause();
}

static void fs_read_next(void);

static void on_fs_read(uv_fs_t *req)
{
	ssize_t n = req->result;
	uv_fs_req_cleanup(req);
	S.in.fs_pending = 0;
	if (!S.call || S.in.eof || S.in.closed) {
		maybe_finish();
		return;
	}
	if (n <= 0) {
		stdin_eof();
		return;
	}
	send_stdin(S.in.buf, (size_t)n);
	if (input_full())
		S.in.reading = 0;
	else
		fs_read_next();
}

static void fs_read_next(void)
{
	uv_buf_t b = uv_buf_init(S.in.buf, sizeof(S.in.buf));
	if (uv_fs_read(S.loop, &S.in.req, 0, &b, 1, -1, on_fs_read) < 0) {
		stdin_eof();
		return;
	}
	S.in.fs_pending = 1;
}

static void stdin_start(void)
{
	if (S.in.eof || S.in.reading || S.in.closed || !S.call)
		return;
	if (SC.on && (!SC.ready || !SC.stream))
		return;
	S.in.reading = 1;
	if (S.in.is_stream) {
		if (uv_read_start((uv_stream_t *)&S.in.h, on_stdin_alloc, on_stdin_read) < 0)
			stdin_eof();
	} else if (!S.in.fs_pending) {
		fs_read_next();
	}
}

/* Open fd as a uv stream when it is one; 0 leaves it to plain reads/writes. */
static int open_stream(int fd, void *h, int readable)
{
	switch (uv_guess_handle(fd)) {
	case UV_TTY:
		return uv_tty_init(S.loop, h, fd, readable) == 0;
	case UV_NAMED_PIPE:
		return uv_pipe_init(S.loop, h, 0) == 0 && uv_pipe_open(h, fd) == 0;
	case UV_TCP:
		return uv_tcp_init(S.loop, h) == 0 && uv_tcp_open(h, fd) == 0;
	default:
		return 0;
	}
}

/* --- stdout --- */

static void out_failed(int err)
{
	if (!S.failed)
		err_line("write to stdout: %s", uv_strerror(err));
	S.failed = 1;
	if (S.call)
		grpc_client_call_cancel(S.call);
}

static void on_out_written(uv_write_t *req, int status)
{
	struct out_write *w = container_of(req, struct out_write, req);
	S.out.queued -= w->len;
	free(w);
	if (status < 0)
		out_failed(status);
	if (S.recv_paused && S.out.queued < OUT_LOW && S.call) {
		S.recv_paused = 0;
		grpc_client_call_resume_recv(S.call);
	}
	if (SC.read_paused && S.out.queued < OUT_LOW && SC.stream) {
		SC.read_paused = 0;
		io_read_start(SC.stream);
	}
	maybe_finish();
}

static void write_stdout(const uint8_t *data, size_t len)
{
	if (S.failed)
		return;
	if (!S.out.is_stream) {
		while (len) {
			ssize_t n = write(1, data, len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				out_failed(n < 0 ? -errno : -EPIPE);
				return;
			}
			data += n;
			len -= (size_t)n;
		}
		return;
	}
	struct out_write *w = xmalloc(sizeof(*w) + len);
	uv_buf_t b;
	int rc;
	w->len = len;
	memcpy(w->data, data, len);
	b = uv_buf_init(w->data, (unsigned)len);
	rc = uv_write(&w->req, (uv_stream_t *)&S.out.h, &b, 1, on_out_written);
	if (rc < 0) {
		free(w);
		out_failed(rc);
		return;
	}
	S.out.queued += len;
	/* whoever reads our stdout is slow: stop taking responses off the wire */
	if (S.out.queued >= OUT_HIGH && !S.recv_paused && S.call) {
		S.recv_paused = 1;
		grpc_client_call_pause_recv(S.call);
	}
}

static void write_stderr(const uint8_t *data, size_t len)
{
	/* blocking on purpose: stderr is git's own, shared, and carries little */
	while (len) {
		ssize_t n = write(2, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		data += n;
		len -= (size_t)n;
	}
}

/* --- the call --- */

static void on_call_message(struct grpc_client_call *call, const uint8_t *msg, size_t len)
{
	const uint8_t *p = msg, *end = msg + len;
	const uint8_t *out = NULL, *err = NULL;
	size_t out_len = 0, err_len = 0;
	struct pb_field f;
	int rc;

	/* fields 1 stdout, 2 stderr, 3 exit_status of every SSH*Response */
	while ((rc = pb_next_field(&p, end, &f)) == 1) {
		if (f.num == 1 && f.wire == PB_LEN) {
			out = f.data;
			out_len = f.len;
		} else if (f.num == 2 && f.wire == PB_LEN) {
			err = f.data;
			err_len = f.len;
		} else if (f.num == 3 && f.wire == PB_LEN) {
			const uint8_t *q = f.data, *qend = f.data + f.len;
			struct pb_field g;
			int value = 0;
			while (pb_next_field(&q, qend, &g) == 1)
				if (g.num == 1 && g.wire == PB_VARINT)
					value = (int32_t)(uint32_t)g.varint;
			S.exit_status = value;
		}
	}
	if (rc < 0) {
		if (!S.failed)
			err_line("cannot decode response");
		S.failed = 1;
		grpc_client_call_cancel(call);
		return;
	}
	if (err_len)
		write_stderr(err, err_len);
	if (out_len)
		write_stdout(out, out_len);
}

static void on_call_writable(struct grpc_client_call *call)
{
	stdin_start();
}

static void on_call_close(struct grpc_client_call *call, enum grpc_code code, const char *message,
			  const struct grpc_metadata *trailers)
{
	S.call = NULL;
	S.call_done = 1;
	if (code != GRPC_OK && !S.failed) {
		err_line("%s: rpc error: code = %s desc = %s", verbs[S.verb].name, grpc_code_name(code),
			 message ? message : "");
		S.failed = 1;
	}
	maybe_finish();
}

static const struct grpc_client_ops call_ops = {
	.on_message = on_call_message,
	.on_writable = on_call_writable,
	.on_close = on_call_close,
};

static void on_handle_closed(uv_handle_t *h)
{
}

/* --- the sidechannel's stream --- */

static void sc_fail(const char *why)
{
	if (!S.failed)
		err_line("upload-pack: sidechannel: %s", why);
	S.failed = 1;
	if (S.call)
		grpc_client_call_cancel(S.call);
	if (SC.stream)
		yamux_stream_reset(SC.stream);
}

/* The node's output: side-band pkt-lines, band 1 to stdout, band 2 to stderr. */
static void sc_demux(const char *buf, size_t len)
{
	while (len && SC.stream && !S.failed) {
		if (SC.left) {
			size_t n;
			if (!SC.band) {
				SC.band = (unsigned char)*buf;
				buf++;
				len--;
				SC.left--;
				if (SC.band != 1 && SC.band != 2) {
					sc_fail("invalid side-band");
					return;
				}
				continue;
			}
			n = MIN(len, SC.left);
			if (SC.band == 1)
				write_stdout((const uint8_t *)buf, n);
			else
				write_stderr((const uint8_t *)buf, n);
			buf += n;
			len -= n;
			SC.left -= n;
			continue;
		}
		while (SC.hdr_len < 4 && len) {
			SC.hdr[SC.hdr_len++] = *buf++;
			len--;
		}
		if (SC.hdr_len < 4)
			break;
		SC.hdr_len = 0;
		SC.band = 0;
		{
			char h[5] = { SC.hdr[0], SC.hdr[1], SC.hdr[2], SC.hdr[3], 0 };
			char *end;
			unsigned long v = strtoul(h, &end, 16);
			if (*end || (v && v < 5) || v > 65520) {
				sc_fail("invalid pkt-line");
				return;
			}
			SC.left = v ? v - 4 : 0;   /* a flush carries nothing */
		}
	}
	if (SC.stream && !SC.read_paused && S.out.queued >= OUT_HIGH) {
		/* whoever reads our stdout is slow: the node's window stalls it */
		SC.read_paused = 1;
		io_read_stop(SC.stream);
	}
}

static void on_sc_read(struct io *io, const char *buf, ssize_t n)
{
	if (n < 0) {
		if (n != UV_EOF)
			sc_fail(uv_strerror((int)n));
		else if (SC.left || SC.hdr_len)
			sc_fail("output ends inside a packet");
		io_read_stop(io);
		io_close(io);
		return;
	}
	if (!SC.ready) {
		size_t take = MIN((size_t)n, sizeof(SC.head) - SC.head_len);
		memcpy(SC.head + SC.head_len, buf, take);
		SC.head_len += take;
		buf += take;
		n -= (ssize_t)take;
		if (SC.head_len < sizeof(SC.head))
			return;
		if (memcmp(SC.head, SC_MAGIC, 11) || SC.head[18] != SC_ID ||
		    memcmp(SC.head + 11, "\0\0\0\0\0\0\0", 7)) {
			/* not ours: close it, as upstream's registry does for unknown ids */
			io_close(io);
			return;
		}
		SC.ready = 1;
		io_write(io, "ok", 2, on_flush_written, NULL);
		stdin_start();
	}
	if (n > 0)
		sc_demux(buf, (size_t)n);
}

static void on_sc_close(struct io *io)
{
	SC.stream = NULL;
	SC.done = 1;
	maybe_finish();
}

static void on_peer_stream(struct io *stream, void *data)
{
	if (SC.stream || SC.done || S.finished) {
		yamux_stream_reset(stream);
		return;
	}
	SC.stream = stream;
	stream->on_read = on_sc_read;
	stream->on_close = on_sc_close;
	io_read_start(stream);
}

static void on_sc_call_message(struct grpc_client_call *call, const uint8_t *msg, size_t len)
{
	/* the negotiation statistics: nothing for git */
}

static const struct grpc_client_ops sc_call_ops = {
	.on_message = on_sc_call_message,
	.on_close = on_call_close,
};

/* The call is over and stdout drained: release everything so the loop ends. */
static void maybe_finish(void)
{
	if (S.finished || !S.call_done || S.out.queued)
		return;
	if (SC.stream) {
		if (S.failed)
			yamux_stream_reset(SC.stream);
		return;   /* the rest of the pack is still coming */
	}
	S.finished = 1;
	S.in.closed = 1;
	if (S.in.is_stream) {
		uv_read_stop((uv_stream_t *)&S.in.h);
		uv_close((uv_handle_t *)&S.in.h, on_handle_closed);
	}
	if (S.out.is_stream)
		uv_close((uv_handle_t *)&S.out.h, on_handle_closed);
	grpc_channel_close(S.ch);
	/* a read of stdin in the thread pool may block on a device: do not wait for it */
	if (S.in.fs_pending)
		uv_stop(S.loop);
}

/* --- set-up --- */

static int parse_bool(const char *s, int *out)
{
	static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
	static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (!strcmp(s, yes[i])) {
			*out = 1;
			return 0;
		}
		if (!strcmp(s, no[i])) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/* "name:true,other:false": malformed pairs are skipped, as upstream does. */
static void add_feature_flags(struct grpc_metadata *md, const char *flags)
{
	const char *p = flags;
	while (p && *p) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		char *pair = xstrndup(p, n), *colon = strchr(pair, ':');
		int on;
		if (colon && colon != pair) {
			*colon = '\0';
			if (parse_bool(colon + 1, &on) == 0) {
				struct strbuf key = STRBUF_INIT;
				strbuf_addstr(&key, "gitaly-feature-");
				for (const char *c = pair; *c; c++)
					strbuf_addch(&key, *c == '_' ? '-' : *c);
				grpc_metadata_addstr(md, key.buf, on ? "true" : "false");
				strbuf_release(&key);
			}
		}
		free(pair);
		p = comma ? comma + 1 : NULL;
	}
}

/* GITALY_ADDRESS as a channel target; -1 with a message for what we cannot dial. */
static int channel_target(const char *addr, struct strbuf *target, struct strbuf *err)
{
	if (!addr || !*addr) {
		strbuf_addstr(err, "gitaly address can not be empty");
		return -1;
	}
	if (!strncmp(addr, "dns:", 4)) {
		const char *p = addr + 4;
		if (!strncmp(p, "///", 3))
			p += 3;
		else if (!strncmp(p, "//", 2))
			return strbuf_addf(err, "cannot dial \"%s\": DNS authorities are not supported", addr), -1;
		strbuf_addf(target, "tcp://%s", p);
		return 0;
	}
	if (strncmp(addr, "unix:", 5) && strncmp(addr, "tcp://", 6) && strncmp(addr, "tls://", 6)) {
		strbuf_addf(err, "cannot dial \"%s\": unsupported address", addr);
		return -1;
	}
	strbuf_addstr(target, addr);
	return 0;
}

/* Build and send the first request; 0, or -1 after printing why. */
static int start_call(const char *payload)
{
	const ProtobufCMessageDescriptor *d = SC.on ? &gitaly__sshupload_pack_with_sidechannel_request__descriptor
						    : verb_of(S.verb)->desc;
	const char *method = SC.on ? "/gitaly.SSHService/SSHUploadPackWithSidechannel" : verb_of(S.verb)->method;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct strbuf err = STRBUF_INIT;
	ProtobufCMessage *req;
	const char *token = getenv("GITALY_TOKEN"), *cid = getenv("CORRELATION_ID");
	uint8_t *buf;
	size_t n;

	req = parse_payload(d, payload ? payload : "", &err);
	if (!req) {
		err_line("%s", err.buf);
		strbuf_release(&err);
		return -1;
	}
	if (S.verb == UPLOAD_PACK) {
		/* show every ref: upload-pack's defaults hide some, and mirrors must copy them all */
		char ***cfg;
		size_t *nr;
		if (SC.on) {
			Gitaly__SSHUploadPackWithSidechannelRequest *up = (void *)req;
			cfg = &up->git_config_options;
			nr = &up->n_git_config_options;
		} else {
			Gitaly__SSHUploadPackRequest *up = (void *)req;
			cfg = &up->git_config_options;
			nr = &up->n_git_config_options;
		}
		char **opts = xcalloc(*nr + 1, sizeof(*opts));
		opts[0] = xstrdup("transfer.hideRefs=!refs");
		for (size_t i = 0; i < *nr; i++)
			opts[i + 1] = (*cfg)[i];
		free(*cfg);
		*cfg = opts;
		(*nr)++;
	}
	n = protobuf_c_message_get_packed_size(req);
	buf = xmalloc(n ? n : 1);
	protobuf_c_message_pack(req, buf);
	protobuf_c_message_free_unpacked(req, NULL);

	if (token && *token)
		auth_v2_add(&md, token);
	add_feature_flags(&md, getenv("GITALY_FEATUREFLAGS"));
	if (cid && *cid)
		grpc_metadata_addstr(&md, "x-gitlab-correlation-id", cid);
	if (SC.on)
		grpc_metadata_addstr(&md, "gitaly-sidechannel-id", "1");   /* SC_ID */

	if (grpc_channel_call(S.ch, method, &md, 0, 0, SC.on ? &sc_call_ops : &call_ops, NULL, &S.call) < 0) {
		err_line("cannot start call");
		free(buf);
		grpc_metadata_release(&md);
		strbuf_release(&err);
		return -1;
	}
	grpc_client_call_send(S.call, buf, n);
	if (SC.on)
		grpc_client_call_close_send(S.call);   /* unary: stdin goes over the sidechannel */
	free(buf);
	grpc_metadata_release(&md);
	strbuf_release(&err);
	return 0;
}

int main(int argc, char **argv)
{
	struct strbuf target = STRBUF_INIT, err = STRBUF_INIT;
	const char *wd = getenv("GITALY_WD");
	const struct cli_command *cmd;
	int rc = 1;

	/* git appends the host and the remote command: both are ignored */
	if (argc < 4) {
		err_line("invalid number of arguments, expected at least 1, got %d", argc - 1);
		return 1;
	}
	cmd = cli_command_find(verbs, ARRAY_SIZE(verbs), argv[1]);
	if (!cmd) {
		err_line("invalid pack command: \"%s\"", argv[1]);
		return 1;
	}
	S.verb = (enum verb)(cmd - verbs);

	if (wd && *wd && chdir(wd) < 0) {
		err_line("unable to chdir to %s", wd);
		return 1;
	}
	if (channel_target(getenv("GITALY_ADDRESS"), &target, &err) < 0) {
		err_line("%s", err.buf);
		goto out;
	}

	/* a reader that went away shows up as EPIPE on write, not as a fatal signal */
	signal(SIGPIPE, SIG_IGN);
	S.loop = uv_default_loop();
	strbuf_init(&S.msg, 0);
	if (S.verb == UPLOAD_PACK && getenv("GITALY_USE_SIDECHANNEL")) {
		int on = 0;
		SC.on = parse_bool(getenv("GITALY_USE_SIDECHANNEL"), &on) == 0 && on;
	}
	if (SC.on) {
		/* a backchannel connection: the node opens the sidechannel back over it */
		struct grpc_channel_opts o;
		grpc_channel_opts_default(&o);
		SC.bc.loop = S.loop;
		SC.bc.on_stream = on_peer_stream;
		o.dial = bc_dial;
		o.dial_data = &SC.bc;
		if (grpc_channel_new(S.loop, target.buf, &o, &S.ch) < 0) {
			err_line("cannot dial \"%s\": invalid address", target.buf);
			goto out;
		}
	} else if (grpc_channel_new(S.loop, target.buf, NULL, &S.ch) < 0) {
		err_line("cannot dial \"%s\": invalid address", target.buf);
		goto out;
	}
	if (start_call(getenv("GITALY_PAYLOAD")) < 0) {
		grpc_channel_close(S.ch);
		uv_run(S.loop, UV_RUN_DEFAULT);
		uv_loop_close(S.loop);
		goto out;
	}
	S.in.is_stream = open_stream(0, &S.in.h, 1);
	S.out.is_stream = open_stream(1, &S.out.h, 0);
	stdin_start();

	uv_run(S.loop, UV_RUN_DEFAULT);
	rc = S.failed ? 1 : S.exit_status;
	if (!S.in.fs_pending)
		uv_loop_close(S.loop);
out:
	strbuf_release(&S.msg);
	strbuf_release(&target);
	strbuf_release(&err);
	return rc;
}

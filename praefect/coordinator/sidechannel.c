/*
 * Sidechannels through praefect (docs/technical/sidechannel.md, "Through
 * praefect"): the client's id is swapped for one of ours in the call to the
 * node; when the node opens its sidechannel stream to us with our id, we open
 * one to the client with the client's id and from then on copy raw bytes
 * between the two yamux streams, the client's "ok" and pkt-lines included,
 * so the node still checks the handshake and the framing. Each side's yamux
 * window plus a small in-flight bound per direction is the only buffering.
 * The node's answer is held until both streams are closed, so the client
 * never sees the status before the last byte of the pack.
 */
#include "coordinator/proxy.h"
#include "backchannel/backchannel.h"
#include "base/log.h"
#include "base/util.h"
#include "grpc/metadata.h"
#include "h2/io.h"
#include "yamux/yamux.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes written to one side and not yet handed to its transport: above HIGH we stop reading the other side. */
#define SCP_INFLIGHT_HIGH (512 * 1024)
#define SCP_INFLIGHT_LOW (128 * 1024)
/* Reads that arrive while a write is in flight are gathered into one write of up to this much. */
#define SCP_GATHER (128 * 1024)
/* Written buffers kept per direction for the next writes, instead of freed and allocated again. */
#define SCP_SPARE 4
/*
 * How far ahead the node may send on its sidechannel stream (our receive
 * window on it, instead of the 256 KiB of [yamux]): fewer, larger reads and
 * window updates on the bulk path. Bounds what one clone buffers here.
 */
#define SCP_NODE_WINDOW (4 * 1024 * 1024)

enum scp_state { SCP_WAITING, SCP_COPYING, SCP_DONE };

struct scproxy;

/* One direction of the copy: bytes read from `from` are written to the other stream. */
struct scp_dir {
	struct scproxy *sp;
	int from_node;               /* 1: node -> client ("downstream"), 0: client -> node */
	size_t inflight;             /* read and not yet handed to the other side's transport */
	int writes;                  /* writes in flight */
	struct scp_chunk *gather;    /* read while a write was in flight, written when it completes */
	struct scp_chunk *spare[SCP_SPARE]; /* written chunks of SCP_GATHER bytes, for reuse */
	int nspare;
	int paused;
};

struct scp_chunk {
	struct scp_dir *dir;
	size_t len, cap;
	char buf[];
};

struct scproxy {
	struct praefect *p;
	struct proxy *px;            /* NULL once the proxy is gone */
	int refs;                    /* the proxy, each open stream, each write in flight */
	enum scp_state state;
	int64_t client_id;
	uint64_t node_id;
	int registered;
	char key[24];
	char hello[SIDECHANNEL_HELLO_LEN];
	struct io *node, *client;    /* NULL once closed */
	struct scp_dir down, up;
	int err;                     /* first failure of the copy, negative */
	const char *err_where;

	/* the node's answer, held while copying */
	int held;
	size_t held_dest;
	enum grpc_code code;
	struct strbuf msg;
	struct grpc_metadata trailers;
};

static void sp_unref(struct scproxy *sp)
{
	if (--sp->refs)
		return;
	free(sp->down.gather);
	free(sp->up.gather);
	while (sp->down.nspare)
		free(sp->down.spare[--sp->down.nspare]);
	while (sp->up.nspare)
		free(sp->up.spare[--sp->up.nspare]);
	strbuf_release(&sp->msg);
	grpc_metadata_release(&sp->trailers);
	free(sp);
}

static void deregister(struct scproxy *sp)
{
	if (!sp->registered)
		return;
	sp->registered = 0;
	hashmap_remove(&sp->p->sidechannels, sp->key, strlen(sp->key));
}

int scproxy_method(const struct praefect *p, const struct rpc_method *m)
{
	return m == p->calls.ssh_upload_pack_sc || m == p->calls.post_upload_pack_sc;
}

int scproxy_prepare(struct proxy *px)
{
	const char *idv;
	struct scproxy *sp;

	if (px->sc || !px->call || !scproxy_method(px->p, px->m))
		return 0;
	idv = grpc_metadata_value(grpc_call_metadata(px->call), SIDECHANNEL_METADATA_KEY);
	if (!idv)
		return 0; /* the node answers with upstream's "sidechannel-id not found" */
	if (!yamux_stream_session(grpc_call_io(px->call))) {
		/* as the node would answer a direct client on a plain connection */
		if (px->m == px->p->calls.ssh_upload_pack_sc)
			proxy_fail(px, GRPC_ABORTED, "opennig sidechannel: sidechannel: fail to extract yamux "
				   "session: non-multiplexed connection");
		else
			proxy_fail(px, GRPC_INTERNAL, "open sidechannel: sidechannel: fail to extract yamux "
				   "session: non-multiplexed connection");
		return -1;
	}
	sp = xcalloc(1, sizeof(*sp));
	sp->p = px->p;
	sp->px = px;
	sp->refs = 1;
	sp->client_id = bc_sidechannel_id(idv);
	sp->node_id = ++px->p->next_sidechannel_id;
	snprintf(sp->key, sizeof(sp->key), "%llu", (unsigned long long)sp->node_id);
	strbuf_init(&sp->msg, 0);
	grpc_metadata_init(&sp->trailers);
	sp->down.sp = sp->up.sp = sp;
	sp->down.from_node = 1;
	hashmap_put(&px->p->sidechannels, sp->key, strlen(sp->key), sp);
	sp->registered = 1;
	px->sc = sp;
	return 0;
}

void scproxy_metadata(struct proxy *px, struct grpc_metadata *md)
{
	char v[24];
	if (!px->sc)
		return;
	snprintf(v, sizeof(v), "%llu", (unsigned long long)px->sc->node_id);
	grpc_metadata_remove(md, SIDECHANNEL_METADATA_KEY);
	grpc_metadata_addstr(md, SIDECHANNEL_METADATA_KEY, v);
}

/* --- the end of the copy --- */

static void copy_ended(struct scproxy *sp)
{
	struct proxy *px = sp->px;
	if (sp->state != SCP_COPYING || sp->node || sp->client)
		return;
	sp->state = SCP_DONE;
	if (!px || !sp->held)
		return;
	sp->held = 0;
	if (sp->code == GRPC_OK && sp->err) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "sidechannel: proxy callback: %s: %s", sp->err_where, uv_strerror(sp->err));
		proxy_dest_close(&px->dests[sp->held_dest], GRPC_UNKNOWN, m.buf, NULL);
		strbuf_release(&m);
	} else {
		proxy_dest_close(&px->dests[sp->held_dest], sp->code, sp->msg.buf, &sp->trailers);
	}
}

static void fail_copy(struct scproxy *sp, int err, const char *where)
{
	if (!sp->err) {
		sp->err = err;
		sp->err_where = where;
	}
	if (sp->node)
		yamux_stream_reset(sp->node);
	if (sp->client)
		yamux_stream_reset(sp->client);
}

void scproxy_client_gone(struct proxy *px)
{
	/* a client that stopped reading must not keep the node's stream open */
	if (px->sc && px->sc->state == SCP_COPYING)
		fail_copy(px->sc, UV_ECANCELED, "copy to downstream");
}

static void on_stream_closed(struct io *io)
{
	struct scproxy *sp = io->data;
	if (io == sp->node)
		sp->node = NULL;
	else if (io == sp->client)
		sp->client = NULL;
	copy_ended(sp);
	sp_unref(sp);
}

/* --- copying --- */

static struct io *dir_from(struct scp_dir *d)
{
	return d->from_node ? d->sp->node : d->sp->client;
}

static struct io *dir_to(struct scp_dir *d)
{
	return d->from_node ? d->sp->client : d->sp->node;
}

static const char *dir_name(const struct scp_dir *d)
{
	return d->from_node ? "copy to downstream" : "copy to upstream";
}

static void on_chunk_written(struct io *io, int status, void *arg);

/* Done with `c`: kept for the next write when it has the usual size, else freed. */
static void chunk_free(struct scp_dir *d, struct scp_chunk *c)
{
	if (c->cap == SCP_GATHER && d->nspare < SCP_SPARE)
		d->spare[d->nspare++] = c;
	else
		free(c);
}

/* Hand `c` to the other side's stream. */
static void chunk_write(struct scp_dir *d, struct scp_chunk *c)
{
	struct scproxy *sp = d->sp;
	struct io *to = dir_to(d);

	sp->refs++;
	d->writes++;
	if (!to || io_write(to, c->buf, c->len, on_chunk_written, c) < 0) {
		d->writes--;
		d->inflight -= c->len;
		chunk_free(d, c);
		fail_copy(sp, UV_EPIPE, dir_name(d));
		sp_unref(sp);
	}
}

/* Write out what was gathered (before an end of stream is passed on). */
static void gather_flush(struct scp_dir *d)
{
	struct scp_chunk *c = d->gather;
	if (!c)
		return;
	d->gather = NULL;
	chunk_write(d, c);
}

static void on_chunk_written(struct io *io, int status, void *arg)
{
	struct scp_chunk *c = arg;
	struct scp_dir *d = c->dir;
	struct scproxy *sp = d->sp;

	(void)io;
	d->writes--;
	d->inflight -= c->len;
	chunk_free(d, c);
	if (status < 0 && status != UV_ECANCELED) {
		fail_copy(sp, status, dir_name(d));
	} else if (status == 0) {
		if (!d->writes)
			gather_flush(d);
		if (d->paused && d->inflight < SCP_INFLIGHT_LOW && dir_from(d)) {
			d->paused = 0;
			io_read_start(dir_from(d));
		}
	}
	sp_unref(sp);
}

static struct scp_chunk *chunk_new(struct scp_dir *d, size_t cap)
{
	struct scp_chunk *c;

	if (cap <= SCP_GATHER && d->nspare) {
		c = d->spare[--d->nspare];
		c->len = 0;
		return c;
	}
	cap = MAX(cap, (size_t)SCP_GATHER);
	c = xmalloc(sizeof(*c) + cap);
	c->dir = d;
	c->len = 0;
	c->cap = cap;
	return c;
}

static void on_copy_read(struct io *io, const char *buf, ssize_t n)
{
	struct scproxy *sp = io->data;
	struct scp_dir *d = io == sp->node ? &sp->down : &sp->up;
	struct scp_chunk *c;

	if (n == UV_EOF) {
		gather_flush(d);
		if (d->from_node) {
			/* the node is done: FIN to the client after what is queued, and we are done */
			if (sp->client)
				io_close(sp->client);
			io_close(io);
		} else if (sp->node) {
			yamux_stream_shutdown(sp->node); /* the client's FIN, passed on */
		}
		return;
	}
	if (n < 0) {
		fail_copy(sp, (int)n, dir_name(d));
		return;
	}
	if (n == 0 || !dir_to(d))
		return; /* nothing, or the other side is gone (its close ends the copy) */
	d->inflight += (size_t)n;
	if (!d->writes) {
		/* idle: write at once, so nothing waits */
		c = chunk_new(d, (size_t)n);
		memcpy(c->buf, buf, (size_t)n);
		c->len = (size_t)n;
		chunk_write(d, c);
	} else {
		/*
		 * A write is in flight: gather (the node writes many small frames,
		 * a sideband header apart from its payload), so the other side
		 * gets few large frames and praefect makes few system calls.
		 */
		if (d->gather && d->gather->len + (size_t)n > d->gather->cap)
			gather_flush(d);
		if (!d->gather)
			d->gather = chunk_new(d, MAX((size_t)n, (size_t)SCP_GATHER));
		memcpy(d->gather->buf + d->gather->len, buf, (size_t)n);
		d->gather->len += (size_t)n;
	}
	if (d->inflight > SCP_INFLIGHT_HIGH && !d->paused && dir_from(d)) {
		d->paused = 1;
		io_read_stop(io);
	}
}

static void on_hello_written(struct io *io, int status, void *arg)
{
	struct scproxy *sp = arg;
	(void)io;
	if (status < 0 && status != UV_ECANCELED)
		fail_copy(sp, status, "copy to downstream");
	sp_unref(sp);
}

/* The node's stream with our id arrived: open the client's and start copying. */
static void attach(struct scproxy *sp, struct io *node)
{
	struct proxy *px = sp->px;
	struct yamux_session *s;
	int rc;

	deregister(sp);
	if (sp->state != SCP_WAITING || !px || !px->call || px->finished ||
	    !(s = yamux_stream_session(grpc_call_io(px->call)))) {
		io_close(node); /* the node reads EOF instead of "ok" */
		return;
	}
	rc = yamux_open_stream(s, &sp->client);
	if (rc < 0) {
		log_msgf(LOG_WARN, "%s: cannot open the client's sidechannel: %s", px->m->method, strerror(-rc));
		sp->client = NULL;
		io_close(node);
		return;
	}
	sp->state = SCP_COPYING;
	px->responded = 1; /* bytes may reach the client now: no retry on another replica */
	sp->node = node;
	sp->refs += 2;
	node->data = sp;
	yamux_stream_grow_window(node, SCP_NODE_WINDOW);
	node->on_read = on_copy_read;
	node->on_close = on_stream_closed;
	sp->client->data = sp;
	sp->client->on_read = on_copy_read;
	sp->client->on_close = on_stream_closed;
	bc_sidechannel_hello(sp->hello, sp->client_id);
	sp->refs++;
	if (io_write(sp->client, sp->hello, sizeof(sp->hello), on_hello_written, sp) < 0) {
		sp_unref(sp);
		fail_copy(sp, UV_EPIPE, "copy to downstream");
		return;
	}
	/* the client's answer and data go to the node as they are; the node's only after its "ok" */
	io_read_start(sp->client);
	io_read_start(node);
}

/* --- the proxy's side --- */

int scproxy_hold_close(struct proxy *px, struct dest *d, enum grpc_code code, const char *message,
		       const struct grpc_metadata *trailers)
{
	struct scproxy *sp = px->sc;
	if (!sp || sp->state != SCP_COPYING || sp->held)
		return 0;
	sp->held = 1;
	sp->held_dest = (size_t)(d - px->dests);
	sp->code = code;
	strbuf_reset(&sp->msg);
	strbuf_addstr(&sp->msg, message ? message : "");
	grpc_metadata_release(&sp->trailers);
	grpc_metadata_init(&sp->trailers);
	if (trailers)
		grpc_metadata_copy(&sp->trailers, trailers);
	return 1;
}

void scproxy_release(struct proxy *px)
{
	struct scproxy *sp = px->sc;
	if (!sp)
		return;
	px->sc = NULL;
	deregister(sp);
	sp->px = NULL;
	sp->held = 0;
	if (sp->state == SCP_COPYING)
		fail_copy(sp, UV_ECANCELED, "copy to downstream");
	sp_unref(sp);
}

/* --- streams the node opens: a sidechannel, or a gRPC call back to us (votes) --- */

struct scp_sniff {
	struct praefect *p;
	char buf[SIDECHANNEL_HELLO_LEN];
	size_t len;
};

static void on_sniff_closed(struct io *io)
{
	free(io->data);
}

static void on_sniff_read(struct io *io, const char *buf, ssize_t n)
{
	struct scp_sniff *sn = io->data;
	struct praefect *p = sn->p;
	size_t take, cmp;
	struct scproxy *sp;
	uint64_t id = 0;
	char key[24];

	if (n < 0) {
		io_close(io);
		return;
	}
	take = MIN((size_t)n, sizeof(sn->buf) - sn->len);
	memcpy(sn->buf + sn->len, buf, take);
	sn->len += take;
	cmp = MIN(sn->len, (size_t)SIDECHANNEL_MAGIC_LEN);
	if (memcmp(sn->buf, SIDECHANNEL_MAGIC, cmp)) {
		/* not a sidechannel: a gRPC connection (its preface never looks like the magic) */
		struct strbuf all = STRBUF_INIT;
		io_read_stop(io);
		strbuf_add(&all, sn->buf, sn->len);
		strbuf_add(&all, buf + take, (size_t)n - take);
		io->on_close = NULL;
		free(sn);
		grpc_server_adopt(p->bc_server, io_wrap(p->loop, io, all.buf, all.len, NULL, NULL));
		strbuf_release(&all);
		return;
	}
	if (sn->len < sizeof(sn->buf))
		return;
	io_read_stop(io);
	if ((size_t)n > take) {
		/* the node sends nothing before our "ok" */
		io_close(io);
		return;
	}
	for (int i = 0; i < 8; i++)
		id = id << 8 | (uint8_t)sn->buf[SIDECHANNEL_MAGIC_LEN + i];
	snprintf(key, sizeof(key), "%llu", (unsigned long long)id);
	sp = hashmap_get(&p->sidechannels, key, strlen(key));
	if (!sp) {
		io_close(io); /* an id nobody waits for: closed, as upstream's registry does */
		return;
	}
	io->on_close = NULL;
	io->data = NULL;
	free(sn);
	attach(sp, io);
}

void scproxy_node_stream(struct io *stream, void *data)
{
	struct scp_sniff *sn = xcalloc(1, sizeof(*sn));
	sn->p = data;
	stream->data = sn;
	stream->on_read = on_sniff_read;
	stream->on_close = on_sniff_closed;
	if (io_read_start(stream) < 0)
		io_close(stream);
}

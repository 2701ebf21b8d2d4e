/*
 * ntp: one request/reply exchange on a libuv loop. Every step (name look-up,
 * send, reply, timeout) reports through report(), once; the query frees
 * itself when its handles are closed and its look-up has returned.
 */
#include "ntp/ntp.h"
#include "base/strbuf.h"
#include "base/util.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ntp_query {
	uv_loop_t *loop;
	ntp_done_fn *done;
	void *arg;
	char host[256], port[16];
	uv_getaddrinfo_t gai;
	uv_udp_t udp;
	uv_udp_send_t send;
	uv_timer_t timer;
	uint8_t pkt[NTP_PACKET_SIZE];
	uint8_t rbuf[512];
	struct ntp_time sent;
	int gai_pending, udp_open, open_handles, reported;
	const char *pending_stage;       /* a failure to report from the timer */
	char pending_err[200];
};

static void maybe_free(struct ntp_query *q)
{
	if (q->reported && !q->open_handles && !q->gai_pending)
		free(q);
}

static void on_closed(uv_handle_t *h)
{
	struct ntp_query *q = h->data;
	q->open_handles--;
	maybe_free(q);
}

static void report(struct ntp_query *q, const char *stage, const char *err, int64_t offset_ns)
{
	if (q->reported)
		return;
	q->reported = 1;
	q->done(q->arg, stage, err, offset_ns);
	if (q->udp_open) {
		uv_udp_recv_stop(&q->udp);
		uv_close((uv_handle_t *)&q->udp, on_closed);
	}
	uv_timer_stop(&q->timer);
	uv_close((uv_handle_t *)&q->timer, on_closed);
	if (q->gai_pending)
		uv_cancel((uv_req_t *)&q->gai);
	maybe_free(q);
}

static void on_timer(uv_timer_t *t);

/* Report `err` from the timer (never from inside the caller's call). */
static void fail_soon(struct ntp_query *q, const char *fmt, const char *detail)
{
	if (q->reported || q->pending_stage)
		return;
	q->pending_stage = "query";
	snprintf(q->pending_err, sizeof(q->pending_err), fmt, detail);
	uv_timer_start(&q->timer, on_timer, 0, 0);
}

static void on_timer(uv_timer_t *t)
{
	struct ntp_query *q = t->data;
	if (q->pending_stage)
		report(q, q->pending_stage, q->pending_err, 0);
	else
		report(q, "query", "read udp: i/o timeout", 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct ntp_query *q = h->data;
	(void)suggested;
	*buf = uv_buf_init((char *)q->rbuf, sizeof(q->rbuf));
}

static void on_recv(uv_udp_t *u, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from, unsigned flags)
{
	struct ntp_query *q = u->data;
	const char *err, *stage;
	int64_t off = 0;
	(void)from;
	(void)flags;
	if (n == 0 && !from)
		return; /* nothing more to read for now */
	if (n < 0) {
		report(q, "query", uv_strerror((int)n), 0);
		return;
	}
	err = ntp_check_reply((const uint8_t *)buf->base, (size_t)n, q->sent, ntp_now(), &off, &stage);
	report(q, stage, err, off);
}

static void on_sent(uv_udp_send_t *req, int status)
{
	struct ntp_query *q = req->data;
	if (status < 0)
		report(q, "query", uv_strerror(status), 0);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct ntp_query *q = req->data;
	uv_buf_t b;
	int rc;

	q->gai_pending = 0;
	if (q->reported) {
		uv_freeaddrinfo(res);
		maybe_free(q);
		return;
	}
	if (status < 0 || !res) {
		char msg[300];
		snprintf(msg, sizeof(msg), "lookup %s: %s", q->host, status < 0 ? uv_strerror(status) : "no address");
		report(q, "query", msg, 0);
		uv_freeaddrinfo(res);
		return;
	}
	rc = uv_udp_init(q->loop, &q->udp);
	if (rc == 0) {
		q->udp.data = q;
		q->udp_open = 1;
		q->open_handles++;
		rc = uv_udp_connect(&q->udp, res->ai_addr);
	}
	uv_freeaddrinfo(res);
	if (rc == 0)
		rc = uv_udp_recv_start(&q->udp, on_alloc, on_recv);
	if (rc == 0) {
		q->sent = ntp_now();
		ntp_request(q->pkt, q->sent);
		b = uv_buf_init((char *)q->pkt, sizeof(q->pkt));
		q->send.data = q;
		rc = uv_udp_send(&q->send, &q->udp, &b, 1, NULL, on_sent);
	}
	if (rc < 0)
		report(q, "query", uv_strerror(rc), 0);
}

/* "name", "name:port", "[v6]" or "[v6]:port" into host and port; -1 if malformed. */
static int split_host(const char *in, char *host, size_t hsz, char *port, size_t psz)
{
	const char *colon, *end;
	size_t hl;
	snprintf(port, psz, "%s", NTP_DEFAULT_PORT);
	if (in[0] == '[') {
		if (!(end = strchr(in, ']')))
			return -1;
		hl = (size_t)(end - in - 1);
		if (hl == 0 || hl >= hsz)
			return -1;
		memcpy(host, in + 1, hl);
		host[hl] = '\0';
		if (end[1] == ':' && end[2])
			snprintf(port, psz, "%s", end + 2);
		else if (end[1])
			return -1;
		return 0;
	}
	colon = strchr(in, ':');
	if (colon && strchr(colon + 1, ':'))
		colon = NULL; /* a bare IPv6 address */
	hl = colon ? (size_t)(colon - in) : strlen(in);
	if (hl == 0 || hl >= hsz)
		return -1;
	memcpy(host, in, hl);
	host[hl] = '\0';
	if (colon) {
		if (!colon[1] || strlen(colon + 1) >= psz)
			return -1;
		snprintf(port, psz, "%s", colon + 1);
	}
	return 0;
}

struct ntp_query *ntp_query(uv_loop_t *loop, const char *host, uint64_t timeout_ms, ntp_done_fn *done,
			    void *arg)
{
	struct ntp_query *q = xcalloc(1, sizeof(*q));
	struct addrinfo hints;
	int rc;

	q->loop = loop;
	q->done = done;
	q->arg = arg;
	uv_timer_init(loop, &q->timer);
	q->timer.data = q;
	q->open_handles = 1;
	uv_timer_start(&q->timer, on_timer, timeout_ms, 0);
	if (split_host(host && *host ? host : NTP_DEFAULT_HOST, q->host, sizeof(q->host), q->port,
		       sizeof(q->port)) < 0) {
		fail_soon(q, "address %s: invalid host", host);
		return q;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_DGRAM;
	q->gai.data = q;
	rc = uv_getaddrinfo(loop, &q->gai, on_resolved, q->host, q->port, &hints);
	if (rc < 0)
		fail_soon(q, "lookup: %s", uv_strerror(rc));
	else
		q->gai_pending = 1;
	return q;
}

void ntp_query_cancel(struct ntp_query *q)
{
	if (!q->reported && !q->pending_stage) {
		q->pending_stage = "query";
		snprintf(q->pending_err, sizeof(q->pending_err), "canceled");
		uv_timer_start(&q->timer, on_timer, 0, 0);
	}
}

/* --- the same, blocking, for command-line tools --- */

struct sync_result {
	int done;
	const char *stage;
	struct strbuf err;
	int64_t offset_ns;
};

static void sync_done(void *arg, const char *stage, const char *err, int64_t offset_ns)
{
	struct sync_result *r = arg;
	r->done = 1;
	r->stage = stage;
	if (err)
		strbuf_addstr(&r->err, err);
	r->offset_ns = offset_ns;
}

int ntp_clock_synced(const char *host, int64_t threshold_ns, struct strbuf *err)
{
	struct sync_result r = { 0, NULL, STRBUF_INIT, 0 };
	const char *h = host && *host ? host : NTP_DEFAULT_HOST;
	uv_loop_t loop;
	int rc;

	uv_loop_init(&loop);
	ntp_query(&loop, h, NTP_TIMEOUT_MS, sync_done, &r);
	while (uv_run(&loop, UV_RUN_DEFAULT))
		;
	uv_loop_close(&loop);
	if (r.err.len && !strcmp(r.stage, "validate"))
		strbuf_addf(err, "validate ntp response: %s", r.err.buf);
	else if (r.err.len)
		strbuf_addf(err, "query ntp host %s: %s", h, r.err.buf);
	rc = r.err.len ? -1 : (r.offset_ns <= threshold_ns && r.offset_ns >= -threshold_ns);
	strbuf_release(&r.err);
	return rc;
}

/*
 * The /metrics endpoint: libmicrohttpd in its own polling thread.
 *
 * Why a thread and not libmicrohttpd's external-select mode on our loop: a
 * scrape then never waits behind a busy loop (a scrape is most useful when
 * the loop is slow) and the loop never renders a page. The registry's mutex
 * is the only thing the two threads share (metrics.h), held while one page
 * is rendered into a buffer; the socket writes happen outside it.
 */
#include "metrics.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "h2/io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define MAX_SCRAPE_CONNECTIONS 64

struct metrics_http {
	struct MHD_Daemon *d;
	int fd;
	size_t nr;
	char *paths[METRICS_HTTP_MAX_PATHS];
	struct metrics *regs[METRICS_HTTP_MAX_PATHS];
	uint64_t timeout_ms;

	/* the refresh hand-off between the HTTP thread and the loop */
	void (*refresh)(struct metrics_http *h, void *arg);
	void *arg;
	uv_async_t *async;          /* NULL without a refresh; freed in its close callback */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int in_flight;              /* a refresh was asked for and has not finished */
	uint64_t done;              /* refreshes finished */
	int stopping;
	char *page_path;            /* NULL: no page */
	struct strbuf page;         /* under lock */
};

void metrics_http_set_page(struct metrics_http *h, const char *html, size_t len)
{
	pthread_mutex_lock(&h->lock);
	strbuf_reset(&h->page);
	strbuf_add(&h->page, html, len);
	pthread_mutex_unlock(&h->lock);
}

static void on_async(uv_async_t *a)
{
	struct metrics_http *h = a->data;
	h->refresh(h, h->arg);
}

void metrics_http_refreshed(struct metrics_http *h)
{
	pthread_mutex_lock(&h->lock);
	h->in_flight = 0;
	h->done++;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

/* HTTP thread: ask the loop for fresh values and wait for them, at most timeout_ms. */
static void wait_refresh(struct metrics_http *h)
{
	struct timespec until;
	uint64_t seen;

	if (!h->async)
		return;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)(h->timeout_ms / 1000);
	until.tv_nsec += (long)(h->timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&h->lock);
	seen = h->done;
	if (!h->in_flight && !h->stopping) {
		h->in_flight = 1;
		uv_async_send(h->async);
	}
	while (h->done == seen && !h->stopping)
		if (pthread_cond_timedwait(&h->cond, &h->lock, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&h->lock);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, struct strbuf *body)
{
	size_t len;
	char *buf = strbuf_detach(body, &len);
	struct MHD_Response *r = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result rc;

	if (!r) {
		free(buf);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct metrics_http *h = cls;
	struct strbuf body = STRBUF_INIT;

	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD)) {
		strbuf_addstr(&body, "method not allowed\n");
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", &body);
	}
	for (size_t i = 0; i < h->nr; i++)
		if (!strcmp(url, h->paths[i])) {
			wait_refresh(h);
			metrics_render(h->regs[i], &body);
			return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", &body);
		}
	if (h->page_path && !strcmp(url, h->page_path)) {
		wait_refresh(h);
		pthread_mutex_lock(&h->lock);
		strbuf_add(&body, h->page.buf, h->page.len);
		pthread_mutex_unlock(&h->lock);
		if (!body.len) {
			/* the first refresh did not finish within scrape_timeout */
			strbuf_addstr(&body, "status page not ready\n");
			return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", &body);
		}
		return reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", &body);
	}
	strbuf_addstr(&body, "404 page not found\n");
	return reply(c, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", &body);
}

/* Bind and listen on host:port (Go's net.Listen("tcp", addr) forms). */
static int listen_tcp(const char *addrstr, int shared, char *bound, size_t boundsz, struct strbuf *err)
{
	struct addrinfo hints = { 0 }, *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct addr a;
	char port[16], host[NI_MAXHOST], serv[NI_MAXSERV];
	int fd = -1, one = 1, rc;

	if (addr_parse(addrstr, &a) < 0 || a.kind != ADDR_TCP) {
		strbuf_addf(err, "invalid prometheus listen address \"%s\"", addrstr);
		return -1;
	}
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", a.port);
	rc = getaddrinfo(a.host[0] ? a.host : NULL, port, &hints, &res);
	if (rc) {
		strbuf_addf(err, "cannot resolve \"%s\": %s", addrstr, gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if (!shared && a.port) {
			/* free, unless another process holds it (with SO_REUSEPORT or not) */
			int probe = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
			/* SO_REUSEADDR: connections of a previous run in TIME_WAIT do not count */
			if (probe >= 0)
				setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (probe >= 0 && bind(probe, ai->ai_addr, ai->ai_addrlen) < 0 && errno == EADDRINUSE) {
				close(probe);
				fd = -1;
				errno = EADDRINUSE;
				break;
			}
			if (probe >= 0)
				close(probe);
		}
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* a new process taking over on SIGHUP binds while the old one still serves */
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
			break;
		rc = errno;
		close(fd);
		fd = -1;
		errno = rc;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		strbuf_addf(err, "cannot listen on \"%s\": %s", addrstr, strerror(errno));
		return -1;
	}
	if (bound && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(bound, boundsz, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
	return fd;
}

struct metrics_http *metrics_http_start(const struct metrics_http_opts *o, char *bound, size_t boundsz,
					struct strbuf *err)
{
	struct metrics_http *h;
	uint64_t timeout_ms = o->timeout_ms ? o->timeout_ms : 10000;
	unsigned timeout_s = (unsigned)((timeout_ms + 999) / 1000);
	int fd;

	if (o->nr > METRICS_HTTP_MAX_PATHS) {
		strbuf_addstr(err, "too many metrics paths");
		return NULL;
	}
	fd = listen_tcp(o->addr, o->shared, bound, boundsz, err);
	if (fd < 0)
		return NULL;
	h = xcalloc(1, sizeof(*h));
	h->fd = fd;
	h->nr = o->nr;
	h->timeout_ms = timeout_ms;
	for (size_t i = 0; i < o->nr; i++) {
		h->paths[i] = xstrdup(o->paths[i]);
		h->regs[i] = o->regs[i];
	}
	if (o->page_path)
		h->page_path = xstrdup(o->page_path);
	strbuf_init(&h->page, 0);
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	if (o->loop && o->refresh) {
		h->refresh = o->refresh;
		h->arg = o->arg;
		h->async = xcalloc(1, sizeof(*h->async));
		uv_async_init(o->loop, h->async, on_async);
		h->async->data = h;
	}
	h->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, h,
				MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_SCRAPE_CONNECTIONS,
				MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
				MHD_OPTION_END);
	if (!h->d) {
		strbuf_addf(err, "cannot start the HTTP server on \"%s\"", o->addr);
		metrics_http_stop(h);
		return NULL;
	}
	return h;
}

static void on_async_closed(uv_handle_t *a)
{
	free(a);
}

void metrics_http_stop(struct metrics_http *h)
{
	if (!h)
		return;
	/* a scrape waiting for a refresh the loop will no longer run gives up now */
	pthread_mutex_lock(&h->lock);
	h->stopping = 1;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	if (h->d)
		MHD_stop_daemon(h->d);
	if (h->fd >= 0)
		close(h->fd);
	if (h->async)
		uv_close((uv_handle_t *)h->async, on_async_closed);
	for (size_t i = 0; i < h->nr; i++)
		free(h->paths[i]);
	free(h->page_path);
	strbuf_release(&h->page);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

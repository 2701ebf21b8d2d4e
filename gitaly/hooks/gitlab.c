/* Client for GitLab's internal API (/api/v4/internal/...): libcurl's multi interface driven by uv. */
#include "hooks/hooks.h"
#include "base/log.h"
#include "base/util.h"
#include "grpc/metadata.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Rails answers are small JSON documents; anything bigger is not one. */
#define GITLAB_MAX_BODY (1024 * 1024)
#define GITLAB_DEFAULT_TIMEOUT_MS (300 * 1000)
#define GITLAB_JWT_TTL 60

/*
 * One request owns one multi handle, its timer and one poll handle per socket
 * curl opens: upstream closes the connection after every call anyway, so
 * there is nothing to share between requests. The request is freed once every
 * uv handle it owns has been closed.
 */
struct gitlab_req {
	struct gitaly *g;
	CURLM *multi;
	CURL *easy;
	struct curl_slist *headers;
	uv_timer_t timer;
	unsigned open_handles;     /* uv handles not yet closed, the timer included */
	int finished;              /* done fired or the request was cancelled */
	struct strbuf body;
	struct strbuf url, unix_path, json;
	char errbuf[CURL_ERROR_SIZE];
	int too_big;
	int out_fd;                /* >= 0: the body goes to this file, uncapped */
	gitlab_done_fn done;
	void *arg;
};

struct gitlab_sock {
	uv_poll_t poll;
	struct gitlab_req *req;
	curl_socket_t fd;
};

int gitlab_configured(const struct gitaly *g)
{
	return g->cfg.gitlab_url && *g->cfg.gitlab_url;
}

/* --- JWT (HS256, as golang-jwt writes it) --- */

static void base64url(struct strbuf *out, const void *data, size_t len)
{
	size_t start = out->len;
	grpc_base64_encode(out, data, len);
	for (size_t i = start; i < out->len; i++) {
		if (out->buf[i] == '+')
			out->buf[i] = '-';
		else if (out->buf[i] == '/')
			out->buf[i] = '_';
	}
}

void gitlab_jwt(const char *secret, time_t now, struct strbuf *out)
{
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	struct strbuf claims = STRBUF_INIT;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	const char *s = secret ? secret : "";
	size_t slen = strlen(s), start = out->len;

	/* upstream trims surrounding whitespace of the secret */
	while (slen && strchr(" \t\r\n", s[slen - 1]))
		slen--;
	while (slen && strchr(" \t\r\n", *s)) {
		s++;
		slen--;
	}
	strbuf_addf(&claims, "{\"iss\":\"gitlab-shell\",\"exp\":%lld,\"iat\":%lld}",
		    (long long)now + GITLAB_JWT_TTL, (long long)now);
	base64url(out, header, sizeof(header) - 1);
	strbuf_addch(out, '.');
	base64url(out, claims.buf, claims.len);
	HMAC(EVP_sha256(), s, (int)slen, (const unsigned char *)out->buf + start, out->len - start, mac, &maclen);
	strbuf_addch(out, '.');
	base64url(out, mac, maclen);
	strbuf_release(&claims);
}

/* --- request lifecycle --- */

static void req_handle_closed(uv_handle_t *h)
{
	struct gitlab_req *r = h->data;
	if (h->type == UV_POLL)
		free(container_of((uv_poll_t *)h, struct gitlab_sock, poll));
	if (--r->open_handles == 0) {
		strbuf_release(&r->body);
		strbuf_release(&r->url);
		strbuf_release(&r->unix_path);
		strbuf_release(&r->json);
		free(r);
	}
}

/* Tear curl down (closing its sockets, hence our poll handles), then the timer. */
static void req_teardown(struct gitlab_req *r)
{
	r->finished = 1;
	if (r->easy) {
		curl_multi_remove_handle(r->multi, r->easy);
		curl_easy_cleanup(r->easy);
		r->easy = NULL;
	}
	if (r->multi) {
		curl_multi_cleanup(r->multi);
		r->multi = NULL;
	}
	curl_slist_free_all(r->headers);
	r->headers = NULL;
	uv_timer_stop(&r->timer);
	uv_close((uv_handle_t *)&r->timer, req_handle_closed);
}

static void check_done(struct gitlab_req *r)
{
	CURLMsg *m;
	int left;
	while (!r->finished && (m = curl_multi_info_read(r->multi, &left))) {
		long status = 0;
		char *ctype = NULL, *ctype_copy = NULL;
		const char *error = NULL;
		if (m->msg != CURLMSG_DONE)
			continue;
		if (m->data.result == CURLE_OK) {
			curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
			curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ctype);
			if (ctype)
				ctype_copy = xstrdup(ctype);
		} else if (r->too_big) {
			error = "response too large";
		} else {
			error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(m->data.result);
			log_msgf(LOG_WARN, "GitLab internal API unreachable: %s", error);
		}
		{
			/* the callback may free whatever `arg` is; copy what we still need first */
			gitlab_done_fn done = r->done;
			void *arg = r->arg;
			struct strbuf body = STRBUF_INIT;
			struct strbuf errcopy = STRBUF_INIT;
			if (error)
				strbuf_addstr(&errcopy, error);
			strbuf_add(&body, r->body.buf, r->body.len);
			req_teardown(r);
			done(arg, status, ctype_copy, &body, errcopy.len ? errcopy.buf : NULL);
			strbuf_release(&body);
			strbuf_release(&errcopy);
		}
		free(ctype_copy);
		return;
	}
}

static void on_timer(uv_timer_t *t)
{
	struct gitlab_req *r = t->data;
	int running;
	if (r->finished)
		return;
	curl_multi_socket_action(r->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(r);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct gitlab_sock *s = container_of(h, struct gitlab_sock, poll);
	struct gitlab_req *r = s->req;
	int flags = 0, running;
	if (r->finished)
		return;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(r->multi, s->fd, flags, &running);
	check_done(r);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct gitlab_req *r = userp;
	struct gitlab_sock *s = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			uv_poll_stop(&s->poll);
			uv_close((uv_handle_t *)&s->poll, req_handle_closed);
			if (!r->finished)
				curl_multi_assign(r->multi, fd, NULL);
		}
		return 0;
	}
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->req = r;
		s->fd = fd;
		if (uv_poll_init_socket(r->g->loop, &s->poll, fd) < 0) {
			free(s);
			return -1;
		}
		s->poll.data = r;
		r->open_handles++;
		curl_multi_assign(r->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(&s->poll, events, on_poll);
	return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct gitlab_req *r = userp;
	if (timeout_ms < 0)
		uv_timer_stop(&r->timer);
	else
		uv_timer_start(&r->timer, on_timer, (uint64_t)timeout_ms, 0);
	return 0;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	struct gitlab_req *r = userp;
	size_t n = size * nmemb;
	if (r->out_fd >= 0) {
		/* a local file: a short write is a full disk, and ends the transfer */
		for (size_t off = 0; off < n;) {
			ssize_t w = write(r->out_fd, data + off, n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return 0;
			off += (size_t)w;
		}
		return n;
	}
	if (r->body.len + n > GITLAB_MAX_BODY) {
		r->too_big = 1;
		return 0;
	}
	strbuf_add(&r->body, data, n);
	return n;
}

/*
 * Where to send requests. "http+unix://<escaped socket path>" talks HTTP over
 * a Unix socket with host "unix" and the relative URL root as prefix; http://
 * and https:// URLs are used as they are (as upstream's client does).
 */
static int build_url(struct gitaly *g, const char *path, struct strbuf *url, struct strbuf *unix_path,
		     struct strbuf *err)
{
	const char *base = g->cfg.gitlab_url;
	if (!strncmp(base, "http+unix://", 12)) {
		const char *root = g->cfg.gitlab_relative_url_root ? g->cfg.gitlab_relative_url_root : "";
		int n;
		char *dec = curl_easy_unescape(NULL, base + 12, 0, &n);
		if (!dec) {
			strbuf_addstr(err, "invalid GitLab URL");
			return -1;
		}
		strbuf_add(unix_path, dec, (size_t)n);
		curl_free(dec);
		strbuf_addstr(url, "http://unix");
		while (*root == '/')
			root++;
		if (*root) {
			size_t rl = strlen(root);
			while (rl && root[rl - 1] == '/')
				rl--;
			strbuf_addch(url, '/');
			strbuf_add(url, root, rl);
		}
	} else if (!strncmp(base, "http://", 7) || !strncmp(base, "https://", 8)) {
		size_t bl = strlen(base);
		/* upstream unescapes the configured URL once before using it */
		int n;
		char *dec = curl_easy_unescape(NULL, base, (int)bl, &n);
		if (!dec) {
			strbuf_addstr(err, "invalid GitLab URL");
			return -1;
		}
		strbuf_add(url, dec, (size_t)n);
		curl_free(dec);
	} else {
		strbuf_addstr(err, "unknown GitLab URL prefix");
		return -1;
	}
	strbuf_addstr(url, "/api/v4/internal");
	strbuf_addstr(url, path);
	return 0;
}

static struct gitlab_req *req_start(struct gitaly *g, const char *path, const char *json, int out_fd,
				    gitlab_done_fn done, void *arg, struct strbuf *err)
{
	struct gitlab_req *r = xcalloc(1, sizeof(*r));
	struct strbuf hdr = STRBUF_INIT, tok = STRBUF_INIT;
	uint64_t timeout = g->cfg.gitlab_read_timeout_ms ? g->cfg.gitlab_read_timeout_ms
							 : GITLAB_DEFAULT_TIMEOUT_MS;

	r->g = g;
	r->out_fd = out_fd;
	r->done = done;
	r->arg = arg;
	strbuf_init(&r->body, 0);
	strbuf_init(&r->url, 0);
	strbuf_init(&r->unix_path, 0);
	strbuf_init(&r->json, 0);
	if (json)
		strbuf_addstr(&r->json, json);
	if (build_url(g, path, &r->url, &r->unix_path, err) < 0) {
		strbuf_release(&r->url);
		strbuf_release(&r->unix_path);
		strbuf_release(&r->json);
		free(r);
		return NULL;
	}
	r->multi = curl_multi_init();
	r->easy = curl_easy_init();
	if (!r->multi || !r->easy) {
		strbuf_addstr(err, "cannot initialise libcurl");
		if (r->easy)
			curl_easy_cleanup(r->easy);
		if (r->multi)
			curl_multi_cleanup(r->multi);
		strbuf_release(&r->url);
		strbuf_release(&r->unix_path);
		strbuf_release(&r->json);
		free(r);
		return NULL;
	}
	uv_timer_init(g->loop, &r->timer);
	r->timer.data = r;
	r->open_handles = 1;

	gitlab_jwt(g->cfg.gitlab_secret, time(NULL), &tok);
	strbuf_addf(&hdr, "Gitlab-Shell-Api-Request: %s", tok.buf);
	r->headers = curl_slist_append(r->headers, hdr.buf);
	r->headers = curl_slist_append(r->headers, "Content-Type: application/json");
	r->headers = curl_slist_append(r->headers, "Expect:");
	strbuf_reset(&hdr);
	strbuf_addf(&hdr, "User-Agent: gitaly/%s", g->version ? g->version : "");
	r->headers = curl_slist_append(r->headers, hdr.buf);
	strbuf_release(&hdr);
	strbuf_release(&tok);

	curl_easy_setopt(r->easy, CURLOPT_URL, r->url.buf);
	if (r->unix_path.len)
		curl_easy_setopt(r->easy, CURLOPT_UNIX_SOCKET_PATH, r->unix_path.buf);
	if (json) {
		curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->json.buf);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)r->json.len);
	} else {
		curl_easy_setopt(r->easy, CURLOPT_HTTPGET, 1L);
	}
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_FORBID_REUSE, 1L);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)timeout);
	curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	/* upstream's client does not follow redirects for POSTs it cannot replay safely */
	curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
	if (g->cfg.gitlab_ca_file && *g->cfg.gitlab_ca_file)
		curl_easy_setopt(r->easy, CURLOPT_CAINFO, g->cfg.gitlab_ca_file);
	if (g->cfg.gitlab_ca_path && *g->cfg.gitlab_ca_path)
		curl_easy_setopt(r->easy, CURLOPT_CAPATH, g->cfg.gitlab_ca_path);
	curl_easy_setopt(r->easy, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (g->cfg.gitlab_http_user && *g->cfg.gitlab_http_user && g->cfg.gitlab_http_password &&
	    *g->cfg.gitlab_http_password) {
		curl_easy_setopt(r->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(r->easy, CURLOPT_USERNAME, g->cfg.gitlab_http_user);
		curl_easy_setopt(r->easy, CURLOPT_PASSWORD, g->cfg.gitlab_http_password);
	}

	curl_multi_setopt(r->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(r->multi, CURLMOPT_SOCKETDATA, r);
	curl_multi_setopt(r->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(r->multi, CURLMOPT_TIMERDATA, r);
	/* adding the handle arms the timer; the transfer starts from the loop */
	if (curl_multi_add_handle(r->multi, r->easy) != CURLM_OK) {
		strbuf_addstr(err, "cannot start the GitLab API request");
		req_teardown(r);
		return NULL;
	}
	return r;
}

struct gitlab_req *gitlab_post(struct gitaly *g, const char *path, const char *json,
			       gitlab_done_fn done, void *arg, struct strbuf *err)
{
	return req_start(g, path, json, -1, done, arg, err);
}

struct gitlab_req *gitlab_get_file(struct gitaly *g, const char *path, int fd, gitlab_done_fn done, void *arg,
				   struct strbuf *err)
{
	return req_start(g, path, NULL, fd, done, arg, err);
}

void gitlab_cancel(struct gitlab_req *r)
{
	if (r && !r->finished)
		req_teardown(r);
}

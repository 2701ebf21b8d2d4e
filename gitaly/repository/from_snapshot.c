/*
 * CreateRepositoryFromSnapshot: the creation routine seeded by a tar archive
 * downloaded over HTTP (libcurl, in the thread pool, spooled to a file under
 * the storage's temporary directory) and extracted with tar(1) over a fresh
 * `git init --bare`. Behaviour and messages: docs/technical/backups.md,
 * "CreateRepositoryFromSnapshot".
 */
#include "repository/repository.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/banned.h"

struct from_snapshot {
	struct gitaly_call op;
	struct reposvc_create *rc;
	struct git_cmd *cmd;          /* tar */
	char *url, *auth, *connect_to;
	char *tmp_path;               /* the temporary repository */
	char *spool;                  /* the downloaded archive */
	uv_work_t work;
	atomic_int stop;              /* the call went away: abort the transfer */
	/* results of the download (thread pool) */
	int failed;
	struct strbuf err;
	struct strbuf status_line;    /* "404 Not Found" */
	long status;
};

static void fs_release(struct gitaly_call *op)
{
	struct from_snapshot *f = container_of(op, struct from_snapshot, op);
	if (f->spool) {
		unlink(f->spool);
		free(f->spool);
	}
	free(f->url);
	free(f->auth);
	free(f->connect_to);
	free(f->tmp_path);
	strbuf_release(&f->err);
	strbuf_release(&f->status_line);
	free(f);
}

static void fs_cancel(struct gitaly_call *op)
{
	struct from_snapshot *f = container_of(op, struct from_snapshot, op);
	atomic_store(&f->stop, 1);
	reposvc_create_cancel(f->rc);
	reposvc_kill(f->cmd);
}

/* --- the download (thread pool) --- */

static size_t header_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct from_snapshot *f = arg;
	size_t len = size * n;
	/* keep the last status line (a 100 Continue may precede it): "HTTP/1.1 404 Not Found" */
	if (len > 5 && !memcmp(buf, "HTTP/", 5)) {
		const char *sp = memchr(buf, ' ', len);
		strbuf_reset(&f->status_line);
		if (sp) {
			size_t rest = len - (size_t)(sp + 1 - buf);
			while (rest && (sp[rest] == '\n' || sp[rest] == '\r'))
				rest--;
			strbuf_add(&f->status_line, sp + 1, MIN(rest, (size_t)200));
		}
	}
	return len;
}

static int progress_cb(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct from_snapshot *f = arg;
	return atomic_load(&f->stop) ? 1 : 0;
}

static void download_work(uv_work_t *w)
{
	struct from_snapshot *f = w->data;
	struct curl_slist *headers = NULL, *connect_to = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	struct strbuf hdr = STRBUF_INIT;
	CURL *easy = curl_easy_init();
	FILE *out = fopen(f->spool, "wbe");
	CURLcode rc;

	if (!easy || !out) {
		f->failed = 1;
		strbuf_addf(&f->err, "HTTP request failed: %s", out ? "cannot initialise libcurl" : strerror(errno));
		goto out;
	}
	if (f->auth) {
		strbuf_addf(&hdr, "Authorization: %s", f->auth);
		headers = curl_slist_append(headers, hdr.buf);
		curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	}
	if (f->connect_to) {
		connect_to = curl_slist_append(connect_to, f->connect_to);
		curl_easy_setopt(easy, CURLOPT_CONNECT_TO, connect_to);
	}
	curl_easy_setopt(easy, CURLOPT_URL, f->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);   /* upstream follows no redirect */
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, 30L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, f);
	curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, progress_cb);
	curl_easy_setopt(easy, CURLOPT_XFERINFODATA, f);
	rc = curl_easy_perform(easy);
	if (rc != CURLE_OK) {
		f->failed = 1;
		strbuf_addf(&f->err, "HTTP request failed: %s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &f->status);
	if (f->status < 200 || f->status >= 300) {
		f->failed = 1;
		strbuf_addf(&f->err, "HTTP server: %s", f->status_line.len ? f->status_line.buf : "unknown status");
		goto out;
	}
	if (fflush(out) != 0 || fsync(fileno(out)) < 0) {
		f->failed = 1;
		strbuf_addf(&f->err, "HTTP request failed: writing archive: %s", strerror(errno));
	}
out:
	if (out)
		fclose(out);
	if (easy)
		curl_easy_cleanup(easy);
	curl_slist_free_all(headers);
	curl_slist_free_all(connect_to);
	strbuf_release(&hdr);
}

static void untarred(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct from_snapshot *f = arg;
	struct strbuf m = STRBUF_INIT;
	f->cmd = NULL;
	if (status != 0) {
		strbuf_addstr(&m, "extracting snapshot: ");
		gitaly_describe_status(&m, status);
		log_msgf(LOG_WARN, "extracting snapshot failed: %.*s", (int)MIN(err->len, (size_t)4096), err->buf);
		reposvc_create_seeded(f->rc, GRPC_INTERNAL, m.buf);
	} else {
		reposvc_create_seeded(f->rc, GRPC_OK, NULL);
	}
	strbuf_release(&m);
}

static void download_after(uv_work_t *w, int status)
{
	struct from_snapshot *f = w->data;
	const char *argv[] = { "tar", "-C", f->tmp_path, "-xf", f->spool, NULL };
	struct git_cmd_spec spec = { 0 };
	int rc;

	if (gitaly_call_gone(&f->op)) {
		reposvc_create_seeded(f->rc, GRPC_CANCELLED, "context canceled");
		return;
	}
	if (f->failed) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "extracting snapshot: %s", f->err.buf);
		reposvc_create_seeded(f->rc, GRPC_INTERNAL, m.buf);
		strbuf_release(&m);
		return;
	}
	spec.argv = argv;
	spec.env = f->op.g->base_env.v;
	rc = git_cmd_capture(f->op.g->loop, &spec, NULL, 0, 64 * 1024, untarred, f, &f->cmd);
	if (rc < 0) {
		struct strbuf m = STRBUF_INIT;
		f->cmd = NULL;
		strbuf_addf(&m, "extracting snapshot: executing tar: %s", uv_strerror(rc));
		reposvc_create_seeded(f->rc, GRPC_INTERNAL, m.buf);
		strbuf_release(&m);
	}
}

static void snapshot_seed(struct reposvc_create *rc, const char *tmp_path, const Gitaly__Repository *tmp_repo)
{
	struct from_snapshot *f = reposvc_create_data(rc);
	struct strbuf spool = STRBUF_INIT;

	f->rc = rc;
	f->tmp_path = xstrdup(tmp_path);
	/* beside the temporary repository, so that the start-up cleanup removes it too */
	strbuf_addf(&spool, "%s.snapshot.tar", tmp_path);
	f->spool = strbuf_detach(&spool, NULL);
	f->work.data = f;
	if (uv_queue_work(f->op.g->loop, &f->work, download_work, download_after) < 0)
		reposvc_create_seeded(rc, GRPC_INTERNAL, "extracting snapshot: cannot queue work");
}

static void from_snapshot_done(struct reposvc_create *rc, enum grpc_code code, const char *msg)
{
	struct from_snapshot *f = reposvc_create_data(rc);
	f->rc = NULL;
	if (code == GRPC_OK) {
		Gitaly__CreateRepositoryFromSnapshotResponse resp = GITALY__CREATE_REPOSITORY_FROM_SNAPSHOT_RESPONSE__INIT;
		reposvc_reply(&f->op, &resp);
	} else {
		reposvc_finishf(&f->op, code, "creating repository: %s", msg);
	}
}

/*
 * Checks done before anything is created: a URL curl can parse with an
 * http or https scheme, and a resolved address that is an IP address (the
 * connection then goes to it, on the URL's port, whatever the host).
 */
static int check_request(struct from_snapshot *f, const Gitaly__CreateRepositoryFromSnapshotRequest *req,
			 struct strbuf *msg)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *port = NULL;
	int rc = -1;

	if (!u || curl_url_set(u, CURLUPART_URL, req->http_url ? req->http_url : "", 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
		strbuf_addf(msg, "Bad HTTP URL: parse \"%s\": invalid URI for request", req->http_url ? req->http_url : "");
		goto out;
	}
	if (strcmp(scheme, "http") && strcmp(scheme, "https")) {
		strbuf_addf(msg, "Bad HTTP URL: unsupported protocol scheme \"%s\"", scheme);
		goto out;
	}
	if (req->resolved_address && *req->resolved_address) {
		unsigned char ip[16];
		int v6 = inet_pton(AF_INET6, req->resolved_address, ip) == 1;
		struct strbuf ct = STRBUF_INIT;
		if (!v6 && inet_pton(AF_INET, req->resolved_address, ip) != 1) {
			strbuf_addf(msg, "creating resolved HTTP client: invalid resolved address \"%s\"",
				    req->resolved_address);
			goto out;
		}
		if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
			strbuf_addf(msg, "creating resolved HTTP client: unsupported schema \"%s\"", scheme);
			goto out;
		}
		/* any host, any port -> the address, the URL's port */
		strbuf_addf(&ct, v6 ? "::[%s]:%s" : "::%s:%s", req->resolved_address, port);
		f->connect_to = strbuf_detach(&ct, NULL);
	}
	f->url = xstrdup(req->http_url);
	if (req->http_auth && *req->http_auth) {
		if (strchr(req->http_auth, '\n') || strchr(req->http_auth, '\r')) {
			strbuf_addstr(msg, "Bad HTTP URL: invalid header value for \"Authorization\"");
			goto out;
		}
		f->auth = xstrdup(req->http_auth);
	}
	rc = 0;
out:
	curl_free(scheme);
	curl_free(port);
	curl_url_cleanup(u);
	return rc;
}

void reposvc_create_from_snapshot(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__CreateRepositoryFromSnapshotRequest *req =
		msg_unpack(call, &gitaly__create_repository_from_snapshot_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct reposvc_create_opts opts = { 0 };
	struct from_snapshot *f;
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, LOCATE_NO_EXIST_CHECK, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	f = xcalloc(1, sizeof(*f));
	reposvc_init(&f->op, g, call, fs_release);
	f->op.cancel = fs_cancel;
	strbuf_init(&f->err, 0);
	strbuf_init(&f->status_line, 0);
	if (check_request(f, req, &msg) < 0) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, msg.buf, NULL);
		fs_release(&f->op);
		goto out;
	}
	opts.seed = snapshot_seed;
	opts.done = from_snapshot_done;
	opts.data = f;
	code = reposvc_create_start(&f->op, req->repository, &opts, &f->rc, &msg);
	if (code != GRPC_OK) {
		grpc_call_finishf(call, code, "creating repository: %s", msg.buf);
		fs_release(&f->op);
		goto out;
	}
	gitaly_call_watch(&f->op);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	msg_free(req);
}

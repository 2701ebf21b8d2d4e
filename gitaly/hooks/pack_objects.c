/*
 * HookService/PackObjectsHookWithSidechannel: git upload-pack runs its
 * pack-objects through gitaly-hooks (uploadpack.packObjectsHook), which asks
 * us here; we connect to the Unix socket it named in call metadata, read the
 * want/have list git gave pack-objects, run pack-objects and send its stdout
 * and stderr back as side-band pkt-lines (bands 1 and 2). See
 * docs/technical/pack-objects-cache.md.
 *
 * The exchange on the socket is blocking by nature (the peer is a single
 * gitaly-hooks process), so each call runs it on a thread of its own and
 * reports back to the loop through a uv_async_t.
 *
 * With [pack_objects_cache] enabled, the side-band stream goes to a cache
 * file (hooks/pack_cache.h) written by a producer thread of its own, and every
 * call with the same key, the first included, copies that file as it grows.
 */
#include "core/gitaly.h"
#include "hooks/hooks.h"
#include "hooks/pack_cache.h"
#include "hooks/pack_objects_args.h"
#include "base/pb.h"
#include "base/strvec.h"
#include "base/util.h"
#include "hook.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIDECHANNEL_HEADER "gitaly-sidechannel-socket"
#define SIDECHANNEL_SOCKET "sidechannel"
/* git's want/have list; a fetch of a million refs stays far below */
#define PO_STDIN_MAX (256 * 1024 * 1024)
/* a side-band packet carries at most 65520 - 4 (length) - 1 (band) bytes */
#define SIDEBAND_MAX 65515
#define STDERR_KEEP 4096

/* One pack-objects run: its command, its process, its outcome. */
struct po_run {
	struct strvec argv, env;
	enum grpc_code code;
	struct strbuf msg;
	pthread_mutex_t lock;         /* pid, and the call's sock, shared with cancellation */
	pid_t pid;
	atomic_int cancelled;
};

struct po_call {
	struct gitaly_call base;
	uv_async_t async;
	pthread_t thread;
	/* code and msg are set by the thread, read on the loop after the async fired */
	struct po_run run;
	char *socket_path;
	struct pack_cache *cache;     /* NULL: [pack_objects_cache] is disabled */
	struct strbuf key_prefix;     /* {repository, args, git_protocol}, packed */
	int sock;                     /* the sidechannel, -1 when not connected */
};

/* A cache producer: runs pack-objects for an entry whoever waits for it. */
struct po_gen {
	struct po_run run;
	struct strbuf in;
	struct pack_entry *entry;
};

static void run_init(struct po_run *r)
{
	strvec_init(&r->argv);
	strvec_init(&r->env);
	strbuf_init(&r->msg, 0);
	pthread_mutex_init(&r->lock, NULL);
}

static void run_release(struct po_run *r)
{
	strvec_clear(&r->argv);
	strvec_clear(&r->env);
	strbuf_release(&r->msg);
	pthread_mutex_destroy(&r->lock);
}

static void po_release(struct gitaly_call *c)
{
	struct po_call *p = container_of(c, struct po_call, base);
	run_release(&p->run);
	free(p->socket_path);
	strbuf_release(&p->key_prefix);
	free(p);
}

static void po_cancel(struct gitaly_call *c)
{
	struct po_call *p = container_of(c, struct po_call, base);
	atomic_store(&p->run.cancelled, 1);
	pthread_mutex_lock(&p->run.lock);
	if (p->run.pid > 0)
		kill(p->run.pid, SIGKILL);
	if (p->sock >= 0)
		shutdown(p->sock, SHUT_RDWR);   /* unblocks a thread still reading stdin */
	pthread_mutex_unlock(&p->run.lock);
}

static int write_full(int fd, const void *buf, size_t len)
{
	const char *b = buf;
	while (len) {
		ssize_t n = write(fd, b, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Where a run's side-band stream goes: 0, or -1 with errno. */
typedef int po_sink(void *ctx, const char *buf, size_t len);

/* Straight to the sidechannel: generated and served at once. */
static int sock_sink(void *ctx, const char *buf, size_t len)
{
	if (write_full(*(int *)ctx, buf, len) < 0)
		return -1;
	pack_objects_count_generated(len);
	pack_objects_count_served(len);
	return 0;
}

static int entry_sink(void *ctx, const char *buf, size_t len)
{
	return pack_entry_append(ctx, buf, len);
}

/* One side-band packet: 4 hex digits of length, the band, the data. */
static int send_band(po_sink *sink, void *ctx, int band, const char *data, size_t len)
{
	while (len) {
		size_t n = MIN(len, (size_t)SIDEBAND_MAX);
		char hdr[6];
		snprintf(hdr, sizeof(hdr), "%04zx", n + 5);
		hdr[4] = (char)band;
		if (sink(ctx, hdr, 5) < 0 || sink(ctx, data, n) < 0)
			return -1;
		data += n;
		len -= n;
	}
	return 0;
}

static void set_err(struct po_run *p, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(struct po_run *p, enum grpc_code code, const char *fmt, ...)
{
	va_list ap;
	if (p->code != GRPC_OK)
		return;
	p->code = code;
	va_start(ap, fmt);
	strbuf_vaddf(&p->msg, fmt, ap);
	va_end(ap);
}

static int dial(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int read_stdin(int fd, struct strbuf *in)
{
	char buf[65536];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if (in->len + (size_t)n > PO_STDIN_MAX) {
			errno = EFBIG;
			return -1;
		}
		strbuf_add(in, buf, (size_t)n);
	}
}

/* Run pack-objects on `in`, its output as side-band packets to `sink`. */
static void run_pack_objects(struct po_run *p, const struct strbuf *in, po_sink *sink, void *ctx)
{
	int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t sa;
	sigset_t none, dfl;
	struct strbuf errtext = STRBUF_INIT;
	size_t off = 0;
	pid_t pid;
	int status = 0, rc, sock_broken = 0;

	if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0) {
		set_err(p, GRPC_INTERNAL, "pack objects hook: pipe: %s", strerror(errno));
		goto out;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
	posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
	posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
	/* git gets default signal handling, not the node's (SIGPIPE is ignored here) */
	posix_spawnattr_init(&sa);
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	posix_spawnattr_setsigmask(&sa, &none);
	posix_spawnattr_setsigdefault(&sa, &dfl);
	posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	pthread_mutex_lock(&p->lock);
	rc = atomic_load(&p->cancelled) ? ECANCELED
		: posix_spawn(&pid, p->argv.v[0], &fa, &sa, (char *const *)p->argv.v, (char *const *)p->env.v);
	if (!rc)
		p->pid = pid;
	pthread_mutex_unlock(&p->lock);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&sa);
	close(pin[0]); pin[0] = -1;
	close(pout[1]); pout[1] = -1;
	close(perr[1]); perr[1] = -1;
	if (rc) {
		set_err(p, GRPC_INTERNAL, "pack objects hook: starting git-pack-objects: %s", strerror(rc));
		goto out;
	}
	fcntl(pin[1], F_SETFL, O_NONBLOCK);
	if (!in->len) {
		close(pin[1]);
		pin[1] = -1;
	}
	while (pout[0] >= 0 || perr[0] >= 0) {
		struct pollfd fds[3];
		int nf = 0, iin = -1, iout = -1, ierr = -1;
		char buf[SIDEBAND_MAX];
		if (pin[1] >= 0) { iin = nf; fds[nf++] = (struct pollfd){ .fd = pin[1], .events = POLLOUT }; }
		if (pout[0] >= 0) { iout = nf; fds[nf++] = (struct pollfd){ .fd = pout[0], .events = POLLIN }; }
		if (perr[0] >= 0) { ierr = nf; fds[nf++] = (struct pollfd){ .fd = perr[0], .events = POLLIN }; }
		if (poll(fds, (nfds_t)nf, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (iin >= 0 && fds[iin].revents) {
			ssize_t n = write(pin[1], in->buf + off, in->len - off);
			if (n > 0)
				off += (size_t)n;
			if ((n < 0 && errno != EAGAIN && errno != EINTR) || off == in->len) {
				close(pin[1]);
				pin[1] = -1;
			}
		}
		for (int k = 0; k < 2; k++) {
			int idx = k ? ierr : iout;
			int *fd = k ? &perr[0] : &pout[0];
			ssize_t n;
			if (idx < 0 || !fds[idx].revents)
				continue;
			n = read(*fd, buf, sizeof(buf));
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				close(*fd);
				*fd = -1;
				continue;
			}
			if (k && errtext.len < STDERR_KEEP)
				strbuf_add(&errtext, buf, MIN((size_t)n, STDERR_KEEP - errtext.len));
			if (!sock_broken && send_band(sink, ctx, k ? 2 : 1, buf, (size_t)n) < 0) {
				/* the client went away: stop git rather than pack for nobody */
				sock_broken = errno ? errno : EPIPE;
				kill(pid, SIGKILL);
			}
		}
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&p->lock);
	p->pid = 0;
	pthread_mutex_unlock(&p->lock);
	if (sock_broken == EPIPE)
		set_err(p, GRPC_CANCELLED, "pack objects hook: write: broken pipe");
	else if (sock_broken)
		set_err(p, GRPC_INTERNAL, "pack objects hook: write: %s", strerror(sock_broken));
	else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		struct strbuf st = STRBUF_INIT, q = STRBUF_INIT;
		gitaly_describe_status(&st, status);
		hooks_quote(&q, errtext.buf, errtext.len);
		set_err(p, GRPC_INTERNAL, "pack objects hook: git-pack-objects: stderr: %s err: %s", q.buf, st.buf);
		strbuf_release(&st);
		strbuf_release(&q);
	}
out:
	for (int i = 0; i < 2; i++) {
		if (pin[i] >= 0) close(pin[i]);
		if (pout[i] >= 0) close(pout[i]);
		if (perr[i] >= 0) close(perr[i]);
	}
	strbuf_release(&errtext);
}

static void *gen_thread(void *arg)
{
	struct po_gen *gen = arg;
	run_pack_objects(&gen->run, &gen->in, entry_sink, gen->entry);
	pack_entry_finish(gen->entry, gen->run.code, gen->run.msg.buf);
	run_release(&gen->run);
	strbuf_release(&gen->in);
	free(gen);
	return NULL;
}

/* Start the producer of `e` with the call's command and stdin. */
static void start_producer(struct po_call *p, struct pack_entry *e, const struct strbuf *in)
{
	struct po_gen *gen = xcalloc(1, sizeof(*gen));
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	run_init(&gen->run);
	strvec_pushv(&gen->run.argv, p->run.argv.v);
	strvec_pushv(&gen->run.env, p->run.env.v);
	strbuf_init(&gen->in, 0);
	strbuf_add(&gen->in, in->buf, in->len);
	gen->entry = e;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, gen_thread, gen);
	pthread_attr_destroy(&attr);
	if (rc) {
		pack_entry_finish(e, GRPC_INTERNAL, "pack objects hook: cannot start a thread");
		run_release(&gen->run);
		strbuf_release(&gen->in);
		free(gen);
	}
}

/* Serve the request from the cache: the key, the entry, its stream. */
static void serve_cached(struct po_call *p, int sock, const struct strbuf *in)
{
	unsigned char key[PACK_CACHE_KEY_LEN];
	struct pack_entry *e;
	enum grpc_code code = GRPC_OK;
	struct strbuf msg = STRBUF_INIT;
	EVP_MD_CTX *sha = EVP_MD_CTX_new();
	int generate;

	if (!sha || !EVP_DigestInit_ex(sha, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(sha, p->key_prefix.buf, p->key_prefix.len) || !EVP_DigestUpdate(sha, in->buf, in->len) ||
	    !EVP_DigestFinal_ex(sha, key, NULL)) {
		EVP_MD_CTX_free(sha);
		set_err(&p->run, GRPC_INTERNAL, "pack objects hook: cache key: sha256 failed");
		return;
	}
	EVP_MD_CTX_free(sha);
	e = pack_cache_lookup(p->cache, key, &generate);
	if (!e) {
		run_pack_objects(&p->run, in, sock_sink, &sock);
		return;
	}
	if (generate)
		start_producer(p, e, in);
	if (pack_entry_serve(e, sock, &p->run.cancelled, &code, &msg) < 0) {
		if (errno == EPIPE || errno == ECANCELED)
			set_err(&p->run, GRPC_CANCELLED, "pack objects hook: write: broken pipe");
		else
			set_err(&p->run, GRPC_INTERNAL, "pack objects hook: write: %s", strerror(errno));
	} else if (code != GRPC_OK) {
		set_err(&p->run, code, "%s", msg.buf);
	}
	strbuf_release(&msg);
	pack_entry_release(e);
}

static void *po_thread(void *arg)
{
	struct po_call *p = arg;
	struct strbuf in = STRBUF_INIT;
	int sock = dial(p->socket_path);

	pthread_mutex_lock(&p->run.lock);
	p->sock = sock;
	if (sock >= 0 && atomic_load(&p->run.cancelled))
		shutdown(sock, SHUT_RDWR);
	pthread_mutex_unlock(&p->run.lock);
	if (sock < 0) {
		set_err(&p->run, GRPC_INTERNAL, "get side-channel: dial unix %s: %s", p->socket_path, strerror(errno));
	} else if (read_stdin(sock, &in) < 0) {
		set_err(&p->run, GRPC_INTERNAL, "pack objects hook: read stdin: %s", strerror(errno));
	} else if (p->cache) {
		serve_cached(p, sock, &in);
	} else {
		run_pack_objects(&p->run, &in, sock_sink, &sock);
	}
	pthread_mutex_lock(&p->run.lock);
	p->sock = -1;
	pthread_mutex_unlock(&p->run.lock);
	if (sock >= 0)
		close(sock);
	strbuf_release(&in);
	uv_async_send(&p->async);
	return NULL;
}

static void po_async_closed(uv_handle_t *h)
{
	struct po_call *p = h->data;
	gitaly_call_drop(&p->base);
}

static void po_async(uv_async_t *a)
{
	struct po_call *p = a->data;
	pthread_join(p->thread, NULL);
	if (!gitaly_call_gone(&p->base)) {
		if (p->run.code == GRPC_OK) {
			grpc_call_send(p->base.call, "", 0);   /* PackObjectsHookWithSidechannelResponse{} */
			gitaly_call_finish(&p->base, GRPC_OK, NULL, NULL);
		} else {
			gitaly_call_finish(&p->base, p->run.code, p->run.msg.buf, NULL);
		}
	}
	uv_close((uv_handle_t *)&p->async, po_async_closed);
}

/* Go's %v of a []string: "[a b c]". */
static void format_args(struct strbuf *sb, char **args, size_t n)
{
	strbuf_addch(sb, '[');
	for (size_t i = 0; i < n; i++) {
		if (i)
			strbuf_addch(sb, ' ');
		strbuf_addstr(sb, args[i]);
	}
	strbuf_addch(sb, ']');
}

static void pack_objects_hook(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__PackObjectsHookWithSidechannelRequest *req =
		msg_unpack(call, &gitaly__pack_objects_hook_with_sidechannel_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct pack_objects_args a;
	struct strvec flags = STRVEC_INIT, argv = STRVEC_INIT;
	struct git_call gc = { 0 };
	struct po_call *p;
	const char *why, *addr, *base;
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto done;
	}
	if (pack_objects_args_parse((const char *const *)req->args, req->n_args, &a, &why) < 0) {
		strbuf_addstr(&msg, "invalid pack-objects command: ");
		format_args(&msg, req->args, req->n_args);
		strbuf_addf(&msg, ": %s", why);
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, msg.buf, NULL);
		goto done;
	}
	addr = grpc_metadata_value(grpc_call_metadata(call), SIDECHANNEL_HEADER);
	if (!addr)
		addr = "";
	base = strrchr(addr, '/');
	base = base ? base + 1 : addr;
	if (strcmp(base, SIDECHANNEL_SOCKET)) {
		strbuf_addstr(&msg, "invalid side channel address: ");
		hooks_quote(&msg, addr, strlen(addr));
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, msg.buf, NULL);
		pack_objects_args_release(&a);
		goto done;
	}

	p = xcalloc(1, sizeof(*p));
	gitaly_call_init(&p->base, g, call, po_release);
	p->base.cancel = po_cancel;
	run_init(&p->run);
	strbuf_init(&p->key_prefix, 0);
	p->cache = g->pack_cache;
	if (p->cache) {
		/* upstream's key covers these three fields of the request, then stdin */
		Gitaly__PackObjectsHookWithSidechannelRequest k = GITALY__PACK_OBJECTS_HOOK_WITH_SIDECHANNEL_REQUEST__INIT;
		k.repository = req->repository;
		k.n_args = req->n_args;
		k.args = req->args;
		k.git_protocol = req->git_protocol;
		strbuf_grow(&p->key_prefix, protobuf_c_message_get_packed_size(&k.base));
		strbuf_setlen(&p->key_prefix,
			      protobuf_c_message_pack(&k.base, (uint8_t *)p->key_prefix.buf));
	}
	p->socket_path = xstrdup(addr);
	p->sock = -1;
	gitaly_call_watch(&p->base);

	strvec_push(&flags, "--stdout");
	for (size_t i = 0; i < a.nr_flags; i++)
		strvec_push(&flags, a.flags[i]);
	gc.git_dir = path.buf;
	gc.repo = req->repository;
	gc.subcmd = "pack-objects";
	gc.flags = (const char *const *)flags.v;
	gc.git_protocol = req->git_protocol;
	gc.rpc = call;
	if (gitaly_git_spec(g, &gc, &argv, &p->run.env, &msg) < 0) {
		gitaly_call_finish(&p->base, GRPC_INVALID_ARGUMENT, msg.buf, NULL);
	} else {
		/* `--shallow-file ""` is a global option: right after the git executable */
		strvec_push(&p->run.argv, argv.v[0]);
		if (a.shallow_file) {
			strvec_push(&p->run.argv, "--shallow-file");
			strvec_push(&p->run.argv, "");
		}
		for (size_t i = 1; i < argv.nr; i++)
			strvec_push(&p->run.argv, argv.v[i]);
		uv_async_init(g->loop, &p->async, po_async);
		p->async.data = p;
		gitaly_call_hold(&p->base);
		if (pthread_create(&p->thread, NULL, po_thread, p)) {
			p->run.code = GRPC_INTERNAL;
			strbuf_addstr(&p->run.msg, "pack objects hook: cannot start a thread");
			uv_async_send(&p->async);
		}
	}
	pack_objects_args_release(&a);
done:
	strvec_clear(&flags);
	strvec_clear(&argv);
	strbuf_release(&path);
	strbuf_release(&msg);
	msg_free(req);
}

void gitaly_register_pack_objects_hook(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.HookService/PackObjectsHookWithSidechannel", pack_objects_hook, g);
}

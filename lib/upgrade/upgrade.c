/* Zero-downtime upgrades: hand listening sockets to a new copy of the daemon on SIGHUP. */
#include "upgrade.h"
#include "base/log.h"
#include "base/strbuf.h"
#include "base/strvec.h"
#include "base/util.h"
#include "grpc/server.h"
#include "h2/io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define ENV_FDS "GITALY_UPGRADE_FDS"
#define ENV_READY_FD "GITALY_UPGRADE_READY_FD"
/* A daemon listens on a handful of addresses; anything beyond is a bug. */
#define MAX_SOCKS 32
/* /proc/self/cmdline is read whole; a config path and a few flags fit easily. */
#define MAX_CMDLINE (1 << 20)

struct sock {
	int fd;
	char *key;      /* canonical address, see addr_key() */
	int claimed;
};

/* A Unix socket file this process serves on, removed at exit unless a successor took it. */
struct sock_path {
	char *path;
};

/* One attempt at starting a successor; freed when its last handle is closed. */
struct attempt {
	struct upgrade *u;
	uv_process_t proc;
	uv_pipe_t ready;
	uv_timer_t timer;
	char buf[16];
	int pid;
	int open_handles;
	int exited, is_ready, failed, finished;
};

struct upgrade {
	uv_loop_t *loop;
	int enabled;
	char *pid_file;
	char *exe;                  /* our executable's path at start-up */
	struct strvec args;         /* our argv, from /proc/self/cmdline */
	uint64_t timeout_ms;

	struct sock inherited[MAX_SOCKS];
	size_t nr_inherited;
	int ready_fd;               /* write end of the parent's readiness pipe, or -1 */
	int from_parent;            /* started by an upgrade */

	struct sock shared[MAX_SOCKS];
	size_t nr_shared;
	struct sock_path paths[MAX_SOCKS];
	size_t nr_paths;

	uv_signal_t sighup;
	int serving;                /* upgrade_ready() was called */
	int handed_over;
	struct attempt *attempt;
	void (*on_handover)(void *arg);
	void *handover_arg;
};

/* --- helpers --- */

/* Two processes share a log during an upgrade: every line says which one wrote it (log_begin's "pid"). */
static int ulog_begin(struct log_entry *e, enum log_level level, const char *msg)
{
	return log_begin(e, level, msg);
}

static void ulogf(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ulogf(enum log_level level, const char *fmt, ...)
{
	struct strbuf msg = STRBUF_INIT;
	struct log_entry e;
	va_list ap;

	va_start(ap, fmt);
	strbuf_vaddf(&msg, fmt, ap);
	va_end(ap);
	if (ulog_begin(&e, level, msg.buf))
		log_end(&e);
	strbuf_release(&msg);
}

static int env_true(const char *name)
{
	const char *v = getenv(name);
	static const char *const yes[] = { "1", "t", "T", "true", "TRUE", "True" };
	if (!v)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		if (!strcmp(v, yes[i]))
			return 1;
	return 0;
}

/* "unix:/p", "unix:///p" -> "unix:/p"; "tcp://h:1", "h:1" -> "tcp:h:1": one spelling per socket. */
static int addr_key(const char *addr, struct strbuf *key)
{
	struct addr a;
	if (addr_parse(addr, &a) < 0)
		return -EINVAL;
	if (a.kind == ADDR_UNIX)
		strbuf_addf(key, "unix:%s", a.path);
	else if (a.kind == ADDR_TCP)
		strbuf_addf(key, strchr(a.host, ':') ? "tcp:[%s]:%d" : "tcp:%s:%d", a.host, a.port);
	else
		strbuf_addf(key, strchr(a.host, ':') ? "tls:[%s]:%d" : "tls:%s:%d", a.host, a.port);
	return 0;
}

/* The address a listening socket is bound to, in grpc_server_listen()'s `bound` form. */
static void sock_name(int fd, char *out, size_t outsz)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "";

	if (!out || !outsz)
		return;
	out[0] = '\0';
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_UNIX) {
		const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
		snprintf(out, outsz, "unix:%.*s", (int)strnlen(un->sun_path, sizeof(un->sun_path)),
			 un->sun_path);
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, outsz, "[%s]:%d", host, ntohs(in6->sin6_port));
	} else if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, outsz, "%s:%d", host, ntohs(in->sin_port));
	}
}

static void set_cloexec(int fd)
{
	int flags = fcntl(fd, F_GETFD);
	if (flags >= 0)
		fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

static int parse_fd(const char *s, const char **end)
{
	char *e;
	long v;
	errno = 0;
	v = strtol(s, &e, 10);
	if (errno || e == s || v < 0 || v > INT_MAX)
		return -1;
	*end = e;
	return (int)v;
}

/* Our path as exec'd: a binary replaced on disk shows as "path (deleted)". */
static char *self_exe(void)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	static const char deleted[] = " (deleted)";
	size_t dl = sizeof(deleted) - 1;

	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	if ((size_t)n > dl && !strcmp(buf + n - dl, deleted))
		buf[n - dl] = '\0';
	return xstrdup(buf);
}

static int self_args(struct strvec *args)
{
	struct strbuf sb = STRBUF_INIT;
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n;
		strbuf_grow(&sb, 4096);
		n = read(fd, sb.buf + sb.len, 4096);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		strbuf_setlen(&sb, sb.len + (size_t)n);
		if (sb.len > MAX_CMDLINE) {
			rc = -E2BIG;
			break;
		}
	}
	close(fd);
	for (size_t i = 0; rc == 0 && i < sb.len; i += strlen(sb.buf + i) + 1)
		strvec_push(args, sb.buf + i);
	strbuf_release(&sb);
	if (rc == 0 && !args->nr)
		rc = -EINVAL;
	return rc;
}

/* GITALY_UPGRADE_FDS: "<fd>:<len>:<address>" entries separated by ','. */
static void read_inherited(struct upgrade *u)
{
	const char *v = getenv(ENV_FDS), *p = v;

	while (p && *p && u->nr_inherited < MAX_SOCKS) {
		const char *e;
		int fd = parse_fd(p, &e), len;
		if (fd < 0 || *e != ':')
			goto bad;
		len = parse_fd(e + 1, &e);
		if (len <= 0 || *e != ':' || strnlen(e + 1, (size_t)len) < (size_t)len)
			goto bad;
		if (fcntl(fd, F_GETFD) < 0) {
			ulogf(LOG_WARN, "upgrade: inherited descriptor %d is not open", fd);
		} else {
			struct sock *s = &u->inherited[u->nr_inherited++];
			set_cloexec(fd);
			s->fd = fd;
			s->key = xstrndup(e + 1, (size_t)len);
		}
		p = e + 1 + len;
		if (*p == ',')
			p++;
		else if (*p)
			goto bad;
	}
	unsetenv(ENV_FDS);
	return;
bad:
	ulogf(LOG_ERROR, "upgrade: malformed %s, binding addresses anew", ENV_FDS);
	unsetenv(ENV_FDS);
}

static void read_ready_fd(struct upgrade *u)
{
	const char *v = getenv(ENV_READY_FD), *e;
	u->ready_fd = -1;
	if (!v)
		return;
	u->ready_fd = parse_fd(v, &e);
	if (u->ready_fd < 0 || *e || fcntl(u->ready_fd, F_GETFD) < 0) {
		ulogf(LOG_ERROR, "upgrade: bad %s \"%s\"", ENV_READY_FD, v);
		u->ready_fd = -1;
	} else {
		set_cloexec(u->ready_fd);
		u->from_parent = 1;
	}
	unsetenv(ENV_READY_FD);
}

int upgrade_write_pid_file(const char *path, long pid)
{
	struct strbuf tmp = STRBUF_INIT;
	char num[32];
	int fd, n, rc = 0;

	n = snprintf(num, sizeof(num), "%ld", pid);
	strbuf_addf(&tmp, "%s.%ld.tmp", path, (long)getpid());
	fd = open(tmp.buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
	} else {
		if (write(fd, num, (size_t)n) != n)
			rc = errno ? -errno : -EIO;
		if (close(fd) < 0 && !rc)
			rc = -errno;
		if (!rc && rename(tmp.buf, path) < 0)
			rc = -errno;
		if (rc)
			unlink(tmp.buf);
	}
	strbuf_release(&tmp);
	return rc;
}

static void write_own_pid(struct upgrade *u)
{
	int rc;
	if (!u->pid_file)
		return;
	rc = upgrade_write_pid_file(u->pid_file, (long)getpid());
	if (rc < 0)
		ulogf(LOG_ERROR, "cannot write pid file \"%s\": %s", u->pid_file, strerror(-rc));
}

/* --- one attempt --- */

static void on_attempt_closed(uv_handle_t *h)
{
	struct attempt *a = h->data;
	if (--a->open_handles == 0)
		free(a);
}

/* Detach the attempt from the upgrade and close its handles; the successor, if ready, lives on. */
static void attempt_finish(struct attempt *a)
{
	if (a->finished)
		return;
	a->finished = 1;
	if (a->u->attempt == a)
		a->u->attempt = NULL;
	uv_read_stop((uv_stream_t *)&a->ready);
	uv_timer_stop(&a->timer);
	uv_close((uv_handle_t *)&a->ready, on_attempt_closed);
	uv_close((uv_handle_t *)&a->timer, on_attempt_closed);
	uv_close((uv_handle_t *)&a->proc, on_attempt_closed);
}

static void attempt_fail(struct attempt *a, const char *why)
{
	struct log_entry e;

	if (a->failed || a->is_ready)
		return;
	a->failed = 1;
	if (ulog_begin(&e, LOG_ERROR, "upgrade failed, this process keeps serving")) {
		log_int(&e, "new_pid", a->pid);
		log_str(&e, "error", why);
		log_end(&e);
	}
	/* the new process may have written the PID file before it failed */
	write_own_pid(a->u);
	if (a->exited)
		attempt_finish(a);
	else
		uv_process_kill(&a->proc, SIGKILL); /* attempt_finish() when it is reaped */
}

static void on_child_exit(uv_process_t *p, int64_t status, int term_signal)
{
	struct attempt *a = p->data;
	char why[96];

	a->exited = 1;
	if (a->failed) {
		attempt_finish(a);
		return;
	}
	if (term_signal)
		snprintf(why, sizeof(why), "new process killed by signal %d before it was ready", term_signal);
	else
		snprintf(why, sizeof(why), "new process exited with status %lld before it was ready",
			 (long long)status);
	attempt_fail(a, why);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct attempt *a = h->data;
	*buf = uv_buf_init(a->buf, sizeof(a->buf));
}

static void on_ready_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct attempt *a = s->data;
	struct upgrade *u = a->u;
	struct log_entry e;

	if (nread == 0)
		return;
	if (nread < 0) {
		uv_read_stop(s);
		attempt_fail(a, "new process closed its readiness pipe before it was ready");
		return;
	}
	a->is_ready = 1;
	u->handed_over = 1;
	if (ulog_begin(&e, LOG_INFO, "upgrade: new process is ready, handing over")) {
		log_int(&e, "new_pid", a->pid);
		log_end(&e);
	}
	attempt_finish(a);
	if (u->on_handover)
		u->on_handover(u->handover_arg);
}

static void on_timeout(uv_timer_t *t)
{
	struct attempt *a = t->data;
	char why[96];
	snprintf(why, sizeof(why), "new process was not ready within %llu ms",
		 (unsigned long long)a->u->timeout_ms);
	attempt_fail(a, why);
}

/* The environment of the new process: ours, with the hand-over variables replaced. */
static void child_env(struct upgrade *u, struct strvec *env, int ready_fd_no)
{
	extern char **environ;
	struct strbuf fds = STRBUF_INIT;

	for (char **e = environ; *e; e++)
		if (strncmp(*e, ENV_FDS "=", sizeof(ENV_FDS)) && strncmp(*e, ENV_READY_FD "=", sizeof(ENV_READY_FD)))
			strvec_push(env, *e);
	for (size_t i = 0; i < u->nr_shared; i++)
		strbuf_addf(&fds, "%s%d:%zu:%s", i ? "," : "", 3 + (int)i, strlen(u->shared[i].key),
			    u->shared[i].key);
	strvec_pushf(env, "%s=%s", ENV_FDS, fds.buf);
	strvec_pushf(env, "%s=%d", ENV_READY_FD, ready_fd_no);
	strbuf_release(&fds);
}

int upgrade_start(struct upgrade *u)
{
	uv_stdio_container_t stdio[3 + MAX_SOCKS + 1];
	uv_process_options_t opts;
	struct strvec env = STRVEC_INIT;
	struct attempt *a;
	struct log_entry e;
	int pipefd[2], nstdio = 0, rc;

	if (!u->enabled)
		return -EPERM;
	if (!u->serving)
		return -EAGAIN;
	if (u->attempt || u->handed_over)
		return -EBUSY;
	if (!u->exe)
		return -ENOENT;
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;

	for (int i = 0; i < 3; i++) {
		/* a daemon started with a closed stdin must not make the child fail */
		stdio[nstdio].flags = fcntl(i, F_GETFD) < 0 ? UV_IGNORE : UV_INHERIT_FD;
		stdio[nstdio++].data.fd = i;
	}
	for (size_t i = 0; i < u->nr_shared; i++) {
		stdio[nstdio].flags = UV_INHERIT_FD;
		stdio[nstdio++].data.fd = u->shared[i].fd;
	}
	stdio[nstdio].flags = UV_INHERIT_FD;
	stdio[nstdio].data.fd = pipefd[1];
	child_env(u, &env, nstdio);
	nstdio++;

	a = xcalloc(1, sizeof(*a));
	a->u = u;
	memset(&opts, 0, sizeof(opts));
	opts.file = u->exe;
	opts.args = (char **)u->args.v;
	opts.env = (char **)env.v;
	opts.exit_cb = on_child_exit;
	opts.stdio = stdio;
	opts.stdio_count = nstdio;
	a->proc.data = a;
	rc = uv_spawn(u->loop, &a->proc, &opts);
	strvec_clear(&env);
	close(pipefd[1]);
	if (rc < 0) {
		close(pipefd[0]);
		/* a failed uv_spawn still initialised the handle: it must be closed */
		a->open_handles = 1;
		a->finished = 1;
		uv_close((uv_handle_t *)&a->proc, on_attempt_closed);
		return rc;
	}
	a->pid = a->proc.pid;
	a->open_handles = 3;
	uv_unref((uv_handle_t *)&a->proc);

	uv_pipe_init(u->loop, &a->ready, 0);
	a->ready.data = a;
	uv_timer_init(u->loop, &a->timer);
	a->timer.data = a;
	uv_unref((uv_handle_t *)&a->timer);
	u->attempt = a;
	rc = uv_pipe_open(&a->ready, pipefd[0]);
	if (rc < 0)
		close(pipefd[0]);
	else
		rc = uv_read_start((uv_stream_t *)&a->ready, alloc_cb, on_ready_read);
	if (rc < 0) {
		attempt_fail(a, "cannot watch the readiness pipe");
		return 0;
	}
	uv_unref((uv_handle_t *)&a->ready);
	uv_timer_start(&a->timer, on_timeout, u->timeout_ms, 0);
	if (ulog_begin(&e, LOG_INFO, "upgrade: started new process")) {
		log_int(&e, "new_pid", a->pid);
		log_str(&e, "executable", u->exe);
		log_end(&e);
	}
	return 0;
}

static void on_sighup(uv_signal_t *h, int signum)
{
	struct upgrade *u = h->data;
	int rc = upgrade_start(u);

	switch (rc) {
	case 0:
		break;
	case -EPERM:
		ulogf(LOG_WARN, "received SIGHUP but upgrades are disabled (%s is not true), ignoring",
			 UPGRADE_ENV_ENABLED);
		break;
	case -EAGAIN:
		ulogf(LOG_WARN, "received SIGHUP during start-up, ignoring");
		break;
	case -EBUSY:
		ulogf(LOG_WARN, "received SIGHUP while an upgrade is under way, ignoring");
		break;
	default:
		ulogf(LOG_ERROR, "upgrade failed, this process keeps serving: cannot start \"%s\": %s",
			 u->exe ? u->exe : "?", uv_strerror(rc));
	}
}

/* --- public API --- */

struct upgrade *upgrade_new(uv_loop_t *loop)
{
	struct upgrade *u = xcalloc(1, sizeof(*u));
	const char *pf = getenv(UPGRADE_ENV_PID_FILE);
	int rc;

	u->loop = loop;
	u->enabled = env_true(UPGRADE_ENV_ENABLED);
	u->pid_file = pf && *pf ? xstrdup(pf) : NULL;
	u->timeout_ms = UPGRADE_DEFAULT_TIMEOUT_MS;
	strvec_init(&u->args);
	read_inherited(u);
	read_ready_fd(u);
	if (u->enabled) {
		u->exe = self_exe();
		rc = self_args(&u->args);
		if (!u->exe || rc < 0) {
			ulogf(LOG_ERROR, "upgrades disabled: cannot read this process's executable or arguments");
			u->enabled = 0;
		}
	}
	uv_signal_init(loop, &u->sighup);
	u->sighup.data = u;
	uv_signal_start(&u->sighup, on_sighup, SIGHUP);
	uv_unref((uv_handle_t *)&u->sighup);
	return u;
}

static void close_unclaimed(struct upgrade *u)
{
	for (size_t i = 0; i < u->nr_inherited; i++) {
		struct sock *s = &u->inherited[i];
		if (!s->claimed && s->fd >= 0) {
			ulogf(LOG_INFO, "upgrade: closing unused inherited listener %s", s->key);
			close(s->fd);
		}
		s->fd = -1;
	}
}

void upgrade_free(struct upgrade *u)
{
	if (!u)
		return;
	close_unclaimed(u);
	if (u->ready_fd >= 0)
		close(u->ready_fd);
	if (u->attempt) {
		struct attempt *a = u->attempt;
		if (!a->exited)
			uv_process_kill(&a->proc, SIGKILL);
		attempt_finish(a);
	}
	uv_close((uv_handle_t *)&u->sighup, NULL);
	uv_run(u->loop, UV_RUN_NOWAIT);
	for (size_t i = 0; i < u->nr_paths; i++) {
		/* a successor serves on it now; a process that never served never owned it */
		if (u->serving && !u->handed_over)
			unlink(u->paths[i].path);
		free(u->paths[i].path);
	}
	for (size_t i = 0; i < u->nr_inherited; i++)
		free(u->inherited[i].key);
	for (size_t i = 0; i < u->nr_shared; i++)
		free(u->shared[i].key);
	strvec_clear(&u->args);
	free(u->exe);
	free(u->pid_file);
	free(u);
}

static void share(struct upgrade *u, int fd, struct strbuf *key)
{
	if (u->nr_shared >= MAX_SOCKS) {
		ulogf(LOG_WARN, "upgrade: too many listeners, \"%s\" will not be handed over", key->buf);
		return;
	}
	u->shared[u->nr_shared].fd = fd;
	u->shared[u->nr_shared].key = strbuf_detach(key, NULL);
	u->nr_shared++;
}

static void remember_path(struct upgrade *u, const char *path)
{
	if (u->nr_paths < MAX_SOCKS)
		u->paths[u->nr_paths++].path = xstrdup(path);
}

/*
 * Bind a Unix socket ourselves rather than with grpc_server_listen(): libuv
 * removes the file of a pipe it bound when the handle is closed, which would
 * pull the socket from under the successor when the old process stops
 * listening. We remove it at exit instead, only if nobody took it over.
 * Returns the descriptor or a negative errno.
 */
static int listen_unix(struct upgrade *u, struct grpc_server *s, const char *path, char *bound, size_t boundsz)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd, rc;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* replace a stale socket left by a crashed process, never a regular file */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = grpc_server_listen_fd(s, fd);
	if (rc < 0) {
		close(fd);
		unlink(path);
		return rc;
	}
	remember_path(u, path);
	if (bound)
		snprintf(bound, boundsz, "unix:%s", path);
	return fd;
}

int upgrade_listen(struct upgrade *u, struct grpc_server *s, const char *addr, char *bound, size_t boundsz)
{
	struct strbuf key = STRBUF_INIT;
	int before[MAX_SOCKS * 2], after[MAX_SOCKS * 2];
	size_t nb, na;
	int rc;

	if (addr_key(addr, &key) < 0) {
		strbuf_release(&key);
		return grpc_server_listen(s, addr, bound, boundsz);
	}
	for (size_t i = 0; i < u->nr_inherited; i++) {
		struct sock *in = &u->inherited[i];
		if (in->claimed || in->fd < 0 || strcmp(in->key, key.buf))
			continue;
		rc = !strncmp(key.buf, "tls:", 4) ? grpc_server_listen_fd_tls(s, in->fd)
						   : grpc_server_listen_fd(s, in->fd);
		if (rc < 0) {
			/* binding anew would replace the parent's Unix socket file */
			strbuf_release(&key);
			return rc;
		}
		in->claimed = 1;
		if (!strncmp(key.buf, "unix:", 5))
			remember_path(u, key.buf + 5);
		sock_name(in->fd, bound, boundsz);
		ulogf(LOG_INFO, "upgrade: took over inherited listener %s", key.buf);
		share(u, in->fd, &key);
		strbuf_release(&key);
		return 0;
	}

	if (!strncmp(key.buf, "unix:", 5)) {
		rc = listen_unix(u, s, key.buf + 5, bound, boundsz);
		if (rc >= 0)
			share(u, rc, &key);
		strbuf_release(&key);
		return rc < 0 ? rc : 0;
	}
	nb = grpc_server_listen_fds(s, before, ARRAY_SIZE(before));
	rc = grpc_server_listen(s, addr, bound, boundsz);
	if (rc < 0) {
		strbuf_release(&key);
		return rc;
	}
	na = grpc_server_listen_fds(s, after, ARRAY_SIZE(after));
	for (size_t i = 0; i < na; i++) {
		int known = 0;
		for (size_t j = 0; j < nb && !known; j++)
			known = after[i] == before[j];
		if (!known) {
			share(u, after[i], &key);
			break;
		}
	}
	strbuf_release(&key);
	return 0;
}

int upgrade_ready(struct upgrade *u, void (*on_handover)(void *arg), void *arg)
{
	int rc = 0;

	u->on_handover = on_handover;
	u->handover_arg = arg;
	close_unclaimed(u);
	write_own_pid(u);
	u->serving = 1;
	if (u->ready_fd >= 0) {
		ssize_t n;
		do
			n = write(u->ready_fd, "1", 1);
		while (n < 0 && errno == EINTR);
		if (n != 1) {
			rc = -errno;
			ulogf(LOG_ERROR, "upgrade: cannot tell the parent process we are ready: %s", strerror(errno));
		} else {
			ulogf(LOG_INFO, "upgrade: ready, told the parent process to hand over");
		}
		close(u->ready_fd);
		u->ready_fd = -1;
	}
	return rc;
}

int upgrade_inherited(const struct upgrade *u)
{
	return u->from_parent;
}

void upgrade_set_timeout(struct upgrade *u, uint64_t ms)
{
	u->timeout_ms = ms;
}

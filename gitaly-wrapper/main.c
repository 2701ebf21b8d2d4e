/* gitaly-wrapper: the process a supervisor (runit) watches in place of a gitaly or praefect whose PID changes. */
#include "base/log.h"
#include "base/strbuf.h"
#include "base/strvec.h"
#include "base/util.h"
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/*
 *	GITALY_PID_FILE=/path/to/pid gitaly-wrapper <gitaly or praefect binary> [args...]
 *
 * The wrapper adopts the daemon named by the PID file when it is alive and
 * runs the same program, or else starts the binary itself with
 * GITALY_UPGRADES_ENABLED=true. It forwards the signals a supervisor sends to
 * the daemon, and follows the PID file: after a graceful upgrade (SIGHUP) the
 * daemon that serves has a new PID, which the new process writes there before
 * the old one exits. The wrapper exits when no daemon is left, with the
 * daemon's exit status when it was the wrapper's own child, else 0.
 *
 * Logs go to stdout, as text or as JSON (WRAPPER_JSON_LOGGING=true); every
 * line carries the wrapper's PID ("wrapper") and the daemon's ("process").
 */

#define ENV_PID_FILE "GITALY_PID_FILE"
#define ENV_UPGRADES "GITALY_UPGRADES_ENABLED"
#define ENV_JSON "WRAPPER_JSON_LOGGING"
/* Often enough that a supervisor never watches a stale PID for long. */
#define POLL_MS 200
/* A PID file holds one number; anything longer is not ours. */
#define MAX_PID_FILE 64

/* What runit's sv and other supervisors send; KILL and STOP cannot be caught. */
static const int forwarded[] = {
	SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGCONT, SIGWINCH, SIGTTIN, SIGTTOU,
};

struct wrapper {
	uv_loop_t *loop;
	const char *binary;
	char **args;               /* argv for the daemon, args[0] == binary */
	const char *pid_file;
	char *base;                /* the binary's base name, to recognise the daemon */
	pid_t pid;                 /* the daemon we stand in for */
	pid_t prev;                /* the one before an upgrade, while the new one may still fail */

	uv_process_t child;        /* when we started the daemon ourselves */
	pid_t child_pid;
	int child_running;
	int child_status;          /* exit status to report, once reaped */

	uv_timer_t poll;
	uv_signal_t sigs[ARRAY_SIZE(forwarded)];
	int exit_code;
	int done;
};

static struct wrapper wrapper;

/* --- logging: every line says who we are and whom we watch --- */

static int wlog_begin(struct log_entry *e, enum log_level level, const char *msg)
{
	if (!log_begin(e, level, msg))
		return 0;
	log_int(e, "wrapper", (int64_t)getpid());
	if (wrapper.pid > 0)
		log_int(e, "process", (int64_t)wrapper.pid);
	return 1;
}

static void wlog(enum log_level level, const char *msg)
{
	struct log_entry e;
	if (wlog_begin(&e, level, msg))
		log_end(&e);
}

static void wlog_str(enum log_level level, const char *msg, const char *key, const char *value)
{
	struct log_entry e;
	if (wlog_begin(&e, level, msg)) {
		log_str(&e, key, value);
		log_end(&e);
	}
}

/* --- the daemon process --- */

/*
 * Read the PID file: the PID, -ENOENT (no file) or -EINVAL (not a number),
 * which mean "spawn one", or another negative errno.
 */
static long read_pid_file(const char *path)
{
	char buf[MAX_PID_FILE + 1], *end;
	ssize_t n;
	long pid;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	close(fd);
	buf[n] = '\0';
	errno = 0;
	pid = strtol(buf, &end, 10);
	while (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t')
		end++;
	if (errno || end == buf || *end || pid <= 0 || pid > INT_MAX)
		return -EINVAL;
	return pid;
}

/* Alive: it exists and is not a zombie waiting for a parent to reap it. */
static int process_alive(pid_t pid)
{
	char path[64], buf[256], *p;
	ssize_t n;
	int fd;

	if (pid <= 0)
		return 0;
	if (pid == wrapper.child_pid && wrapper.child_pid > 0)
		return wrapper.child_running; /* libuv reaps it and tells us */
	if (kill(pid, 0) < 0 && errno != EPERM)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno != ENOENT;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 1;
	buf[n] = '\0';
	/* "pid (comm) S ...": comm may hold spaces and parentheses, so find the last ')' */
	p = strrchr(buf, ')');
	return !(p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* The process runs our binary: its executable's base name, or its comm (cut at 15 bytes), matches. */
static int process_expected(pid_t pid)
{
	char path[64], buf[PATH_MAX];
	static const char deleted[] = " (deleted)";
	size_t dl = sizeof(deleted) - 1;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = '\0';
		/* the binary was replaced on disk since the process started */
		if ((size_t)n > dl && !strcmp(buf + n - dl, deleted))
			buf[n - dl] = '\0';
		if (!strcmp(base_name(buf), wrapper.base))
			return 1;
	}
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return *buf && !strncmp(buf, wrapper.base, 15) && strlen(buf) == MIN(strlen(wrapper.base), (size_t)15);
}

static void follow(uv_timer_t *t);

static void on_child_exit(uv_process_t *p, int64_t status, int term_signal)
{
	struct log_entry e;

	wrapper.child_running = 0;
	wrapper.child_status = term_signal ? 128 + term_signal : (int)status;
	if (wlog_begin(&e, LOG_INFO, "spawned process exited")) {
		/* "pid" is the wrapper's own on every line; the child is "process", as upstream names it */
		log_int(&e, "process", (int64_t)wrapper.child_pid);
		if (term_signal)
			log_int(&e, "signal", term_signal);
		else
			log_int(&e, "status", status);
		log_end(&e);
	}
	uv_close((uv_handle_t *)p, NULL);
	uv_timer_start(&wrapper.poll, follow, 0, POLL_MS);
}

static int spawn_daemon(void)
{
	extern char **environ;
	struct strvec env = STRVEC_INIT;
	uv_stdio_container_t stdio[3];
	uv_process_options_t opts;
	int rc;

	for (char **e = environ; *e; e++)
		if (strncmp(*e, ENV_UPGRADES "=", sizeof(ENV_UPGRADES)))
			strvec_push(&env, *e);
	strvec_push(&env, ENV_UPGRADES "=true");
	for (int i = 0; i < 3; i++) {
		stdio[i].flags = fcntl(i, F_GETFD) < 0 ? UV_IGNORE : UV_INHERIT_FD;
		stdio[i].data.fd = i;
	}
	memset(&opts, 0, sizeof(opts));
	opts.file = wrapper.binary;
	opts.args = wrapper.args;
	opts.env = (char **)env.v;
	opts.stdio = stdio;
	opts.stdio_count = 3;
	opts.exit_cb = on_child_exit;
	rc = uv_spawn(wrapper.loop, &wrapper.child, &opts);
	strvec_clear(&env);
	if (rc < 0) {
		uv_close((uv_handle_t *)&wrapper.child, NULL);
		return rc;
	}
	wrapper.child_pid = wrapper.child.pid;
	wrapper.child_running = 1;
	return 0;
}

/* --- following the daemon --- */

static void finish(int code)
{
	if (wrapper.done)
		return;
	wrapper.done = 1;
	wrapper.exit_code = code;
	uv_stop(wrapper.loop);
}

static void switch_to(pid_t pid, const char *why)
{
	struct log_entry e;
	if (wlog_begin(&e, LOG_INFO, why)) {
		log_int(&e, "new_process", (int64_t)pid);
		log_end(&e);
	}
	if (pid != wrapper.prev)
		wrapper.prev = wrapper.pid;
	else
		wrapper.prev = 0;
	wrapper.pid = pid;
}

static void follow(uv_timer_t *t)
{
	long fpid = read_pid_file(wrapper.pid_file);

	/* the old process is gone once its successor took over: forget it */
	if (wrapper.prev > 0 && !process_alive(wrapper.prev))
		wrapper.prev = 0;

	/* The PID file names the process that serves: after an upgrade, a new one. */
	if (fpid > 0 && (pid_t)fpid != wrapper.pid && process_alive((pid_t)fpid) &&
	    process_expected((pid_t)fpid))
		switch_to((pid_t)fpid, "following the process named by the pid file");
	if (process_alive(wrapper.pid))
		return;
	/* The new process died before it took over: the old one keeps serving. */
	if (wrapper.prev > 0 && process_alive(wrapper.prev) && process_expected(wrapper.prev)) {
		switch_to(wrapper.prev, "new process is gone, back to the previous one");
		return;
	}
	wlog(LOG_ERROR, "wrapper for process shutting down");
	finish(wrapper.pid == wrapper.child_pid && !wrapper.child_running ? wrapper.child_status : 0);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct log_entry e;
	/* the PID may have changed since the last poll */
	follow(&wrapper.poll);
	if (wrapper.done)
		return;
	if (wlog_begin(&e, LOG_WARN, "forwarding signal")) {
		log_str(&e, "signal", strsignal(signum));
		log_end(&e);
	}
	if (kill(wrapper.pid, signum) < 0) {
		if (wlog_begin(&e, LOG_ERROR, "can't forward the signal")) {
			log_str(&e, "signal", strsignal(signum));
			log_str(&e, "error", strerror(errno));
			log_end(&e);
		}
	}
	/* an upgrade or a stop follows most signals: look again soon */
	uv_timer_start(&wrapper.poll, follow, 50, POLL_MS);
}

/* Boolean environment variables read as Go's strconv.ParseBool does. */
static int env_true(const char *name)
{
	static const char *const yes[] = { "1", "t", "T", "true", "TRUE", "True" };
	const char *v = getenv(name);
	for (size_t i = 0; v && i < ARRAY_SIZE(yes); i++)
		if (!strcmp(v, yes[i]))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	long pid;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	log_configure(env_true(ENV_JSON) ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT, LOG_INFO, stdout);

	if (argc < 2) {
		struct strbuf msg = STRBUF_INIT;
		cli_usage_line(&msg, argv[0], "forking_binary [args]");
		wlog(LOG_ERROR, msg.buf);
		strbuf_release(&msg);
		return 1;
	}
	wrapper.binary = argv[1];
	wrapper.args = argv + 1;
	wrapper.base = xstrdup(base_name(argv[1]));
	wlog(LOG_INFO, "Wrapper started");

	wrapper.pid_file = getenv(ENV_PID_FILE);
	if (!wrapper.pid_file || !*wrapper.pid_file) {
		wlog(LOG_ERROR, "missing pid file ENV variable \"" ENV_PID_FILE "\"");
		return 1;
	}
	wlog_str(LOG_INFO, "finding process", "pid_file", wrapper.pid_file);

	wrapper.loop = uv_default_loop();
	pid = read_pid_file(wrapper.pid_file);
	if (pid == -ENOENT || pid == -EINVAL) {
		wlog_str(LOG_ERROR, "find process", "error",
			 pid == -ENOENT ? "pid file does not exist" : "pid file does not hold a process id");
	} else if (pid < 0) {
		wlog_str(LOG_ERROR, "find process", "error", strerror((int)-pid));
		return 1;
	}

	if (pid > 0 && process_alive((pid_t)pid) && process_expected((pid_t)pid)) {
		wrapper.pid = (pid_t)pid;
		wlog(LOG_INFO, "adopting a process");
	} else {
		wlog(LOG_INFO, "spawning a process");
		rc = spawn_daemon();
		if (rc < 0) {
			struct log_entry e;
			if (wlog_begin(&e, LOG_ERROR, "spawn process")) {
				log_str(&e, "binary", wrapper.binary);
				log_str(&e, "error", uv_strerror(rc));
				log_end(&e);
			}
			return 1;
		}
		wrapper.pid = wrapper.child_pid;
	}
	wlog(LOG_INFO, "monitoring process");

	for (size_t i = 0; i < ARRAY_SIZE(forwarded); i++) {
		uv_signal_init(wrapper.loop, &wrapper.sigs[i]);
		uv_signal_start(&wrapper.sigs[i], on_signal, forwarded[i]);
	}
	uv_timer_init(wrapper.loop, &wrapper.poll);
	uv_timer_start(&wrapper.poll, follow, POLL_MS, POLL_MS);

	uv_run(wrapper.loop, UV_RUN_DEFAULT);
	free(wrapper.base);
	return wrapper.exit_code;
}

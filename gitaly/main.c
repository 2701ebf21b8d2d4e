/* gitaly: the storage node. Command line (lib/cli), config, runtime directory, then serve. */
#include "core/gitaly.h"
#include "core/metrics.h"
#include "hooks/pack_cache.h"
#include "base/log.h"
#include "base/util.h"
#include "base/fs.h"
#include "cli/cli.h"
#include "grpc/auth.h"
#include "git/catfile.h"
#include "backchannel/backchannel.h"
#include "upgrade/upgrade.h"
#include "h2/io.h"
#include "loop/cron.h"
#include "housekeeping/housekeeping.h"
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* the context of the TLS listener (tls_listen_addr), if any */
static struct ssl_ctx_st *server_tls_ctx;

static const char *const env_allow[] = {
	"HOME", "PATH", "LD_LIBRARY_PATH", "TZ", "GIT_EXEC_PATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
	"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "all_proxy",
	"ALL_PROXY", NULL,
};

static void build_base_env(struct gitaly *g)
{
	extern char **environ;
	for (char **e = environ; *e; e++) {
		int keep = !strncmp(*e, "GIT_TRACE", 9);
		for (const char *const *a = env_allow; *a && !keep; a++) {
			size_t n = strlen(*a);
			keep = !strncmp(*e, *a, n) && (*e)[n] == '=';
		}
		if (keep)
			strvec_push(&g->base_env, *e);
	}
}

/* Find `name` in PATH, as exec would. */
static char *which(const char *name)
{
	const char *path = getenv("PATH");
	char *copy, *save = NULL, *res = NULL;
	if (strchr(name, '/'))
		return access(name, X_OK) == 0 ? xstrdup(name) : NULL;
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	copy = xstrdup(path);
	for (char *dir = strtok_r(copy, ":", &save); dir && !res; dir = strtok_r(NULL, ":", &save)) {
		struct strbuf sb = STRBUF_INIT;
		strbuf_addf(&sb, "%s/%s", *dir ? dir : ".", name);
		if (access(sb.buf, X_OK) == 0)
			res = strbuf_detach(&sb, NULL);
		strbuf_release(&sb);
	}
	free(copy);
	return res;
}

struct version_probe {
	int done, status;
	struct strbuf out;
};

static void on_version(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct version_probe *v = arg;
	v->done = 1;
	v->status = status;
	strbuf_add(&v->out, out->buf, out->len);
}

/* "git version 2.39.5" -> "2.39.5" */
static char *git_version(uv_loop_t *loop, const char *git)
{
	const char *argv[] = { git, "version", NULL };
	struct git_cmd_spec spec = { .argv = argv };
	struct version_probe v = { 0, 0, STRBUF_INIT };
	char *res = NULL;

	if (git_cmd_capture(loop, &spec, NULL, 0, 4096, on_version, &v, NULL) < 0)
		return NULL;
	while (!v.done)
		uv_run(loop, UV_RUN_ONCE);
	if (v.status == 0 && !strncmp(v.out.buf, "git version ", 12)) {
		char *p = v.out.buf + 12;
		p[strcspn(p, " \n")] = '\0';
		res = xstrdup(p);
	}
	strbuf_release(&v.out);
	return res;
}

/* Remove gitaly-<pid> runtime dirs of processes that are gone. */
static void prune_runtime_dirs(const char *parent)
{
	DIR *d = opendir(parent);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d))) {
		char *end;
		long pid;
		if (strncmp(de->d_name, "gitaly-", 7))
			continue;
		pid = strtol(de->d_name + 7, &end, 10);
		if (*end || pid <= 0 || pid == getpid())
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno == EPERM)
			continue;
		{
			struct strbuf p = STRBUF_INIT;
			strbuf_addf(&p, "%s/%s", parent, de->d_name);
			fs_remove_tree(p.buf);
			strbuf_release(&p);
		}
	}
	closedir(d);
}

static void setup_runtime_dir(struct gitaly *g)
{
	struct strbuf sb = STRBUF_INIT;
	const char *parent = g->cfg.runtime_dir;
	char tmpl[] = "/tmp/gitaly-runtime-XXXXXX";
	static const char *const hooks[] = { "pre-receive", "post-receive", "update", "reference-transaction" };
	static const unsigned hook_bits[] = { HOOK_PRE_RECEIVE, HOOK_POST_RECEIVE, HOOK_UPDATE,
					      HOOK_REFERENCE_TRANSACTION };

	if (!parent) {
		const char *tmp = getenv("TMPDIR");
		if (tmp && *tmp) {
			strbuf_addf(&sb, "%s/gitaly-runtime-XXXXXX", tmp);
			if (!mkdtemp(sb.buf))
				die("cannot create a runtime directory under \"%s\": %s", tmp, strerror(errno));
			parent = strbuf_detach(&sb, NULL);
		} else {
			if (!mkdtemp(tmpl))
				die("cannot create a runtime directory: %s", strerror(errno));
			parent = xstrdup(tmpl);
		}
	} else {
		if (fs_mkdir_p(parent, 0700) < 0)
			die("cannot create runtime_dir \"%s\": %s", parent, strerror(errno));
		prune_runtime_dirs(parent);
	}
	strbuf_reset(&sb);
	strbuf_addf(&sb, "%s/gitaly-%d", parent, (int)getpid());
	fs_remove_tree(sb.buf);
	if (mkdir(sb.buf, 0700) < 0)
		die("cannot create \"%s\": %s", sb.buf, strerror(errno));
	g->runtime_dir = strbuf_detach(&sb, NULL);
	if (parent != g->cfg.runtime_dir)
		free((char *)parent);

	strbuf_addf(&sb, "%s/sock.d", g->runtime_dir);
	if (mkdir(sb.buf, 0700) < 0)
		die("cannot create \"%s\": %s", sb.buf, strerror(errno));
	strbuf_addstr(&sb, "/intern");
	if (sb.len >= 108)
		die("runtime directory path too long for a Unix socket: \"%s\"", sb.buf);
	g->internal_socket = strbuf_detach(&sb, NULL);

	strbuf_addf(&sb, "%s/hooks-XXXXXX", g->runtime_dir);
	if (!mkdtemp(sb.buf))
		die("cannot create hooks directory: %s", strerror(errno));
	strbuf_addstr(&sb, ".d");
	{
		char *tmp = xstrndup(sb.buf, sb.len - 2);
		if (rename(tmp, sb.buf) < 0)
			die("cannot create hooks directory: %s", strerror(errno));
		free(tmp);
	}
	g->hooks_dir = strbuf_detach(&sb, NULL);
	for (size_t i = 0; i < ARRAY_SIZE(hooks); i++) {
		struct strbuf target = STRBUF_INIT, link = STRBUF_INIT;
		strbuf_addf(&target, "%s/gitaly-hooks", g->cfg.bin_dir);
		strbuf_addf(&link, "%s/%s", g->hooks_dir, hooks[i]);
		if (symlink(target.buf, link.buf) < 0)
			die("cannot create hook link \"%s\": %s", link.buf, strerror(errno));
		strbuf_release(&target);
		strbuf_release(&link);
	}
	/* <hooks_dir>/<mask>: only the hooks of a smaller HOOK_* set (core/git.c, core.hooksPath) */
	for (unsigned mask = 1; mask < HOOK_RECEIVE_PACK; mask++) {
		struct strbuf dir = STRBUF_INIT;
		strbuf_addf(&dir, "%s/%u", g->hooks_dir, mask);
		if (mkdir(dir.buf, 0700) < 0)
			die("cannot create hooks directory \"%s\": %s", dir.buf, strerror(errno));
		for (size_t i = 0; i < ARRAY_SIZE(hooks); i++) {
			struct strbuf target = STRBUF_INIT, link = STRBUF_INIT;
			if (!(mask & hook_bits[i]))
				continue;
			strbuf_addf(&target, "%s/gitaly-hooks", g->cfg.bin_dir);
			strbuf_addf(&link, "%s/%s", dir.buf, hooks[i]);
			if (symlink(target.buf, link.buf) < 0)
				die("cannot create hook link \"%s\": %s", link.buf, strerror(errno));
			strbuf_release(&target);
			strbuf_release(&link);
		}
		strbuf_release(&dir);
	}
}

/* <storage>/.gitaly-metadata with a filesystem id, written once (docs/technical/gitaly-node.md, "Storage layout"). */
static void write_storage_metadata(const struct gitaly_storage *s)
{
	struct strbuf path = STRBUF_INIT, json = STRBUF_INIT;
	unsigned char u[16];
	int fd;

	strbuf_addf(&path, "%s/.gitaly-metadata", s->path);
	if (access(path.buf, F_OK) == 0) {
		strbuf_release(&path);
		return;
	}
	fd = open("/dev/urandom", O_RDONLY);
	if (fd < 0 || read(fd, u, sizeof(u)) != (ssize_t)sizeof(u))
		die("cannot read /dev/urandom");
	close(fd);
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	strbuf_addf(&json, "{\"gitaly_filesystem_id\":\"%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		    "%02x%02x%02x%02x%02x%02x\"}", u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8],
		    u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
	fd = open(path.buf, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd >= 0) {
		if (write(fd, json.buf, json.len) != (ssize_t)json.len)
			log_msgf(LOG_WARN, "cannot write \"%s\"", path.buf);
		close(fd);
	}
	strbuf_release(&path);
	strbuf_release(&json);
}

/* --- call hooks: authentication, then the limiter's release and the request log --- */

static enum grpc_code on_call_start(struct grpc_call *call, struct strbuf *msg, void *data)
{
	struct gitaly *g = data;
	return auth_check_call(call, g->cfg.auth_token, g->cfg.auth_transitioning, msg);
}

static void on_call_end(struct grpc_call *call, enum grpc_code code, uint64_t ns, void *data)
{
	struct gitaly *g = data;
	gitaly_limits_call_end(g->limits, call, code, ns);
}

/* --- signals --- */

static void on_shutdown_done(struct grpc_server *s, void *arg)
{
	struct gitaly *g = arg;
	uv_signal_stop(&g->sig_term);
	uv_signal_stop(&g->sig_int);
	uv_close((uv_handle_t *)&g->sig_term, NULL);
	uv_close((uv_handle_t *)&g->sig_int, NULL);
	gitaly_metrics_stop(g);
}

/* Drain: refuse new connections, let calls finish up to the grace period. */
static void stop_serving(struct gitaly *g)
{
	hk_daily_stop(g);    /* a window open now closes: its optimization is cancelled */
	cron_close(g->cron);
	grpc_server_shutdown(g->server, g->cfg.graceful_restart_timeout_ms, on_shutdown_done, g);
	/* idle cat-file processes must not keep the stopping server alive */
	catfile_cache_drain(g->catfile);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
	struct gitaly *g = h->data;
	log_msgf(LOG_INFO, "received %s, stopping (waiting up to %llu ms for calls)", strsignal(signum),
		 (unsigned long long)g->cfg.graceful_restart_timeout_ms);
	stop_serving(g);
}

/* A new gitaly took over the listeners: drain and exit, as on SIGTERM. */
static void on_upgrade_handover(void *arg)
{
	stop_serving(arg);
}

/* --- the command line: `gitaly [serve] CONFIG`, `gitaly version | -version | --version` --- */

static int cmd_serve(int argc, char **argv, void *ctx);
static int cmd_version(int argc, char **argv, void *ctx);

/* `data`: how many arguments follow the command's name (-1: any, the command checks them) */
static const int no_args = 0, one_arg = 1, any_args = -1;
static const struct cli_command commands[] = {
	{ "serve", cmd_serve, "run the storage node with config file CONFIG", &one_arg },
	{ "version", cmd_version, "print the version", &no_args },
	{ "check", gitaly_cmd_check, "verify internal API is accessible", &any_args },
	{ "configuration", gitaly_cmd_configuration, "run configuration-related commands", &any_args },
	{ "hooks", gitaly_cmd_hooks, "manage Git hooks", &any_args },
};

static void usage(void)
{
	struct strbuf sb = STRBUF_INIT;
	cli_usage_line(&sb, "gitaly", "[serve] <config.toml>");
	strbuf_addstr(&sb, "\n       gitaly --version\n");
	fputs(sb.buf, stderr);
	strbuf_release(&sb);
	exit(2);
}

static int cmd_version(int argc, char **argv, void *ctx)
{
	printf("Gitaly, version %s\n", GITALY_VERSION);
	return 0;
}

/* Everything cmd_serve() set up, once the loop has stopped. */
static void gitaly_free(struct gitaly *g)
{
	gitaly_cleanup_free(g);
	hk_free(g);
	free(g->cron);
	bc_server_free(g->bc);
	gitaly_config_release(&g->cfg);
	strvec_clear(&g->base_env);
	free(g->runtime_dir);
	free(g->internal_socket);
	free(g->hooks_dir);
	free(g->git_path);
	free(g->git_version);
	free(g->version);
	free(g);
}

/* argv[0] is the config file. */
static int cmd_serve(int argc, char **argv, void *ctx)
{
	struct gitaly *g = xcalloc(1, sizeof(*g)); /* the process's one node context */
	struct strbuf err = STRBUF_INIT;
	const char *config = argv[0];
	char bound[256];
	int rc;

	signal(SIGPIPE, SIG_IGN);
	if (gitaly_config_load(&g->cfg, config, &err) < 0)
		die("invalid configuration: %s", err.buf);
	log_configure(g->cfg.log_format ? (enum log_format)log_format_parse(g->cfg.log_format) : LOG_FORMAT_TEXT,
		      g->cfg.log_level && *g->cfg.log_level ? (enum log_level)log_level_parse(g->cfg.log_level)
							     : LOG_INFO, NULL);
	gitaly_config_log_unknown(&g->cfg);
	g->version = xstrdup(GITALY_VERSION);
	g->loop = uv_default_loop();
	g->upgrade = upgrade_new(g->loop);
	build_base_env(g);

	g->git_path = which(g->cfg.git_bin_path ? g->cfg.git_bin_path : "git");
	if (!g->git_path)
		die("git executable not found (%s)", g->cfg.git_bin_path ? g->cfg.git_bin_path : "PATH");
	g->git_version = git_version(g->loop, g->git_path);
	if (!g->git_version)
		die("cannot run \"%s version\"", g->git_path);

	{
		struct catfile_cache_opts o = { 0 };
		if (g->cfg.catfile_cache_size > 0)
			o.max_idle = (size_t)g->cfg.catfile_cache_size;
		else
			o.keep_none = 1;
		g->catfile = catfile_cache_new(g->loop, &o);
	}
	setup_runtime_dir(g);
	for (size_t i = 0; i < g->cfg.nr_storages; i++)
		write_storage_metadata(&g->cfg.storages[i]);
	if (g->cfg.pack_objects_cache.enabled) {
		struct strbuf err = STRBUF_INIT;
		g->pack_cache = pack_cache_new(g->cfg.pack_objects_cache.dir, g->cfg.pack_objects_cache.max_age_ms,
					       g->cfg.pack_objects_cache.min_occurrences, &err);
		if (!g->pack_cache)
			die("%s", err.buf);
		strbuf_release(&err);
	}

	g->server = grpc_server_new(g->loop, NULL);
	{
		struct grpc_server_hooks hooks = { on_call_start, on_call_end, g };
		grpc_server_set_hooks(g->server, &hooks);
	}
	/* praefect dials with the backchannel handshake; plain clients still work */
	g->bc = bc_server_new(g->server, 0);
	grpc_server_add_health(g->server);
	g->limits = gitaly_limits_new(g->loop, &g->cfg);
	gitaly_metrics_init(g);
	gitaly_register_services(g, g->server);
	gitaly_cleanup_start(g, upgrade_inherited(g->upgrade));   /* core/cleanup.h: stale locks, quarantines */
	g->cron = xcalloc(1, sizeof(*g->cron));
	cron_init(g->cron, g->loop);   /* the node's periodic tasks: [daily_maintenance] */
	hk_daily_start(g);

	if (g->cfg.socket_path && *g->cfg.socket_path) {
		struct strbuf a = STRBUF_INIT;
		strbuf_addf(&a, "unix:%s", g->cfg.socket_path);
		rc = upgrade_listen(g->upgrade, g->server, a.buf, bound, sizeof(bound));
		if (rc < 0)
			die("cannot listen on \"%s\": %s", g->cfg.socket_path, uv_strerror(rc));
		log_msgf(LOG_INFO, "listening on %s", bound);
		strbuf_release(&a);
	}
	if (g->cfg.listen_addr && *g->cfg.listen_addr) {
		rc = upgrade_listen(g->upgrade, g->server, g->cfg.listen_addr, bound, sizeof(bound));
		if (rc < 0)
			die("cannot listen on \"%s\": %s", g->cfg.listen_addr, uv_strerror(rc));
		log_msgf(LOG_INFO, "listening on %s", bound);
	}
	if (g->cfg.tls_listen_addr && *g->cfg.tls_listen_addr) {
		/* docs/technical/tls.md: "host:port" served with [tls] certificate_path and key_path */
		struct strbuf a = STRBUF_INIT;
		char err[512];
		struct ssl_ctx_st *ctx = tls_server_ctx_new(g->cfg.tls_cert_path, g->cfg.tls_key_path, err,
							    sizeof(err));
		if (!ctx)
			die("cannot serve TLS on \"%s\": %s", g->cfg.tls_listen_addr, err);
		grpc_server_set_tls(g->server, ctx);
		server_tls_ctx = ctx;   /* freed with the server */
		strbuf_addf(&a, "tls://%s", g->cfg.tls_listen_addr);
		rc = upgrade_listen(g->upgrade, g->server, a.buf, bound, sizeof(bound));
		if (rc < 0)
			die("cannot listen on \"%s\": %s", g->cfg.tls_listen_addr, uv_strerror(rc));
		log_msgf(LOG_INFO, "listening with TLS on %s", bound);
		strbuf_release(&a);
	}
	{
		struct strbuf a = STRBUF_INIT;
		strbuf_addf(&a, "unix:%s", g->internal_socket);
		rc = grpc_server_listen(g->server, a.buf, NULL, 0);
		if (rc < 0)
			die("cannot listen on internal socket \"%s\": %s", g->internal_socket, uv_strerror(rc));
		strbuf_release(&a);
	}
	gitaly_metrics_listen(g);
	log_msgf(LOG_INFO, "Starting Gitaly %s (git %s)", g->version, g->git_version);

	uv_signal_init(g->loop, &g->sig_term);
	uv_signal_init(g->loop, &g->sig_int);
	g->sig_term.data = g->sig_int.data = g;
	uv_signal_start(&g->sig_term, on_stop_signal, SIGTERM);
	uv_signal_start(&g->sig_int, on_stop_signal, SIGINT);

	upgrade_ready(g->upgrade, on_upgrade_handover, g);
	uv_run(g->loop, UV_RUN_DEFAULT);
	upgrade_free(g->upgrade);

	grpc_server_free(g->server);
	tls_ctx_free(server_tls_ctx);
	gitaly_limits_free(g->limits);     /* first: its tickets still tell the metrics' monitors */
	gitaly_metrics_free(g);
	catfile_cache_free(g->catfile);
	pack_cache_free(g->pack_cache);
	fs_remove_tree(g->runtime_dir);
	log_msgf(LOG_INFO, "Gitaly stopped");
	gitaly_free(g);
	return 0;
}

int main(int argc, char **argv)
{
	int version = 0, next, rc, nargs;
	const struct cli_flag flags[] = {
		{ .name = "version", .type = CLI_BOOL, .on = &version, .stop = 1, .help = "print the version" },
	};
	const struct cli_command *cmd;
	struct strbuf err = STRBUF_INIT;

	rc = cli_parse("gitaly", flags, ARRAY_SIZE(flags), CLI_STOP_AT_ARG, argc - 1, argv + 1, &next, &err);
	strbuf_release(&err);
	if (rc < 0)
		usage();
	if (next > 0) {
		/* the flag alone and without "=value", as gitaly has always taken it */
		if (!version || argc != 2 || strchr(argv[1], '='))
			usage();
		return cmd_version(0, NULL, NULL);
	}
	nargs = argc - 2;
	cmd = nargs >= 0 ? cli_command_find(commands, ARRAY_SIZE(commands), argv[1]) : NULL;
	if (cmd && (*(const int *)cmd->data == nargs || *(const int *)cmd->data < 0))
		return cmd->run(nargs, argv + 2, NULL);
	/* the default command: `gitaly CONFIG` (also `gitaly serve`, a config file named "serve") */
	if (argc == 2 && argv[1][0] != '-')
		return cmd_serve(1, argv + 1, NULL);
	usage();
	return 2;
}

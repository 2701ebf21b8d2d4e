/* `gitaly check`, `gitaly configuration validate` and `gitaly hooks set` (see cli.h). */
#include "cli.h"
#include "core/gitaly.h"
#include "hooks/hooks.h"
#include "base/fs.h"
#include "base/util.h"
#include "base/log.h"
#include "cli/cli.h"
#include "config/reader.h"
#include "config/validate.h"
#include "grpc/auth.h"
#include "grpc/client.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


/* Go's log.Fatal: "YYYY/MM/DD HH:MM:SS <message>" on stderr. */
static void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_fatal(const char *fmt, ...)
{
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	va_list ap;
	strftime(stamp, sizeof(stamp), "%Y/%m/%d %H:%M:%S", localtime_r(&now, &tm));
	fprintf(stderr, "%s ", stamp);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void help(const char *prog, const char *name, const char *summary, const char *usage, const char *description)
{
	struct strbuf sb = STRBUF_INIT;
	struct cli_command cmd = { name, NULL, summary, NULL };
	cli_usage_subcommand(&sb, prog, &cmd, usage, description, NULL, 0);
	fputs(sb.buf, stdout);
	strbuf_release(&sb);
}

static int is_help(const char *a)
{
	return !strcmp(a, "-h") || !strcmp(a, "--h") || !strcmp(a, "-help") || !strcmp(a, "--help");
}

/* --- check --- */

struct check {
	int done;
	long status;
	char *error;
	struct strbuf body;
};

static void on_checked(void *arg, long status, const char *content_type, const struct strbuf *body,
		       const char *error)
{
	struct check *c = arg;
	c->done = 1;
	c->status = status;
	c->error = error ? xstrdup(error) : NULL;
	strbuf_add(&c->body, body->buf, body->len);
}

static int check_api(struct gitaly *g, struct strbuf *err)
{
	struct check c = { 0 };
	struct gitlab_req *req;
	json_t *j;
	json_error_t jerr;
	int rc = -1;

	strbuf_init(&c.body, 0);
	if (!gitlab_configured(g)) {
		strbuf_addstr(err, "HTTP GET to GitLab endpoint /check failed: no [gitlab] url configured");
		return -1;
	}
	req = gitlab_post(g, "/check", NULL, on_checked, &c, err);
	if (!req) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "HTTP GET to GitLab endpoint /check failed: %s", err->buf);
		strbuf_reset(err);
		strbuf_add(err, m.buf, m.len);
		strbuf_release(&m);
		return -1;
	}
	while (!c.done)
		uv_run(g->loop, UV_RUN_ONCE);
	if (!c.status) {
		strbuf_addf(err, "HTTP GET to GitLab endpoint /check failed: %s", c.error ? c.error : "no response");
	} else if (c.status != 200) {
		strbuf_addf(err, "Check HTTP request failed with status: %ld", c.status);
	} else if (!(j = json_loadb(c.body.buf, c.body.len, 0, &jerr)) || !json_is_object(j)) {
		strbuf_addf(err, "failed to decode response from /check endpoint: %s", j ? "not a JSON object" : jerr.text);
		json_decref(j);
	} else {
		json_t *redis = json_object_get(j, "redis");
		printf("OK\n");
		printf("GitLab version: %s\n", json_string_value(json_object_get(j, "gitlab_version")) ?: "");
		printf("GitLab revision: %s\n", json_string_value(json_object_get(j, "gitlab_revision")) ?: "");
		printf("GitLab Api version: %s\n", json_string_value(json_object_get(j, "api_version")) ?: "");
		printf("Redis reachable for GitLab: %s\n", json_is_true(redis) ? "true" : "false");
		printf("OK\n");
		json_decref(j);
		rc = 0;
	}
	free(c.error);
	strbuf_release(&c.body);
	uv_run(g->loop, UV_RUN_NOWAIT);
	return rc;
}

int gitaly_cmd_check(int argc, char **argv, void *ctx)
{
	struct gitaly *g;
	struct strbuf err = STRBUF_INIT;
	int rc = 0;

	(void)ctx;
	if (argc != 1 || !*argv[0] || is_help(argv[0])) {
		help("gitaly", "check", "verify internal API is accessible", "<gitaly_config_file>",
		     "Check that GitLab's internal API answers the hooks' calls, with the GitLab\n"
		     "settings of the given configuration.\n\nExample: gitaly check gitaly.config.toml");
		if (argc == 1 && is_help(argv[0]))
			return 0;
		fprintf(stderr, "error: invalid argument(s)\n");
		return 2;
	}
	/* as upstream's commands: text, errors only, on stderr */
	log_configure(LOG_FORMAT_TEXT, LOG_ERROR, stderr);
	g = xcalloc(1, sizeof(*g));
	if (gitaly_config_load(&g->cfg, argv[0], &err) < 0) {
		log_fatal("loading configuration \"%s\": %s", argv[0], err.buf);
		rc = 1;
		goto out;
	}
	g->loop = uv_default_loop();
	g->version = xstrdup(GITALY_VERSION);
	printf("Checking GitLab API access: ");
	fflush(stdout);
	if (check_api(g, &err) < 0) {
		printf("FAILED\n");
		fflush(stdout);
		log_fatal("%s", err.buf);
		rc = 1;
	}
out:
	gitaly_config_release(&g->cfg);
	free(g->version);
	free(g);
	strbuf_release(&err);
	return rc;
}

/* --- configuration validate --- */

static int validate(int argc, char **argv)
{
	struct strbuf in = STRBUF_INIT, err = STRBUF_INIT;
	json_t *errors = json_array();
	int rc = 0;

	if (argc > 0) {
		help("gitaly configuration", "validate", "validate Gitaly configuration",
		     "command [command options] [arguments...]",
		     "Check a Gitaly configuration read from stdin and print what is wrong with it\n"
		     "as JSON on stdout.\n\nExample: gitaly configuration validate < gitaly.config.toml");
		if (argc == 1 && is_help(argv[0]))
			goto out;
		fprintf(stderr, "invalid argument(s)\n");
		rc = 1;
		goto out;
	}
	if (cfg_validate_read(0, &in, &err) < 0) {
		fputs(err.buf, stderr);
		rc = 1;
		goto out;
	}
	switch (gitaly_config_validate_text(in.buf, in.len, errors, &err)) {
	case -1:
		cfg_validate_add_parse_error(errors, err.buf);
		break;
	case -2:
		fprintf(stderr, "processing input data: %s", err.buf);
		rc = 1;
		goto out;
	}
	if (json_array_size(errors)) {
		cfg_validate_print(errors);
		rc = CFG_VALIDATION_FAILED;
	}
out:
	json_decref(errors);
	strbuf_release(&in);
	strbuf_release(&err);
	return rc;
}

int gitaly_cmd_configuration(int argc, char **argv, void *ctx)
{
	(void)ctx;
	if (argc > 0 && !strcmp(argv[0], "validate"))
		return validate(argc - 1, argv + 1);
	help("gitaly", "configuration", "run configuration-related commands", "command [command options]",
	     "Commands about Gitaly's configuration; \"validate\" checks one read from stdin.");
	printf("\nCOMMANDS:\n   validate  validate Gitaly configuration\n");
	return argc > 0 ? 3 : 0;
}

/* --- hooks set --- */

#define HOOKS_CHUNK (128 * 1024)   /* data per request message, as upstream's stream writer */

struct hooks_call {
	int done;
	enum grpc_code code;
	struct strbuf msg;
};

static void hooks_on_close(struct grpc_client_call *call, enum grpc_code code, const char *message,
			   const struct grpc_metadata *trailers)
{
	struct hooks_call *h = grpc_client_call_user(call);
	(void)trailers;
	h->done = 1;
	h->code = code;
	strbuf_addstr(&h->msg, message ? message : "");
}

static const struct grpc_client_ops hooks_client_ops = { .on_close = hooks_on_close };

/* The node's own address as a channel target: its socket, else its TCP listener. */
static int hooks_target(const struct gitaly_config *cfg, struct strbuf *out, struct strbuf *err)
{
	if (cfg->socket_path && *cfg->socket_path) {
		strbuf_addf(out, "unix:%s", cfg->socket_path);
	} else if (cfg->listen_addr && *cfg->listen_addr) {
		strbuf_addf(out, "tcp://%s%s", cfg->listen_addr[0] == ':' ? "127.0.0.1" : "", cfg->listen_addr);
	} else if (cfg->tls_listen_addr && *cfg->tls_listen_addr) {
		strbuf_addf(out, "tls://%s%s", cfg->tls_listen_addr[0] == ':' ? "localhost" : "", cfg->tls_listen_addr);
	} else {
		strbuf_addstr(err, "get Gitaly address: no address configured");
		return -1;
	}
	return 0;
}

/* Stream stdin to SetCustomHooks; the call's code, with `err` set on failure. */
static enum grpc_code hooks_send(const char *target, const char *token, const char *storage, const char *relpath,
				 struct strbuf *err)
{
	uv_loop_t *loop = uv_default_loop();
	struct grpc_channel *ch;
	struct grpc_client_call *call;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct hooks_call h = { 0, GRPC_UNKNOWN, STRBUF_INIT };
	Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
	Gitaly__SetCustomHooksRequest req = GITALY__SET_CUSTOM_HOOKS_REQUEST__INIT;
	struct strbuf out = STRBUF_INIT;
	uint8_t *buf = xmalloc(HOOKS_CHUNK);
	ssize_t n;

	if (grpc_channel_new(loop, target, NULL, &ch) < 0) {
		strbuf_addf(err, "create connection: bad address \"%s\"", target);
		free(buf);
		return GRPC_INVALID_ARGUMENT;
	}
	if (token && *token)
		auth_v2_add(&md, token);
	if (grpc_channel_call(ch, "/gitaly.RepositoryService/SetCustomHooks", &md, 0, 0, &hooks_client_ops, &h,
			      &call) < 0) {
		strbuf_addstr(err, "create repository client: cannot start call");
		h.code = GRPC_INTERNAL;
		goto out;
	}
	/* the first message names the repository only */
	repo.storage_name = (char *)storage;
	repo.relative_path = (char *)relpath;
	req.repository = &repo;
	strbuf_grow(&out, protobuf_c_message_get_packed_size(&req.base));
	strbuf_setlen(&out, protobuf_c_message_pack(&req.base, (uint8_t *)out.buf));
	grpc_client_call_send(call, out.buf, out.len);
	req.repository = NULL;
	for (;;) {
		while (!h.done && grpc_client_call_send_full(call))
			uv_run(loop, UV_RUN_ONCE);
		if (h.done)
			break;   /* the node answered early: its status says why */
		n = read(0, buf, HOOKS_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			strbuf_addf(err, "copying hooks archive: read /dev/stdin: %s", strerror(errno));
			grpc_client_call_cancel(call);
			while (!h.done)
				uv_run(loop, UV_RUN_ONCE);
			h.code = GRPC_CANCELLED;
			goto out;
		}
		if (n == 0)
			break;
		req.data.data = buf;
		req.data.len = (size_t)n;
		strbuf_reset(&out);
		strbuf_grow(&out, protobuf_c_message_get_packed_size(&req.base));
		strbuf_setlen(&out, protobuf_c_message_pack(&req.base, (uint8_t *)out.buf));
		grpc_client_call_send(call, out.buf, out.len);
		uv_run(loop, UV_RUN_NOWAIT);   /* let it leave while stdin is read */
	}
	if (!h.done)
		grpc_client_call_close_send(call);
	while (!h.done)
		uv_run(loop, UV_RUN_ONCE);
	if (h.code != GRPC_OK)
		strbuf_addf(err, "closing hooks archive stream: rpc error: code = %s desc = %s", grpc_code_name(h.code),
			    h.msg.buf);
out:
	grpc_metadata_release(&md);
	grpc_channel_close(ch);
	uv_run(loop, UV_RUN_DEFAULT);
	strbuf_release(&h.msg);
	strbuf_release(&out);
	free(buf);
	return h.code;
}

static const char hooks_set_usage[] =
	"--storage <storage_name> --repository <path_on_storage> --config <gitaly_config_file> < <hooks.tar>";
static const char hooks_set_description[] =
	"Read a tar archive holding a custom_hooks/ directory from stdin and make it the custom Git hooks\n"
	"of the repository, through the Gitaly that the configuration describes. An empty archive\n"
	"removes the repository's custom hooks.\n\n"
	"Example: gitaly hooks set --storage default --repository @hashed/ab/cd/abcd.git --config gitaly.toml < hooks.tar";

static int hooks_set(int argc, char **argv)
{
	const char *storage = NULL, *relpath = NULL, *config = NULL;
	const struct cli_flag flags[] = {
		{ "storage", NULL, CLI_STRING, &storage, NULL, "value", "storage containing the repository", 0, 0 },
		{ "repository", NULL, CLI_STRING, &relpath, NULL, "value", "repository to set hooks for", 1, 0 },
		{ "config", "c", CLI_STRING, &config, NULL, "value", "path to Gitaly configuration", 1, 0 },
	};
	const struct cli_command cmd = { "set", NULL, "set custom hooks for a Git repository", NULL };
	struct gitaly_config cfg;
	struct strbuf err = STRBUF_INIT, target = STRBUF_INIT, sb = STRBUF_INIT;
	int next, rc, ret = 1, loaded = 0;

	rc = cli_parse("set", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &err);
	if (rc == CLI_EHELP || (rc < 0 && rc != CLI_EREQUIRED)) {
		if (rc != CLI_EHELP)
			printf("Incorrect Usage: %s\n\n", err.buf);
		cli_usage_subcommand(&sb, "gitaly hooks", &cmd, hooks_set_usage, hooks_set_description, flags,
				     ARRAY_SIZE(flags));
		fputs(sb.buf, stdout);
		if (rc == CLI_EHELP)
			ret = 0;
		else
			log_fatal("%s", err.buf);
		goto out;
	}
	if (rc < 0) {
		log_fatal("%s", err.buf);
		goto out;
	}
	log_configure(LOG_FORMAT_TEXT, LOG_ERROR, stderr);
	loaded = 1;   /* released also after a failed load, which keeps what it read */
	if (gitaly_config_load(&cfg, config, &err) < 0) {
		log_fatal("load config: %s", err.buf);
		goto out;
	}
	if (!storage || !*storage) {
		if (cfg.nr_storages != 1) {
			log_fatal("multiple storages configured: use --storage to target storage explicitly");
			goto out;
		}
		storage = cfg.storages[0].name;
	}
	if (hooks_target(&cfg, &target, &err) < 0) {
		log_fatal("%s", err.buf);
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	if (hooks_send(target.buf, cfg.auth_token, storage, relpath, &err) != GRPC_OK) {
		log_fatal("%s", err.buf);
		goto out;
	}
	ret = 0;
out:
	if (loaded)
		gitaly_config_release(&cfg);
	strbuf_release(&err);
	strbuf_release(&target);
	strbuf_release(&sb);
	return ret;
}

int gitaly_cmd_hooks(int argc, char **argv, void *ctx)
{
	(void)ctx;
	if (argc > 0 && !strcmp(argv[0], "set"))
		return hooks_set(argc - 1, argv + 1);
	help("gitaly", "hooks", "manage Git hooks", "set",
	     "Commands about a repository's custom Git hooks; \"set\" replaces them with a tar archive read from stdin.");
	printf("\nCOMMANDS:\n   set  set custom hooks for a Git repository\n");
	return argc > 0 && !is_help(argv[0]) ? 3 : 0;
}

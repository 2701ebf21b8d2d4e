/* `gitaly check` and `gitaly configuration validate` (see cli.h). */
#include "cli.h"
#include "core/gitaly.h"
#include "hooks/hooks.h"
#include "base/fs.h"
#include "base/util.h"
#include "base/log.h"
#include "cli/cli.h"
#include "config/reader.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONFIG_INPUT (4 * 1024 * 1024)
#define VALIDATION_FAILED 2

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

static void print_errors(json_t *errors)
{
	json_t *out = json_object();
	char *text;
	json_object_set(out, "errors", errors);
	text = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	printf("%s\n", text);
	free(text);
	json_decref(out);
}

static int validate(int argc, char **argv)
{
	struct strbuf in = STRBUF_INIT, err = STRBUF_INIT;
	json_t *errors = json_array();
	int n;
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
	if ((n = fs_read_fd(0, MAX_CONFIG_INPUT, &in)) < 0) {
		if (n == -EFBIG)
			fprintf(stderr, "processing input data: more than %d bytes\n", MAX_CONFIG_INPUT);
		else
			fprintf(stderr, "processing input data: %s\n", strerror((int)-n));
		rc = 1;
		goto out;
	}
	switch (gitaly_config_validate_text(in.buf, in.len, errors, &err)) {
	case -1: {
		struct strbuf msg = STRBUF_INIT;
		json_t *e = json_object();
		cfg_error_line_column(err.buf, &msg);
		json_object_set_new(e, "message", json_string(msg.buf));
		json_array_append_new(errors, e);
		strbuf_release(&msg);
		break;
	}
	case -2:
		fprintf(stderr, "processing input data: %s", err.buf);
		rc = 1;
		goto out;
	}
	if (json_array_size(errors)) {
		print_errors(errors);
		rc = VALIDATION_FAILED;
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

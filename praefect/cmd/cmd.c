/*
 * praefect's command line: the global flags, then a subcommand from the
 * table below (upstream's names, flags, output and exit codes). Each
 * subcommand lives in its own file here and is glue over lib/ and the
 * running praefect's gRPC API.
 */
#include "cmd/cmd.h"
#include "base/log.h"
#include "base/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

static const struct cmd_info serve_info = { 0, NULL, "Run the Praefect server: route calls to the Gitaly nodes." };
static const struct cmd_info list_storages_info = {
	CMD_NO_STORE, NULL,
	"Print the storages of every virtual storage (or of -virtual-storage only)\n"
	"with their Gitaly addresses, read from the configuration alone.",
};
static const struct cmd_info over_grpc_info = { CMD_NO_STORE, NULL, NULL };  /* asks the running praefect */
static const struct cmd_info dial_nodes_info = {
	CMD_NO_STORE, NULL,
	"Dial every configured Gitaly node, ask for its health and check that it serves\n"
	"every storage the configuration gives it, readable and writable.",
};
/* check runs without the store too: its database checks report what is wrong */
static const struct cmd_info check_info = {
	CMD_NO_STORE, NULL,
	"Run the checks Praefect needs to pass before it serves: migrations, Gitaly nodes,\n"
	"the tracking database, repository availability and the clocks.",
};
static const struct cmd_info sql_ping_info = {
	CMD_NO_STORE, NULL, "Open the tracking database and check that it answers.",
};
static const struct cmd_info sql_migrate_info = {
	CMD_NO_STORE, NULL,
	"Apply the migrations the tracking database lacks, oldest first. A migration in\n"
	"the database that this praefect does not know stops it, unless -ignore-unknown.",
};
static const struct cmd_info sql_migrate_down_info = {
	CMD_NO_STORE, "[command options] <N>",
	"Roll back the newest <N> migrations of the tracking database. Without -f it\n"
	"only lists them.",
};
static const struct cmd_info sql_status_info = {
	CMD_NO_STORE, NULL, "List the tracking database's migrations and when each was applied.",
};
static const struct cmd_info rebuild_info = {
	0, NULL,
	"Rebuild the tracking database from the records beside every replica on the Gitaly\n"
	"nodes (gitaly-cluster.json), with Praefect stopped. Prints what it would record;\n"
	"-apply writes into an empty database, -apply -force merges into a non-empty one.",
};
static const struct cmd_info replication_status_info = {
	CMD_NO_STORE, NULL,
	"Ours: per storage, the replication jobs queued, in progress and failed, the\n"
	"recent throughput, an estimate of the time to in sync and the outdated replicas,\n"
	"then the outdated repositories and for how long, from the running praefect.",
};
static const struct cmd_info configuration_info = { CMD_NO_CONFIG, "command [command options]", NULL };

static const struct cli_command commands[] = {
	{ "serve", cmd_serve, "launch the server daemon", &serve_info },
	{ "list-storages", cmd_list_storages, "list physical storages for virtual storages", &list_storages_info },
	{ "dataloss", cmd_dataloss, "identify repositories that are unavailable or have outdated replicas",
	  &over_grpc_info },
	{ "accept-dataloss", cmd_accept_dataloss, "accept potential data loss in a repository", &over_grpc_info },
	{ "dial-nodes", cmd_dial_nodes, "check connections", &dial_nodes_info },
	{ "check", cmd_check, "run startup checks", &check_info },
	{ "sql-ping", cmd_sql_ping, "check reachability of the database", &sql_ping_info },
	{ "sql-migrate", cmd_sql_migrate, "apply outstanding SQL migrations", &sql_migrate_info },
	{ "sql-migrate-down", cmd_sql_migrate_down, "apply revert SQL migrations", &sql_migrate_down_info },
	{ "sql-migrate-status", cmd_sql_migrate_status, "show applied database migrations", &sql_status_info },
	{ "configuration", cmd_configuration, "manage configuration", &configuration_info },
	{ "metadata", cmd_metadata, "show metadata about a repository", &over_grpc_info },
	{ "set-replication-factor", cmd_set_replication_factor, "set a replication factor for a repository", &over_grpc_info },
	{ "verify", cmd_verify, "mark repository replicas as unverified", &over_grpc_info },
	{ "remove-repository", cmd_remove_repository, "remove a repository", &over_grpc_info },
	{ "list-untracked-repositories", cmd_list_untracked_repositories, "list untracked repositories", &over_grpc_info },
	{ "track-repository", cmd_track_repository, "start tracking a repository", &over_grpc_info },
	{ "track-repositories", cmd_track_repositories, "process bulk requests to track repositories", &over_grpc_info },
	{ "rebuild-tracking-store", cmd_rebuild_tracking_store, "rebuild the tracking database from the Gitaly nodes",
	  &rebuild_info },
	{ "replication-status", cmd_replication_status, "show the replication backlog and outdated replicas",
	  &replication_status_info },
};

struct globals {
	const char *config;
	int help, version;
};

static void usage(FILE *out, const struct cli_flag *flags, size_t nr)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "NAME:\n   praefect - a gitaly proxy\n\nUSAGE:\n"
		      "   praefect [global options] command [command options]\n\nCOMMANDS:\n");
	cli_usage_commands(&sb, commands, ARRAY_SIZE(commands), 30);
	strbuf_addstr(&sb, "\nGLOBAL OPTIONS:\n");
	cli_usage_flags(&sb, flags, nr);
	fputs(sb.buf, out);
	strbuf_release(&sb);
}

static void configure_logging(const struct praefect_config *cfg, int serving)
{
	if (!serving) {
		log_configure(LOG_FORMAT_TEXT, LOG_ERROR, stderr);
		return;
	}
	log_configure(cfg->log_format ? (enum log_format)log_format_parse(cfg->log_format) : LOG_FORMAT_TEXT,
		      cfg->log_level && log_level_parse(cfg->log_level) >= 0
			      ? (enum log_level)log_level_parse(cfg->log_level) : LOG_INFO,
		      stdout);
}

static const struct cmd_info default_info = { 0, NULL, NULL };

static const struct cmd_info *info_of(const struct cli_command *cmd)
{
	return cmd->data ? cmd->data : &default_info;
}

void cmd_help(FILE *out, const char *name, const struct cli_flag *flags, size_t nr)
{
	const struct cli_command *cmd = cli_command_find(commands, ARRAY_SIZE(commands), name);
	struct strbuf sb = STRBUF_INIT;
	struct cli_command unknown = { name, NULL, "", NULL };
	if (!cmd)
		cmd = &unknown;
	cli_usage_subcommand(&sb, "praefect", cmd, info_of(cmd)->usage, info_of(cmd)->description, flags, nr);
	fputs(sb.buf, out);
	strbuf_release(&sb);
}

int cmd_flags(const char *name, const struct cli_flag *flags, size_t nr, unsigned opts, int argc, char **argv,
	      int *next, int *exit_code)
{
	struct strbuf err = STRBUF_INIT;
	int rc = cli_parse(name, flags, nr, opts, argc, argv, next, &err);
	if (rc == CLI_EHELP) {
		cmd_help(stdout, name, flags, nr);
		*exit_code = 0;
	} else if (rc < 0) {
		if (rc == CLI_EPOSITIONAL)
			cmd_help(stdout, name, flags, nr);
		fprintf(stderr, "%s\n", err.buf);
		*exit_code = 1;
	}
	strbuf_release(&err);
	return rc < 0 ? -1 : 0;
}

/* Does the command's own flag list (before its first argument) ask for help? */
static int wants_help(int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || !a[1] || !strcmp(a, "--"))
			return 0;
		a += a[1] == '-' ? 2 : 1;
		if (!strcmp(a, "h") || !strcmp(a, "help") || !strncmp(a, "h=", 2) || !strncmp(a, "help=", 5))
			return 1;
	}
	return 0;
}

int praefect_cli(int argc, char **argv)
{
	struct globals g = { 0 };
	const struct cli_flag flags[] = {
		{ .name = "config", .type = CLI_STRING, .str = &g.config, .arg = "FILE",
		  .help = "load configuration from FILE" },
		{ .name = "help", .alias = "h", .type = CLI_BOOL, .on = &g.help, .stop = 1, .help = "show help" },
		{ .name = "version", .alias = "v", .type = CLI_BOOL, .on = &g.version, .stop = 1,
		  .help = "print the version" },
	};
	struct praefect_config cfg;
	struct strbuf err = STRBUF_INIT;
	const struct cli_command *cmd;
	const char *sub = "serve";
	int next, i, rc, serving;

	rc = cli_parse("praefect", flags, ARRAY_SIZE(flags), CLI_STOP_AT_ARG, argc - 1, argv + 1, &next, &err);
	i = 1 + next;
	strbuf_release(&err);
	/* a bare "-" is a flag to praefect, an unknown one */
	if (rc < 0 || (i < argc && !strcmp(argv[i], "-"))) {
		fprintf(stderr, "flag provided but not defined: %s\n", argv[i]);
		return 1;
	}
	if (g.version) {
		printf("Praefect, version %s\n", PRAEFECT_VERSION);
		return 0;
	}
	if (g.help) {
		usage(stdout, flags, ARRAY_SIZE(flags));
		return 0;
	}
	if (i < argc)
		sub = argv[i++];
	cmd = cli_command_find(commands, ARRAY_SIZE(commands), sub);
	if (!cmd) {
		fprintf(stderr, "No help topic for '%s'\n", sub);
		return 3;
	}
	serving = cmd->run == cmd_serve;
	if (info_of(cmd)->flags & CMD_NO_CONFIG) {
		log_configure(LOG_FORMAT_TEXT, LOG_ERROR, stderr);
		return cmd->run(argc - i, argv + i, NULL);
	}
	if (wants_help(argc - i, argv + i)) {
		/* urfave shows a command's help before its action reads the config */
		memset(&cfg, 0, sizeof(cfg));
		log_configure(LOG_FORMAT_TEXT, LOG_ERROR, stderr);
		return cmd->run(argc - i, argv + i, &cfg);
	}
	if (!g.config) {
		if (serving) {
			usage(stderr, flags, ARRAY_SIZE(flags));
			fprintf(stderr, "Required flag \"config\" not set\n");
			return 2;
		}
		fprintf(stderr, "error reading config file: open : no such file or directory\n");
		return 1;
	}
	if (praefect_config_load(&cfg, g.config, &err) < 0) {
		fprintf(stderr, "%s\n", err.buf);
		praefect_config_release(&cfg);
		strbuf_release(&err);
		return 1;
	}
	strbuf_release(&err);
	configure_logging(&cfg, serving);
	rc = cmd->run(argc - i, argv + i, &cfg);
	if (!serving)
		praefect_config_release(&cfg); /* the daemon owns it from praefect_serve() on */
	return rc;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char **cmd_vs_names(const struct praefect_config *cfg, const char *only, size_t *nr)
{
	const char **names = xcalloc(cfg->nr_vs + 1, sizeof(*names));
	size_t n = 0;
	if (only && *only)
		names[n++] = only;
	else
		for (size_t i = 0; i < cfg->nr_vs; i++)
			names[n++] = cfg->vs[i].name;
	qsort(names, n, sizeof(*names), cmp_name);
	*nr = n;
	return names;
}

void cmd_indent(int level, const char *fmt, ...)
{
	va_list ap;
	printf("%*s", level * 2, "");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

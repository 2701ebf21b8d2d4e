/*
 * praefect's command line: the global flags, then a subcommand from the
 * table below (upstream's names, flags, output and exit codes). Each
 * subcommand lives in its own file here and is glue over lib/ and the
 * running praefect's gRPC API.
 */
#include "cmd/cmd.h"
#include "base/log.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct cli_command commands[] = {
	{ "serve", cmd_serve, "launch the server daemon", NULL },
	{ "list-storages", cmd_list_storages, "list physical storages for virtual storages", NULL },
	{ "dataloss", cmd_dataloss, "identify repositories that are unavailable or have outdated replicas", NULL },
	{ "accept-dataloss", cmd_accept_dataloss, "accept potential data loss in a repository", NULL },
	{ "metadata", cmd_metadata, "show metadata about a repository", NULL },
	{ "set-replication-factor", cmd_set_replication_factor, "set a replication factor for a repository", NULL },
	{ "verify", cmd_verify, "mark repository replicas as unverified", NULL },
	{ "remove-repository", cmd_remove_repository, "remove a repository", NULL },
	{ "list-untracked-repositories", cmd_list_untracked_repositories, "list untracked repositories", NULL },
	{ "track-repository", cmd_track_repository, "start tracking a repository", NULL },
	{ "track-repositories", cmd_track_repositories, "process bulk requests to track repositories", NULL },
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

/* praefect's command line: global flags and the subcommand table. */
#include "cmd.h"
#include "base/log.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct subcommand {
	const char *name;
	int (*fn)(struct praefect_config *cfg, int argc, char **argv);
	const char *usage;
};

static int cmd_serve(struct praefect_config *cfg, int argc, char **argv)
{
	if (argc > 0) {
		fprintf(stderr, "serve doesn't accept positional arguments\n");
		return 1;
	}
	return praefect_serve(cfg);
}

static const struct subcommand subcommands[] = {
	{ "serve", cmd_serve, "launch the server daemon" },
	{ "list-storages", cmd_list_storages, "list physical storages for virtual storages" },
	{ "dataloss", cmd_dataloss, "identify repositories that are unavailable or have outdated replicas" },
	{ "accept-dataloss", cmd_accept_dataloss, "accept potential data loss in a repository" },
};

int cmd_parse_flags(const char *cmd, int argc, char **argv, struct cmd_flag *flags, size_t n, struct strbuf *err)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *eq;
		size_t len;
		struct cmd_flag *f = NULL;
		if (a[0] != '-' || !a[1]) {
			strbuf_addf(err, "%s doesn't accept positional arguments", cmd);
			return -1;
		}
		a += a[1] == '-' ? 2 : 1;
		eq = strchr(a, '=');
		len = eq ? (size_t)(eq - a) : strlen(a);
		for (size_t k = 0; k < n; k++)
			if (strlen(flags[k].name) == len && !strncmp(flags[k].name, a, len))
				f = &flags[k];
		if (!f) {
			strbuf_addf(err, "flag provided but not defined: -%.*s", (int)len, a);
			return -1;
		}
		if (f->is_bool) {
			*f->set = !eq || !strcmp(eq + 1, "true") || !strcmp(eq + 1, "1");
			continue;
		}
		if (eq) {
			*f->value = eq + 1;
		} else if (i + 1 < argc) {
			*f->value = argv[++i];
		} else {
			strbuf_addf(err, "flag needs an argument: -%s", f->name);
			return -1;
		}
		if (f->set)
			*f->set = 1;
	}
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out, "NAME:\n   praefect - a gitaly proxy\n\nUSAGE:\n   praefect [global options] command [command options]\n\nCOMMANDS:\n");
	for (size_t i = 0; i < ARRAY_SIZE(subcommands); i++)
		fprintf(out, "   %-30s %s\n", subcommands[i].name, subcommands[i].usage);
	fprintf(out, "\nGLOBAL OPTIONS:\n   --config FILE, -config FILE  load configuration from FILE\n"
		"   --help, -h                   show help\n   --version, -v                print the version\n");
}

int praefect_cli(int argc, char **argv)
{
	const char *config = NULL;
	int i = 1;
	struct praefect_config cfg;
	struct strbuf err = STRBUF_INIT;
	const char *sub = "serve";

	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i] + (argv[i][1] == '-' ? 2 : 1);
		if (!strcmp(a, "version") || !strcmp(a, "v")) {
			printf("Praefect, version %s\n", PRAEFECT_VERSION);
			return 0;
		}
		if (!strcmp(a, "help") || !strcmp(a, "h")) {
			usage(stdout);
			return 0;
		}
		if (!strncmp(a, "config=", 7)) {
			config = a + 7;
		} else if (!strcmp(a, "config") && i + 1 < argc) {
			config = argv[++i];
		} else {
			fprintf(stderr, "flag provided but not defined: %s\n", argv[i]);
			return 1;
		}
	}
	if (i < argc)
		sub = argv[i++];
	for (size_t k = 0; k < ARRAY_SIZE(subcommands); k++) {
		if (strcmp(subcommands[k].name, sub))
			continue;
		if (!config) {
			if (!strcmp(sub, "serve")) {
				usage(stderr);
				fprintf(stderr, "Required flag \"config\" not set\n");
				return 2;
			}
			fprintf(stderr, "error reading config file: open : no such file or directory\n");
			return 1;
		}
		if (praefect_config_load(&cfg, config, &err) < 0) {
			fprintf(stderr, "%s\n", err.buf);
			praefect_config_release(&cfg);
			strbuf_release(&err);
			return 1;
		}
		if (strcmp(sub, "serve")) {
			log_configure(LOG_FORMAT_TEXT, LOG_ERROR, stderr);
		} else {
			log_configure(cfg.log_format ? (enum log_format)log_format_parse(cfg.log_format) : LOG_FORMAT_TEXT,
				      cfg.log_level && log_level_parse(cfg.log_level) >= 0
					      ? (enum log_level)log_level_parse(cfg.log_level) : LOG_INFO,
				      stdout);
		}
		{
			int rc = subcommands[k].fn(&cfg, argc - i, argv + i);
			if (strcmp(sub, "serve"))
				praefect_config_release(&cfg); /* serve keeps it for the process's lifetime */
			strbuf_release(&err);
			return rc;
		}
	}
	fprintf(stderr, "No help topic for '%s'\n", sub);
	return 3;
}

/* --- list-storages: reads the config only --- */

int cmd_list_storages(struct praefect_config *cfg, int argc, char **argv)
{
	const char *only = NULL;
	struct cmd_flag flags[] = { { "virtual-storage", 0, &only, NULL } };
	struct strbuf err = STRBUF_INIT;
	size_t w[3] = { strlen("VIRTUAL_STORAGE"), strlen("NODE"), strlen("ADDRESS") };
	int found = 0;

	if (cmd_parse_flags("list-storages", argc, argv, flags, 1, &err) < 0) {
		fprintf(stderr, "%s\n", err.buf);
		strbuf_release(&err);
		return 1;
	}
	for (size_t i = 0; i < cfg->nr_vs; i++) {
		if (only && *only && strcmp(only, cfg->vs[i].name))
			continue;
		found = 1;
		for (size_t j = 0; j < cfg->vs[i].nr_nodes; j++) {
			w[0] = MAX(w[0], strlen(cfg->vs[i].name));
			w[1] = MAX(w[1], strlen(cfg->vs[i].nodes[j].storage));
			w[2] = MAX(w[2], strlen(cfg->vs[i].nodes[j].address));
		}
	}
	if (!found) {
		printf("No virtual storages named %s.\n", only);
		return 0;
	}
	printf("%-*s\t%-*s\t%-*s \n", (int)w[0], "VIRTUAL_STORAGE", (int)w[1], "NODE", (int)w[2], "ADDRESS");
	for (size_t i = 0; i < cfg->nr_vs; i++) {
		if (only && *only && strcmp(only, cfg->vs[i].name))
			continue;
		for (size_t j = 0; j < cfg->vs[i].nr_nodes; j++)
			printf("%-*s\t%-*s\t%-*s\t\n", (int)w[0], cfg->vs[i].name, (int)w[1],
			       cfg->vs[i].nodes[j].storage, (int)w[2], cfg->vs[i].nodes[j].address);
	}
	return 0;
}

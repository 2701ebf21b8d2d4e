/*
 * `praefect check [-q]`: upstream's start-up checks, in its order and
 * layout, each given 5 s (docs/technical/praefect-cli.md, "check"). The
 * database checks run against our embedded SQLite store.
 */
#include "cmd/cmd.h"
#include "base/util.h"

#include <stdio.h>
#include <string.h>

enum severity { FATAL, WARNING };
static const char *const severity_name[] = { "fatal", "warning" };

struct check {
	const char *name, *description;
	enum severity severity;
	int (*run)(const struct praefect_config *cfg, int quiet, struct strbuf *err);
};

static int check_migrations(const struct praefect_config *cfg, int quiet, struct strbuf *err)
{
	size_t pending;
	if (cmd_db_pending_migrations(cfg, &pending, err) < 0)
		return -1;
	if (pending) {
		strbuf_addf(err, "%zu migrations have not been run", pending);
		return -1;
	}
	return 0;
}

static int check_nodes(const struct praefect_config *cfg, int quiet, struct strbuf *err)
{
	struct strbuf failed = STRBUF_INIT;
	int rc = 0;
	if (cmd_ping_nodes(cfg, 5000, quiet, &failed) > 0) {
		strbuf_addf(err, "the following nodes are not healthy: %s", failed.buf);
		rc = -1;
	}
	strbuf_release(&failed);
	return rc;
}

static const struct check checks[] = {
	{ "praefect migrations", "confirms whether or not all praefect migrations have run", FATAL,
	  check_migrations },
	{ "gitaly node connectivity & disk access",
	  "confirms if praefect can reach all of its gitaly nodes, and whether or not the gitaly nodes can "
	  "read/write from and to its storages.", FATAL, check_nodes },
	{ "database read/write", "checks if praefect can write/read to and from the database", FATAL,
	  cmd_db_read_write },
	{ "unavailable repositories",
	  "lists repositories that are missing a valid primary, hence rendering them unavailable", WARNING,
	  cmd_db_unavailable },
};

int cmd_check(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	int quiet = 0, next, rc, failed = 0, fatal = 0;
	const struct cli_flag flags[] = {
		{ .name = "q", .type = CLI_BOOL, .on = &quiet, .help = "print one line per check" },
	};

	if (cmd_flags("check", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &rc) < 0)
		return rc;
	for (size_t i = 0; i < ARRAY_SIZE(checks); i++) {
		const struct check *c = &checks[i];
		struct strbuf err = STRBUF_INIT;
		if (quiet)
			printf("Checking %s...", c->name);
		else
			printf("Checking %s - %s [%s]\n", c->name, c->description, severity_name[c->severity]);
		fflush(stdout);
		if (c->run(cfg, quiet, &err) < 0) {
			failed++;
			fatal |= c->severity == FATAL;
			printf("Failed (%s) error: %s\n", severity_name[c->severity], err.buf);
		} else {
			printf("Passed\n");
		}
		strbuf_release(&err);
	}
	printf("\n");
	if (fatal) {
		printf("%d check(s) failed, at least one was fatal.\n", failed);
		fflush(stdout);
		cmd_log_fatal("checks failed");
		return 1;
	}
	if (failed)
		printf("%d check(s) failed, but none are fatal.\n", failed);
	else
		printf("All checks passed.\n");
	return 0;
}

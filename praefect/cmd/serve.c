/* `praefect serve` (also what runs without a subcommand): the daemon. */
#include "cmd/cmd.h"
#include "base/log.h"

#include <stdio.h>

int cmd_serve(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	int next, rc;

	if (cmd_flags("serve", NULL, 0, CLI_STOP_AT_ARG, argc, argv, &next, &rc) < 0)
		return rc;
	/* any argument, flag-like or not, is refused with one message (upstream's) */
	if (argc > 0) {
		fprintf(stderr, "serve doesn't accept positional arguments\n");
		return 1;
	}
	if (!cfg->failover_enabled) {
		struct log_entry e;
		/* as upstream: the per-repository elector runs anyway */
		if (log_begin(&e, LOG_WARN, "ignoring configured election strategy as failover is disabled")) {
			log_str(&e, "election_strategy", cfg->election_strategy);
			log_end(&e);
		}
	}
	return praefect_serve(ctx);
}

/* `praefect serve` (also what runs without a subcommand): the daemon. */
#include "cmd/cmd.h"

#include <stdio.h>

int cmd_serve(int argc, char **argv, void *ctx)
{
	/* any argument, flag-like or not, is refused with one message (upstream's) */
	if (argc > 0) {
		fprintf(stderr, "serve doesn't accept positional arguments\n");
		return 1;
	}
	return praefect_serve(ctx);
}

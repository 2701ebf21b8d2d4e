/* `praefect dial-nodes [-timeout D]`: check every configured Gitaly node (see ping.c). */
#include "cmd/cmd.h"
#include "config/reader.h"
#include "base/util.h"

#include <stdio.h>

int cmd_dial_nodes(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	const char *timeout = NULL;
	const struct cli_flag flags[] = {
		{ .name = "timeout", .type = CLI_STRING, .str = &timeout,
		  .help = "how long the whole run may take (0: 10s)" },
	};
	struct strbuf failed = STRBUF_INIT;
	uint64_t ns = 0;
	int next, rc;

	if (cmd_flags("dial-nodes", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &rc) < 0)
		return rc;
	rc = 0;
	if (timeout && parse_go_duration(timeout, &ns) < 0) {
		fprintf(stderr, "invalid value \"%s\" for flag -timeout: parse error\n", timeout);
		return 1;
	}
	if (!ns)
		ns = 10ull * 1000 * 1000 * 1000;
	if (cmd_ping_nodes(cfg, ns / 1000000, 0, &failed) > 0) {
		cmd_fatal("the following nodes are not healthy: %s", failed.buf);
		rc = 1;
	}
	strbuf_release(&failed);
	return rc;
}

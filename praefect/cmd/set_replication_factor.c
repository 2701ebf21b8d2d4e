/*
 * `praefect set-replication-factor`: assign a repository to N storages
 * (SetReplicationFactor on the running praefect); the reconciler then adds
 * or deletes the replicas to match.
 */
#include "cmd/cmd.h"
#include "base/util.h"
#include "praefect.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_set_replication_factor(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	const char *vs = NULL, *path = NULL, *factor = NULL;
	/* upstream's help and the recovery documentation spell -relative-path as -repository: both work */
	const struct cli_flag flags[] = {
		{ .name = "virtual-storage", .type = CLI_STRING, .str = &vs, .required = 1 },
		{ .name = "relative-path", .alias = "repository", .type = CLI_STRING, .str = &path, .required = 1 },
		{ .name = "replication-factor", .type = CLI_STRING, .str = &factor, .required = 1 },
	};
	Gitaly__SetReplicationFactorRequest req = GITALY__SET_REPLICATION_FACTOR_REQUEST__INIT;
	Gitaly__SetReplicationFactorResponse *r;
	struct strbuf err = STRBUF_INIT, resp = STRBUF_INIT;
	int64_t n;
	int rc = 1, next;

	if (cli_parse("set-replication-factor", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &err) < 0 ||
	    cmd_parse_int64("replication-factor", factor, 0, &n, &err) < 0) {
		fprintf(stderr, "%s\n", err.buf);
		goto out;
	}
	req.virtual_storage = (char *)vs;
	req.relative_path = (char *)path;
	req.replication_factor = (int32_t)n; /* upstream converts its uint the same way */
	if (cmd_call_unary(cfg, "/gitaly.PraefectInfoService/SetReplicationFactor", &req.base, &resp, &err) !=
	    GRPC_OK) {
		rc = cmd_fatal("%s", err.buf);
		goto out;
	}
	r = gitaly__set_replication_factor_response__unpack(NULL, resp.len, (const uint8_t *)resp.buf);
	if (!r) {
		rc = cmd_fatal("cannot decode the response");
		goto out;
	}
	printf("current assignments: ");
	for (size_t i = 0; i < r->n_storages; i++)
		printf("%s%s", i ? ", " : "", r->storages[i]);
	printf("\n");
	gitaly__set_replication_factor_response__free_unpacked(r, NULL);
	rc = 0;
out:
	strbuf_release(&err);
	strbuf_release(&resp);
	return rc;
}

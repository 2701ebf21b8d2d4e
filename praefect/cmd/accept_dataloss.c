/*
 * `praefect accept-dataloss`: make one storage's replica of a repository the
 * authoritative one (SetAuthoritativeStorage on the running praefect).
 */
#include "cmd/cmd.h"
#include "base/util.h"
#include "praefect.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_accept_dataloss(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	const char *vs = NULL, *path = NULL, *storage = NULL;
	const struct cli_flag flags[] = {
		{ .name = "virtual-storage", .type = CLI_STRING, .str = &vs, .required = 1,
		  .help = "the repository's virtual storage" },
		{ .name = "relative-path", .type = CLI_STRING, .str = &path, .required = 1,
		  .help = "the repository's relative path in the virtual storage" },
		{ .name = "authoritative-storage", .type = CLI_STRING, .str = &storage, .required = 1,
		  .help = "the storage whose replica becomes the authoritative one" },
	};
	struct strbuf err = STRBUF_INIT;
	Gitaly__SetAuthoritativeStorageRequest req = GITALY__SET_AUTHORITATIVE_STORAGE_REQUEST__INIT;
	uint8_t *buf;
	size_t len;
	enum grpc_code code;
	int rc = 1, next;

	/* parse errors first, then the required flags (urfave/cli's order) */
	if (cmd_flags("accept-dataloss", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &rc) < 0)
		goto out;
	req.virtual_storage = (char *)vs;
	req.relative_path = (char *)path;
	req.authoritative_storage = (char *)storage;
	len = gitaly__set_authoritative_storage_request__get_packed_size(&req);
	buf = xmalloc(len ? len : 1);
	gitaly__set_authoritative_storage_request__pack(&req, buf);
	code = cmd_call_praefect(cfg, "/gitaly.PraefectInfoService/SetAuthoritativeStorage", buf, len, NULL, NULL, &err);
	free(buf);
	if (code != GRPC_OK)
		fprintf(stderr, "set authoritative storage: rpc error: code = %s desc = %s\n", grpc_code_name(code),
			err.buf);
	else
		rc = 0;
out:
	strbuf_release(&err);
	return rc;
}

/*
 * `praefect verify`: mark replicas unverified so that they are verified
 * again (MarkUnverified on the running praefect), by repository, by virtual
 * storage, or by one storage of a virtual storage.
 */
#include "cmd/cmd.h"
#include "base/util.h"
#include "praefect.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_verify(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	const char *id_arg = NULL, *vs = NULL, *storage = NULL;
	const struct cli_flag flags[] = {
		{ .name = "repository-id", .type = CLI_STRING, .str = &id_arg },
		{ .name = "virtual-storage", .type = CLI_STRING, .str = &vs },
		{ .name = "storage", .type = CLI_STRING, .str = &storage },
	};
	Gitaly__MarkUnverifiedRequest req = GITALY__MARK_UNVERIFIED_REQUEST__INIT;
	Gitaly__MarkUnverifiedRequest__Storage st = GITALY__MARK_UNVERIFIED_REQUEST__STORAGE__INIT;
	Gitaly__MarkUnverifiedResponse *r;
	struct strbuf err = STRBUF_INIT, resp = STRBUF_INIT;
	int64_t id = 0;
	int rc = 1, next;

	if (cli_parse("verify", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &err) < 0 ||
	    (id_arg && cmd_parse_int64("repository-id", id_arg, INT64_MIN, &id, &err) < 0)) {
		fprintf(stderr, "%s\n", err.buf);
		goto out;
	}
	vs = vs ? vs : "";
	storage = storage ? storage : "";
	if (id != 0) {
		if (*vs || *storage) {
			rc = cmd_fatal("virtual storage and storage can't be provided with a repository ID");
			goto out;
		}
		req.selector_case = GITALY__MARK_UNVERIFIED_REQUEST__SELECTOR_REPOSITORY_ID;
		req.repository_id = id;
	} else if (*storage) {
		if (!*vs) {
			rc = cmd_fatal("virtual storage must be passed with storage");
			goto out;
		}
		st.virtual_storage = (char *)vs;
		st.storage = (char *)storage;
		req.selector_case = GITALY__MARK_UNVERIFIED_REQUEST__SELECTOR_STORAGE;
		req.storage = &st;
	} else if (*vs) {
		req.selector_case = GITALY__MARK_UNVERIFIED_REQUEST__SELECTOR_VIRTUAL_STORAGE;
		req.virtual_storage = (char *)vs;
	} else {
		rc = cmd_fatal("(repository id), (virtual storage) or (virtual storage, storage) required");
		goto out;
	}
	if (cmd_call_unary(cfg, "/gitaly.PraefectInfoService/MarkUnverified", &req.base, &resp, &err) != GRPC_OK) {
		rc = cmd_fatal("verify replicas: %s", err.buf);
		goto out;
	}
	r = gitaly__mark_unverified_response__unpack(NULL, resp.len, (const uint8_t *)resp.buf);
	if (!r) {
		rc = cmd_fatal("verify replicas: cannot decode the response");
		goto out;
	}
	printf("%" PRId64 " replicas marked unverified\n", r->replicas_marked);
	gitaly__mark_unverified_response__free_unpacked(r, NULL);
	rc = 0;
out:
	strbuf_release(&err);
	strbuf_release(&resp);
	return rc;
}

/*
 * `praefect dataloss`: repositories without a valid primary (or, with
 * -partially-unavailable, with any outdated assigned replica), per virtual
 * storage, as the running praefect reports them.
 */
#include "cmd/cmd.h"
#include "base/util.h"
#include "praefect.pb-c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dataloss_print {
	int found;
};

static void print_dataloss(void *arg, const uint8_t *msg, size_t len)
{
	struct dataloss_print *dp = arg;
	Gitaly__DatalossResponse *r = gitaly__dataloss_response__unpack(NULL, len, msg);
	if (!r)
		return;
	if (r->n_repositories)
		cmd_indent(1, "Repositories:");
	for (size_t i = 0; i < r->n_repositories; i++) {
		Gitaly__DatalossResponse__Repository *repo = r->repositories[i];
		dp->found = 1;
		cmd_indent(2, "%s%s:", repo->relative_path, repo->unavailable ? " (unavailable)" : "");
		cmd_indent(3, "Primary: %s", repo->primary && *repo->primary ? repo->primary : "No Primary");
		cmd_indent(3, "In-Sync Storages:");
		for (size_t k = 0; k < repo->n_storages; k++) {
			Gitaly__DatalossResponse__Repository__Storage *s = repo->storages[k];
			if (s->behind_by == 0)
				cmd_indent(4, "%s%s%s", s->name, s->assigned ? ", assigned host" : "",
				       s->healthy ? "" : ", unhealthy");
		}
		cmd_indent(3, "Outdated Storages:");
		for (size_t k = 0; k < repo->n_storages; k++) {
			Gitaly__DatalossResponse__Repository__Storage *s = repo->storages[k];
			if (s->behind_by != 0)
				cmd_indent(4, "%s is behind by %lld change%s or less%s%s", s->name, (long long)s->behind_by,
				       s->behind_by > 1 ? "s" : "", s->assigned ? ", assigned host" : "",
				       s->healthy ? "" : ", unhealthy");
		}
	}
	gitaly__dataloss_response__free_unpacked(r, NULL);
}

int cmd_dataloss(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	const char *only = NULL;
	int partial = 0;
	const struct cli_flag flags[] = {
		{ .name = "virtual-storage", .type = CLI_STRING, .str = &only,
		  .help = "check only this virtual storage" },
		{ .name = "partially-unavailable", .type = CLI_BOOL, .on = &partial,
		  .help = "also list repositories that are available but have an outdated assigned replica" },
	};
	struct strbuf err = STRBUF_INIT;
	const char **names;
	size_t n = 0;
	int next, rc;

	if (cmd_flags("dataloss", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &rc) < 0)
		return rc;
	names = cmd_vs_names(cfg, only, &n);
	for (size_t i = 0; i < n; i++) {
		Gitaly__DatalossRequest req = GITALY__DATALOSS_REQUEST__INIT;
		struct dataloss_print dp = { 0 };
		uint8_t buf[512];
		size_t len;
		enum grpc_code code;
		req.virtual_storage = (char *)names[i];
		req.include_partially_replicated = partial;
		if (gitaly__dataloss_request__get_packed_size(&req) > sizeof(buf)) {
			fprintf(stderr, "virtual storage name too long\n");
			return 1;
		}
		len = gitaly__dataloss_request__pack(&req, buf);
		cmd_indent(0, "Virtual storage: %s", names[i]);
		fflush(stdout);
		strbuf_reset(&err);
		code = cmd_call_praefect(cfg, "/gitaly.PraefectInfoService/Dataloss", buf, len, print_dataloss, &dp, &err);
		if (code != GRPC_OK) {
			fflush(stdout);
			fprintf(stderr, "getting response: rpc error: code = %s desc = %s\n", grpc_code_name(code), err.buf);
			free(names);
			strbuf_release(&err);
			return 1;
		}
		if (!dp.found)
			cmd_indent(1, "%s", partial ? "All repositories are fully available on all assigned storages!"
						: "All repositories are available!");
	}
	free(names);
	strbuf_release(&err);
	return 0;
}

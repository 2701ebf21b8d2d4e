/*
 * `praefect metadata`: one repository's record as the running praefect holds
 * it (GetRepositoryMetadata), by id or by virtual storage and relative path.
 */
#include "cmd/cmd.h"
#include "base/util.h"
#include "praefect.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Go's %q for the strings we print (paths and names): escapes for quotes, backslashes, control bytes. */
static void print_quoted(const char *label, const char *s)
{
	printf("%s\"", label);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	fputs("\"\n", stdout);
}

static void print_metadata(const Gitaly__GetRepositoryMetadataResponse *m)
{
	printf("Repository ID: %" PRId64 "\n", m->repository_id);
	print_quoted("Virtual Storage: ", m->virtual_storage);
	print_quoted("Relative Path: ", m->relative_path);
	print_quoted("Replica Path: ", m->replica_path);
	print_quoted("Primary: ", m->primary);
	printf("Generation: %" PRId64 "\n", m->generation);
	printf("Replicas:\n");
	for (size_t i = 0; i < m->n_replicas; i++) {
		const Gitaly__GetRepositoryMetadataResponse__Replica *r = m->replicas[i];
		print_quoted("- Storage: ", r->storage);
		printf("  Assigned: %s\n", r->assigned ? "true" : "false");
		if (r->generation == -1)
			printf("  Generation: replica not yet created\n");
		else if (r->generation < m->generation)
			printf("  Generation: %" PRId64 ", behind by %" PRId64 " changes\n", r->generation,
			       m->generation - r->generation);
		else
			printf("  Generation: %" PRId64 ", fully up to date\n", r->generation);
		printf("  Healthy: %s\n", r->healthy ? "true" : "false");
		printf("  Valid Primary: %s\n", r->valid_primary ? "true" : "false");
		printf("  Verified At: ");
		if (r->verified_at) {
			struct strbuf sb = STRBUF_INIT;
			cli_go_time(&sb, r->verified_at->seconds, (long)r->verified_at->nanos, 1);
			printf("%s\n", sb.buf);
			strbuf_release(&sb);
		}
		else
			printf("unverified\n");
	}
}

int cmd_metadata(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	const char *id_arg = NULL, *vs = NULL, *path = NULL;
	const struct cli_flag flags[] = {
		{ .name = "repository-id", .type = CLI_STRING, .str = &id_arg },
		{ .name = "virtual-storage", .type = CLI_STRING, .str = &vs },
		{ .name = "relative-path", .type = CLI_STRING, .str = &path },
	};
	Gitaly__GetRepositoryMetadataRequest req = GITALY__GET_REPOSITORY_METADATA_REQUEST__INIT;
	Gitaly__GetRepositoryMetadataRequest__Path qp = GITALY__GET_REPOSITORY_METADATA_REQUEST__PATH__INIT;
	Gitaly__GetRepositoryMetadataResponse *m;
	struct strbuf err = STRBUF_INIT, resp = STRBUF_INIT;
	int64_t id = 0;
	int rc = 1, next;

	if (cli_parse("metadata", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &err) < 0 ||
	    (id_arg && cmd_parse_int64("repository-id", id_arg, INT64_MIN, &id, &err) < 0)) {
		fprintf(stderr, "%s\n", err.buf);
		goto out;
	}
	vs = vs ? vs : "";
	path = path ? path : "";
	if (id != 0) {
		if (*vs || *path) {
			rc = cmd_fatal("virtual storage and relative path can't be provided with a repository ID");
			goto out;
		}
		req.query_case = GITALY__GET_REPOSITORY_METADATA_REQUEST__QUERY_REPOSITORY_ID;
		req.repository_id = id;
	} else if (*vs || *path) {
		if (!*vs) {
			rc = cmd_fatal("virtual storage is required with relative path");
			goto out;
		}
		if (!*path) {
			rc = cmd_fatal("relative path is required with virtual storage");
			goto out;
		}
		qp.virtual_storage = (char *)vs;
		qp.relative_path = (char *)path;
		req.query_case = GITALY__GET_REPOSITORY_METADATA_REQUEST__QUERY_PATH;
		req.path = &qp;
	} else {
		rc = cmd_fatal("repository ID or virtual storage and relative path required");
		goto out;
	}
	if (cmd_call_unary(cfg, "/gitaly.PraefectInfoService/GetRepositoryMetadata", &req.base, &resp, &err) !=
	    GRPC_OK) {
		rc = cmd_fatal("get metadata: %s", err.buf);
		goto out;
	}
	m = gitaly__get_repository_metadata_response__unpack(NULL, resp.len, (const uint8_t *)resp.buf);
	if (!m) {
		rc = cmd_fatal("get metadata: cannot decode the response");
		goto out;
	}
	print_metadata(m);
	gitaly__get_repository_metadata_response__free_unpacked(m, NULL);
	rc = 0;
out:
	strbuf_release(&err);
	strbuf_release(&resp);
	return rc;
}

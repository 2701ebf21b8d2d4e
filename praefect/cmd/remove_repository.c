/*
 * `praefect remove-repository`: a dry run by default; with -apply the
 * running praefect deletes the repository's records and every replica
 * (RemoveRepository), with -db-only only the records (our
 * PraefectAdminService); then its replication jobs are purged, waiting for
 * the ones in progress to end (docs/technical/praefect-cli.md).
 */
#include "cmd/cmd.h"
#include "base/util.h"
#include "praefect.pb-c.h"
#include "praefect_admin.pb-c.h"
#include "repository.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Purge until no job of the repository is in progress (upstream checks once a second). */
static int purge_jobs(struct praefect_config *cfg, const char *vs, const char *path, struct strbuf *err)
{
	Gitaly__PurgeReplicationJobsRequest req = GITALY__PURGE_REPLICATION_JOBS_REQUEST__INIT;
	struct strbuf resp = STRBUF_INIT;
	int rc = -1;

	req.virtual_storage = (char *)vs;
	req.relative_path = (char *)path;
	for (;;) {
		Gitaly__PurgeReplicationJobsResponse *r;
		int64_t left;
		strbuf_reset(&resp);
		if (cmd_call_unary(cfg, "/gitaly.PraefectAdminService/PurgeReplicationJobs", &req.base, &resp, err) !=
		    GRPC_OK)
			break;
		r = gitaly__purge_replication_jobs_response__unpack(NULL, resp.len, (const uint8_t *)resp.buf);
		if (!r) {
			strbuf_addstr(err, "cannot decode the response");
			break;
		}
		left = r->in_progress;
		gitaly__purge_replication_jobs_response__free_unpacked(r, NULL);
		if (!left) {
			rc = 0;
			break;
		}
		sleep(1);
	}
	strbuf_release(&resp);
	return rc;
}

int cmd_remove_repository(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	const char *vs = NULL, *path = NULL;
	int apply = 0, db_only = 0;
	/* the recovery documentation spells -relative-path as -repository: both work */
	const struct cli_flag flags[] = {
		{ .name = "virtual-storage", .type = CLI_STRING, .str = &vs, .required = 1 },
		{ .name = "relative-path", .alias = "repository", .type = CLI_STRING, .str = &path, .required = 1 },
		{ .name = "apply", .type = CLI_BOOL, .on = &apply },
		{ .name = "db-only", .type = CLI_BOOL, .on = &db_only },
	};
	Gitaly__GetRepositoryMetadataRequest mreq = GITALY__GET_REPOSITORY_METADATA_REQUEST__INIT;
	Gitaly__GetRepositoryMetadataRequest__Path mpath = GITALY__GET_REPOSITORY_METADATA_REQUEST__PATH__INIT;
	struct strbuf err = STRBUF_INIT, resp = STRBUF_INIT;
	enum grpc_code code;
	int rc = 1, next;

	if (cli_parse("remove-repository", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &err) < 0) {
		fprintf(stderr, "%s\n", err.buf);
		goto out;
	}
	mpath.virtual_storage = (char *)vs;
	mpath.relative_path = (char *)path;
	mreq.query_case = GITALY__GET_REPOSITORY_METADATA_REQUEST__QUERY_PATH;
	mreq.path = &mpath;
	code = cmd_call_unary(cfg, "/gitaly.PraefectInfoService/GetRepositoryMetadata", &mreq.base, &resp, &err);
	if (code == GRPC_NOT_FOUND) {
		rc = cmd_fatal("repository is not being tracked in Praefect");
		goto out;
	} else if (code != GRPC_OK) {
		printf("error getting storages from database: %s. Please make sure the database parameters are set "
		       "correctly and the database is accessible.\n", err.buf);
	} else {
		printf("Repository found in the database.\n");
	}
	strbuf_reset(&err);
	if (!apply) {
		printf("Re-run the command with -apply to remove repositories from the database and disk or -apply and "
		       "-db-only to remove from database only.\n");
		rc = 0;
		goto out;
	}
	fflush(stdout);
	if (db_only) {
		Gitaly__RemoveRepositoryRecordsRequest req = GITALY__REMOVE_REPOSITORY_RECORDS_REQUEST__INIT;
		printf("Attempting to remove %s from the database...\n", path);
		fflush(stdout);
		req.virtual_storage = (char *)vs;
		req.relative_path = (char *)path;
		if (cmd_call_unary(cfg, "/gitaly.PraefectAdminService/RemoveRepositoryRecords", &req.base, &resp, &err) !=
		    GRPC_OK) {
			rc = cmd_fatal("remove repository from database: %s", err.buf);
			goto out;
		}
		printf("Repository removal from database completed.\n");
		fflush(stdout);
		if (purge_jobs(cfg, vs, path, &err) < 0) {
			rc = cmd_fatal("remove scheduled replication events: %s", err.buf);
			goto out;
		}
	} else {
		Gitaly__RemoveRepositoryRequest req = GITALY__REMOVE_REPOSITORY_REQUEST__INIT;
		Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
		printf("Attempting to remove %s from the database, and delete it from all gitaly nodes...\n", path);
		fflush(stdout);
		repo.storage_name = (char *)vs;
		repo.relative_path = (char *)path;
		req.repository = &repo;
		if (cmd_call_unary(cfg, "/gitaly.RepositoryService/RemoveRepository", &req.base, &resp, &err) !=
		    GRPC_OK) {
			rc = cmd_fatal("repository removal failed: %s", err.buf);
			goto out;
		}
		printf("Repository removal completed.\n");
		printf("Removing replication events...\n");
		fflush(stdout);
		if (purge_jobs(cfg, vs, path, &err) < 0) {
			rc = cmd_fatal("remove scheduled replication events: %s", err.buf);
			goto out;
		}
		printf("Replication event removal completed.\n");
	}
	rc = 0;
out:
	strbuf_release(&err);
	strbuf_release(&resp);
	return rc;
}

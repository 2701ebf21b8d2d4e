/*
 * `praefect track-repository` and `praefect track-repositories`: start
 * tracking repositories that exist on a node's disk but have no record
 * (found by list-untracked-repositories). The authoritative copy is checked
 * on its node (RepositoryExists, straight to the node as upstream does);
 * the running praefect then creates the record and queues the replication
 * jobs (our PraefectAdminService/TrackRepository,
 * docs/technical/praefect-cli.md). With -replicate-immediately the command
 * waits until each job has made its replica.
 */
#include "cmd/cmd.h"
#include "base/strvec.h"
#include "base/util.h"
#include "praefect.pb-c.h"
#include "praefect_admin.pb-c.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TRACK_PREFIX "attempting to track repository in praefect database: "
#define REPLICATE_WAIT_S 300

struct track_req {
	const char *vs, *relative_path, *replica_path, *authoritative;
};

/*
 * Does the authoritative copy exist? 1, 0, or -1 with `err` set (unknown
 * virtual storage or node). A failing RPC counts as "no", after upstream's
 * line without a newline.
 */
static int authoritative_exists(struct praefect_config *cfg, const struct track_req *t, struct strbuf *err)
{
	const struct praefect_vs_cfg *vs = praefect_config_vs(cfg, t->vs, strlen(t->vs));
	const struct praefect_node_cfg *node = vs ? praefect_config_node(vs, t->authoritative) : NULL;
	Gitaly__RepositoryExistsRequest req = GITALY__REPOSITORY_EXISTS_REQUEST__INIT;
	Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
	Gitaly__RepositoryExistsResponse *r;
	struct strbuf resp = STRBUF_INIT, desc = STRBUF_INIT;
	uint8_t *buf;
	size_t len;
	int exists = 0;

	if (!vs) {
		strbuf_addf(err, "virtual storage \"%s\" not found", t->vs);
		return -1;
	}
	if (!node) {
		strbuf_addf(err, "node \"%s\" not found", t->authoritative);
		return -1;
	}
	repo.storage_name = node->storage;
	repo.relative_path = (char *)t->replica_path;
	req.repository = &repo;
	len = gitaly__repository_exists_request__get_packed_size(&req);
	buf = xmalloc(len ? len : 1);
	gitaly__repository_exists_request__pack(&req, buf);
	if (cmd_call_addr(node->address, node->token, "/gitaly.RepositoryService/RepositoryExists", buf, len,
			  cmd_keep_message, &resp, &desc) != GRPC_OK)
		printf("checking if repository exists \"%s\", \"%s\"", node->storage, t->replica_path);
	else if ((r = gitaly__repository_exists_response__unpack(NULL, resp.len, (const uint8_t *)resp.buf))) {
		exists = r->exists;
		gitaly__repository_exists_response__free_unpacked(r, NULL);
	}
	free(buf);
	strbuf_release(&resp);
	strbuf_release(&desc);
	return exists;
}

/* The replica of `storage` has caught up with the repository: 1, 0 not yet, -1 on error. */
static int replicated(struct praefect_config *cfg, int64_t id, const char *storage, struct strbuf *err)
{
	Gitaly__GetRepositoryMetadataRequest req = GITALY__GET_REPOSITORY_METADATA_REQUEST__INIT;
	Gitaly__GetRepositoryMetadataResponse *m;
	struct strbuf resp = STRBUF_INIT;
	int done = 0;

	req.query_case = GITALY__GET_REPOSITORY_METADATA_REQUEST__QUERY_REPOSITORY_ID;
	req.repository_id = id;
	if (cmd_call_unary(cfg, "/gitaly.PraefectInfoService/GetRepositoryMetadata", &req.base, &resp, err) !=
	    GRPC_OK) {
		strbuf_release(&resp);
		return -1;
	}
	m = gitaly__get_repository_metadata_response__unpack(NULL, resp.len, (const uint8_t *)resp.buf);
	for (size_t i = 0; m && i < m->n_replicas; i++)
		if (!strcmp(m->replicas[i]->storage, storage))
			done = m->replicas[i]->generation >= 0 && m->replicas[i]->generation >= m->generation;
	if (m)
		gitaly__get_repository_metadata_response__free_unpacked(m, NULL);
	strbuf_release(&resp);
	return done;
}

/* Track one repository whose authoritative copy was checked. 0, or -1 with `err` (without the prefix). */
static int track(struct praefect_config *cfg, const struct track_req *t, int immediately, struct strbuf *err)
{
	Gitaly__TrackRepositoryRequest req = GITALY__TRACK_REPOSITORY_REQUEST__INIT;
	Gitaly__TrackRepositoryResponse *r;
	struct strbuf resp = STRBUF_INIT;
	int rc = -1;

	req.virtual_storage = (char *)t->vs;
	req.relative_path = (char *)t->relative_path;
	req.replica_path = (char *)t->replica_path;
	req.authoritative_storage = (char *)t->authoritative;
	if (cmd_call_unary(cfg, "/gitaly.PraefectAdminService/TrackRepository", &req.base, &resp, err) != GRPC_OK)
		goto out;
	r = gitaly__track_repository_response__unpack(NULL, resp.len, (const uint8_t *)resp.buf);
	if (!r) {
		strbuf_addstr(err, "cannot decode the response");
		goto out;
	}
	if (r->already_tracked)
		printf("repository is already tracked in praefect database"); /* no newline, as upstream */
	printf("Finished adding new repository to be tracked in praefect database.\n");
	fflush(stdout);
	rc = 0;
	for (size_t i = 0; i < r->n_secondaries; i++) {
		const char *s = r->secondaries[i];
		if (immediately) {
			time_t until = time(NULL) + REPLICATE_WAIT_S;
			int done;
			while (!(done = replicated(cfg, r->repository_id, s, err)) && time(NULL) < until)
				usleep(100 * 1000);
			if (done <= 0) {
				if (!done)
					strbuf_addf(err, "processing replication event: no replica on \"%s\" after %d s", s,
						    REPLICATE_WAIT_S);
				rc = -1;
				break;
			}
			printf("Finished replicating repository to \"%s\".\n", s);
		} else if (i < (size_t)r->queued) {
			printf("Added replication job to replicate repository to \"%s\".\n", s);
		} else {
			printf("replication event queue already has similar entry: replication event \"%s\" -> \"%s\" "
			       "already exists.\n", t->authoritative, s);
			break;
		}
		fflush(stdout);
	}
	gitaly__track_repository_response__free_unpacked(r, NULL);
out:
	strbuf_release(&resp);
	return rc;
}

int cmd_track_repository(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	struct track_req t = { 0 };
	int immediately = 0, next, rc = 1, exists;
	/* -repository is the recovery documentation's name for -relative-path */
	const struct cli_flag flags[] = {
		{ .name = "virtual-storage", .type = CLI_STRING, .str = &t.vs, .required = 1 },
		{ .name = "relative-path", .alias = "repository", .type = CLI_STRING, .str = &t.relative_path,
		  .required = 1 },
		{ .name = "replica-path", .type = CLI_STRING, .str = &t.replica_path },
		{ .name = "authoritative-storage", .type = CLI_STRING, .str = &t.authoritative, .required = 1 },
		{ .name = "replicate-immediately", .type = CLI_BOOL, .on = &immediately },
	};
	struct strbuf err = STRBUF_INIT;

	if (cli_parse("track-repository", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &err) < 0) {
		fprintf(stderr, "%s\n", err.buf);
		goto out;
	}
	/* without -replica-path the repository is where its relative path says */
	if (!t.replica_path || !*t.replica_path)
		t.replica_path = t.relative_path;
	exists = authoritative_exists(cfg, &t, &err);
	if (exists < 0) {
		rc = cmd_fatal(TRACK_PREFIX "%s", err.buf);
		goto out;
	}
	if (!exists) {
		fflush(stdout);
		rc = cmd_fatal(TRACK_PREFIX "authoritative repository does not exist");
		goto out;
	}
	if (track(cfg, &t, immediately, &err) < 0) {
		fflush(stdout);
		rc = cmd_fatal(TRACK_PREFIX "%s", err.buf);
		goto out;
	}
	rc = 0;
out:
	strbuf_release(&err);
	return rc;
}

/* --- track-repositories: every line of a file, all validated before any is tracked --- */

struct entry {
	int line;
	json_t *obj;
	struct track_req t;
	struct strvec errors;
	int fields_ok;             /* every key present: counts for duplicates */
	int dup;                   /* a duplicate of an earlier line's relative_path */
};

static const char *field(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : "";
}

/* Go's %q of a plain string (the paths printed in the report). */
static void put_quoted(struct strbuf *sb, const char *s)
{
	strbuf_addch(sb, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			strbuf_addch(sb, '\\');
		strbuf_addch(sb, *s);
	}
	strbuf_addch(sb, '"');
}

/* Is (vs, path) tracked? 1, 0, or -1 with `err`. */
static int tracked(struct praefect_config *cfg, const char *vs, const char *path, struct strbuf *err)
{
	Gitaly__GetRepositoryMetadataRequest req = GITALY__GET_REPOSITORY_METADATA_REQUEST__INIT;
	Gitaly__GetRepositoryMetadataRequest__Path qp = GITALY__GET_REPOSITORY_METADATA_REQUEST__PATH__INIT;
	struct strbuf resp = STRBUF_INIT, e = STRBUF_INIT;
	enum grpc_code code;

	qp.virtual_storage = (char *)vs;
	qp.relative_path = (char *)path;
	req.query_case = GITALY__GET_REPOSITORY_METADATA_REQUEST__QUERY_PATH;
	req.path = &qp;
	code = cmd_call_unary(cfg, "/gitaly.PraefectInfoService/GetRepositoryMetadata", &req.base, &resp, &e);
	if (code != GRPC_OK && code != GRPC_NOT_FOUND)
		strbuf_addstr(err, e.buf);
	strbuf_release(&resp);
	strbuf_release(&e);
	return code == GRPC_OK ? 1 : code == GRPC_NOT_FOUND ? 0 : -1;
}

int cmd_track_repositories(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	const char *input = NULL;
	int immediately = 0, next, rc = 1, lines = 0;
	const struct cli_flag flags[] = {
		{ .name = "input-path", .type = CLI_STRING, .str = &input, .required = 1 },
		{ .name = "replicate-immediately", .type = CLI_BOOL, .on = &immediately },
	};
	struct strbuf err = STRBUF_INIT, sb = STRBUF_INIT;
	struct entry *entries = NULL;
	size_t nr = 0, alloc = 0, bad = 0, good = 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;
	FILE *f;

	if (cli_parse("track-repositories", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &err) < 0) {
		fprintf(stderr, "%s\n", err.buf);
		goto out;
	}
	f = fopen(input, "r");
	if (!f) {
		rc = cmd_fatal("open input: open %s: %s", input, strerror(errno));
		goto out;
	}
	printf("Validating repository information in \"%s\"\n", input);
	fflush(stdout);
	while ((got = getline(&line, &cap, f)) >= 0) {
		struct entry *e;
		json_error_t je;
		if (got > 0 && line[got - 1] == '\n')
			line[--got] = 0;
		ALLOC_GROW(entries, nr + 1, alloc);
		e = &entries[nr++];
		memset(e, 0, sizeof(*e));
		strvec_init(&e->errors);
		e->line = ++lines;
		e->obj = json_loadb(line, (size_t)got, JSON_REJECT_DUPLICATES, &je);
		if (!json_is_object(e->obj)) {
			strvec_push(&e->errors, e->obj ? "json: cannot unmarshal into an object" : je.text);
			e->t.relative_path = e->t.replica_path = "";
			continue;
		}
		e->t.relative_path = field(e->obj, "relative_path");
		e->t.replica_path = field(e->obj, "replica_path");
		e->t.vs = field(e->obj, "virtual_storage");
		e->t.authoritative = field(e->obj, "authoritative_storage");
		if (!*e->t.relative_path)
			strvec_push(&e->errors, "\"relative-path\" is a required parameter");
		if (!*e->t.replica_path)
			strvec_push(&e->errors, "\"replica-path\" is a required parameter");
		if (!*e->t.vs)
			strvec_push(&e->errors, "\"virtual-storage\" is a required parameter");
		if (!*e->t.authoritative)
			strvec_push(&e->errors, "\"authoritative-storage\" is a required parameter");
		if (e->errors.nr)
			continue;
		e->fields_ok = 1;
		for (size_t k = 0; k + 1 < nr; k++)
			if (entries[k].fields_ok && !strcmp(entries[k].t.relative_path, e->t.relative_path)) {
				e->dup = 1;
				break;
			}
		if (e->dup)
			continue;
		strbuf_reset(&err);
		switch (tracked(cfg, e->t.vs, e->t.relative_path, &err)) {
		case -1:
			fclose(f);
			rc = cmd_fatal("checking database: %s", err.buf);
			goto out;
		case 1:
			strvec_push(&e->errors, "repository is already tracked by Praefect");
			continue;
		}
		strbuf_reset(&err);
		switch (authoritative_exists(cfg, &e->t, &err)) {
		case -1:
			strvec_pushf(&e->errors, "checking repository on disk: %s", err.buf);
			break;
		case 0:
			strvec_push(&e->errors, "not a valid git repository");
			break;
		}
	}
	fclose(f);
	for (size_t i = 0; i < nr; i++)
		if (entries[i].errors.nr || entries[i].dup)
			bad++;
		else
			good++;
	if (bad) {
		printf("Found %zu invalid request(s) in \"%s\":\n", bad, input);
		for (size_t i = 0; i < nr; i++) {
			struct entry *e = &entries[i];
			if (!e->errors.nr && !e->dup)
				continue;
			strbuf_reset(&sb);
			strbuf_addf(&sb, "  line %d, relative_path: ", e->line);
			put_quoted(&sb, e->t.relative_path);
			strbuf_addstr(&sb, ", replica_path: ");
			put_quoted(&sb, e->t.replica_path);
			printf("%s\n", sb.buf);
			for (size_t k = 0; k < e->errors.nr; k++)
				printf("    %s\n", e->errors.v[k]);
			if (e->dup) {
				/* every line with that path whose keys were complete (upstream's pathLines) */
				printf("    duplicate entries for relative_path, line [");
				for (size_t k = 0, first = 1; k < nr; k++)
					if (entries[k].fields_ok && !strcmp(entries[k].t.relative_path, e->t.relative_path)) {
						printf("%s%d", first ? "" : " ", entries[k].line);
						first = 0;
					}
				printf("]\n");
			}
		}
		fflush(stdout);
		rc = cmd_fatal("invalid entries found, aborting");
		goto out;
	}
	if (!good) {
		rc = cmd_fatal("no repository information found in \"%s\"", input);
		goto out;
	}
	printf("All repository details are correctly formatted\n");
	printf("Tracking %d repositories in Praefect DB...\n", lines);
	fflush(stdout);
	for (size_t i = 0; i < nr; i++) {
		strbuf_reset(&err);
		if (track(cfg, &entries[i].t, immediately, &err) < 0) {
			fflush(stdout);
			rc = cmd_fatal("tracking repository \"%s\": %s", entries[i].t.relative_path, err.buf);
			goto out;
		}
	}
	rc = 0;
out:
	for (size_t i = 0; i < nr; i++) {
		strvec_clear(&entries[i].errors);
		json_decref(entries[i].obj);
	}
	free(entries);
	free(line);
	strbuf_release(&err);
	strbuf_release(&sb);
	return rc;
}

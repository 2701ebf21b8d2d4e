/*
 * `praefect check [-q]`: upstream's start-up checks, in its order and
 * layout, each given 5 s (docs/technical/praefect-cli.md, "check"). The
 * database checks run against our embedded SQLite store.
 */
#include "cmd/cmd.h"
#include "base/util.h"
#include "config/reader.h"
#include "grpc/auth.h"
#include "grpc/client.h"
#include "ntp/ntp.h"
#include "server.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum severity { FATAL, WARNING };
static const char *const severity_name[] = { "fatal", "warning" };

struct check {
	const char *name, *description;
	enum severity severity;
	int (*run)(const struct praefect_config *cfg, int quiet, struct strbuf *err);
};

static int check_migrations(const struct praefect_config *cfg, int quiet, struct strbuf *err)
{
	size_t pending;
	if (cmd_db_pending_migrations(cfg, &pending, err) < 0)
		return -1;
	if (pending) {
		strbuf_addf(err, "%zu migrations have not been run", pending);
		return -1;
	}
	return 0;
}

static int check_nodes(const struct praefect_config *cfg, int quiet, struct strbuf *err)
{
	struct strbuf failed = STRBUF_INIT;
	int rc = 0;
	if (cmd_ping_nodes(cfg, 5000, quiet, &failed) > 0) {
		strbuf_addf(err, "the following nodes are not healthy: %s", failed.buf);
		rc = -1;
	}
	strbuf_release(&failed);
	return rc;
}

/* A random id for the nodes' logs, as upstream prints one: 26 characters of Crockford base32. */
static void correlation_id(char out[27])
{
	static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	for (int i = 0; i < 26; i++)
		out[i] = alphabet[rand() % 32];
	out[26] = '\0';
}

static int node_clock(const struct praefect_node_cfg *node, const char *ntp_host, uint64_t threshold_ns,
		      const char *cid, struct strbuf *err)
{
	uv_loop_t loop_s, *loop = &loop_s;     /* its own: ReadinessCheck runs it on a worker thread */
	struct grpc_channel *ch;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	Gitaly__ClockSyncedRequest req = GITALY__CLOCK_SYNCED_REQUEST__INIT;
	Google__Protobuf__Duration drift = GOOGLE__PROTOBUF__DURATION__INIT;
	Gitaly__ClockSyncedResponse *resp;
	struct strbuf out = STRBUF_INIT, msg = STRBUF_INIT;
	enum grpc_code code;
	uint8_t *buf;
	size_t len;
	int rc = -1;

	uv_loop_init(loop);
	if (grpc_channel_new(loop, node->address, NULL, &ch) < 0) {
		strbuf_addf(err, "%s machine: invalid address", node->address);
		uv_loop_close(loop);
		return -1;
	}
	if (node->token && *node->token)
		auth_v2_add(&md, node->token);
	grpc_metadata_addstr(&md, "x-gitlab-correlation-id", cid);
	drift.seconds = (int64_t)(threshold_ns / 1000000000u);
	drift.nanos = (int32_t)(threshold_ns % 1000000000u);
	req.ntp_host = (char *)ntp_host;
	req.drift_threshold = &drift;
	len = gitaly__clock_synced_request__get_packed_size(&req);
	buf = xmalloc(len ? len : 1);
	gitaly__clock_synced_request__pack(&req, buf);
	code = grpc_unary_sync(loop, ch, "/gitaly.ServerService/ClockSynced", &md, buf, len, 5000, &out, &msg);
	free(buf);
	if (code != GRPC_OK) {
		strbuf_addf(err, "gitaly node at %s: rpc error: code = %s desc = %s", node->address, grpc_code_name(code),
			    msg.buf);
	} else if (!(resp = gitaly__clock_synced_response__unpack(NULL, out.len, (const uint8_t *)out.buf))) {
		strbuf_addf(err, "gitaly node at %s: cannot decode the response", node->address);
	} else {
		if (resp->synced)
			rc = 0;
		else
			strbuf_addf(err, "gitaly node at %s: clock is not synced", node->address);
		gitaly__clock_synced_response__free_unpacked(resp, NULL);
	}
	grpc_metadata_release(&md);
	grpc_channel_close(ch);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	strbuf_release(&out);
	strbuf_release(&msg);
	return rc;
}

/* NTP_HOST (default pool.ntp.org) and DRIFT_THRESHOLD (a duration, default 1m) from the environment. */
static int check_clock(const struct praefect_config *cfg, int quiet, struct strbuf *err)
{
	const char *ntp_host = getenv("NTP_HOST"), *drift = getenv("DRIFT_THRESHOLD");
	uint64_t threshold_ns = 60ull * 1000 * 1000 * 1000;
	char cid[27];
	int synced;

	if (drift && *drift && parse_go_duration(drift, &threshold_ns) < 0) {
		strbuf_addstr(err, "env var DRIFT_THRESHOLD expected to be an duration (5s, 100ms, etc.)");
		return -1;
	}
	if (threshold_ns && threshold_ns < 1000000) {
		strbuf_addstr(err, "env var DRIFT_THRESHOLD expected to be 0 or at least 1ms");
		return -1;
	}
	correlation_id(cid);
	if (!quiet)
		printf("checking with NTP service at %s and allowed clock drift %llu ms [correlation_id: %s]\n",
		       ntp_host ? ntp_host : "", (unsigned long long)(threshold_ns / 1000000), cid);
	fflush(stdout);
	synced = ntp_clock_synced(ntp_host, (int64_t)threshold_ns, err);
	if (synced < 0) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "praefect: %s%s", err->buf, ntp_host && *ntp_host ? "" : " (NTP_HOST was not set)");
		strbuf_reset(err);
		strbuf_add(err, m.buf, m.len);
		strbuf_release(&m);
		return -1;
	}
	if (!synced) {
		strbuf_addstr(err, "praefect: clock is not synced");
		return -1;
	}
	for (size_t i = 0; i < cfg->nr_vs; i++)
		for (size_t j = 0; j < cfg->vs[i].nr_nodes; j++)
			if (node_clock(&cfg->vs[i].nodes[j], ntp_host ? ntp_host : "", threshold_ns, cid, err) < 0)
				return -1;
	return 0;
}

static const struct check checks[] = {
	{ "praefect migrations", "confirms whether or not all praefect migrations have run", FATAL,
	  check_migrations },
	{ "gitaly node connectivity & disk access",
	  "confirms if praefect can reach all of its gitaly nodes, and whether or not the gitaly nodes can "
	  "read/write from and to its storages.", FATAL, check_nodes },
	{ "database read/write", "checks if praefect can write/read to and from the database", FATAL,
	  cmd_db_read_write },
	{ "unavailable repositories",
	  "lists repositories that are missing a valid primary, hence rendering them unavailable", WARNING,
	  cmd_db_unavailable },
	{ "clock synchronization",
	  "checks if system clock is in sync with NTP service. You can use NTP_HOST env var to provide NTP service "
	  "URL to query and DRIFT_THRESHOLD to provide allowed drift as a duration (1ms, 20sec, etc.)", FATAL,
	  check_clock },
};

size_t cmd_checks_count(void)
{
	return ARRAY_SIZE(checks);
}

const char *cmd_check_name(size_t i)
{
	return checks[i].name;
}

int cmd_check_run(const struct praefect_config *cfg, size_t i, struct strbuf *err)
{
	return checks[i].run(cfg, 1, err);
}

int cmd_check(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	int quiet = 0, next, rc, failed = 0, fatal = 0;
	const struct cli_flag flags[] = {
		{ .name = "q", .type = CLI_BOOL, .on = &quiet, .help = "print one line per check" },
	};

	if (cmd_flags("check", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &rc) < 0)
		return rc;
	for (size_t i = 0; i < ARRAY_SIZE(checks); i++) {
		const struct check *c = &checks[i];
		struct strbuf err = STRBUF_INIT;
		if (quiet)
			printf("Checking %s...", c->name);
		else
			printf("Checking %s - %s [%s]\n", c->name, c->description, severity_name[c->severity]);
		fflush(stdout);
		if (c->run(cfg, quiet, &err) < 0) {
			failed++;
			fatal |= c->severity == FATAL;
			printf("Failed (%s) error: %s\n", severity_name[c->severity], err.buf);
		} else {
			printf("Passed\n");
		}
		strbuf_release(&err);
	}
	printf("\n");
	if (fatal) {
		printf("%d check(s) failed, at least one was fatal.\n", failed);
		fflush(stdout);
		cmd_fatal("checks failed");
		return 1;
	}
	if (failed)
		printf("%d check(s) failed, but none are fatal.\n", failed);
	else
		printf("All checks passed.\n");
	return 0;
}

/*
 * praefect's config.toml (upstream's keys, docs/technical/config.md), read once at
 * start-up. The tracking store is embedded SQLite: `[database] sqlite_path`
 * names the file; without it the default PRAEFECT_DEFAULT_DB is used.
 */
#ifndef PRAEFECT_CONFIG_H
#define PRAEFECT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/strbuf.h"

#define PRAEFECT_DEFAULT_DB "/var/lib/praefect/praefect.db"

struct praefect_node_cfg {
	char *storage;
	char *address;
	char *token;
};

struct praefect_vs_cfg {
	char *name;
	int64_t default_replication_factor;
	struct praefect_node_cfg *nodes;
	size_t nr_nodes;
};

struct praefect_config {
	char *file;
	char *listen_addr, *tls_listen_addr, *socket_path, *prometheus_listen_addr;
	uint64_t graceful_stop_timeout_ms;      /* default 1m */
	char *auth_token;
	bool auth_transitioning;
	char *log_format, *log_level;

	bool failover_enabled;                  /* default true */
	char *election_strategy;                /* forced to per_repository */
	/*
	 * Ours (not upstream): health checks every interval with a timeout; a
	 * node is unhealthy once no check succeeded for unhealthy_after, or at
	 * once when its connection breaks. Tuned for sub-second failover on a LAN.
	 */
	uint64_t health_check_interval_ms;      /* [failover] health_check_interval, default 200ms */
	uint64_t health_check_timeout_ms;       /* [failover] health_check_timeout, default 500ms */
	uint64_t unhealthy_after_ms;            /* [failover] unhealthy_after, default 1s */

	char *db_host, *db_user, *db_dbname;    /* PostgreSQL keys: recognised, not supported yet */
	char *sqlite_path;

	int64_t replication_batch_size;         /* default 10 */
	int64_t replication_workers;            /* default 1 */
	uint64_t reconciliation_interval_ms;    /* default 5m, 0 disables */

	/*
	 * [background_verification] (docs/technical/praefect-health.md, "The
	 * background verifier"): upstream's keys, 0 disables the verifier.
	 * Ours: verifications in flight per node (RepositoryExists,
	 * CalculateChecksum, Fsck), so that verifying never starves serving.
	 */
	uint64_t verification_interval_ms;      /* verification_interval, default 7 days */
	bool delete_invalid_records;            /* delete_invalid_records, default true */
	int64_t verifications_per_node;         /* max_verifications_per_node, default 1 */

	int64_t yamux_max_window;               /* default 262144 */
	int64_t yamux_accept_backlog;           /* default 256 */

	struct praefect_vs_cfg *vs;
	size_t nr_vs;
};

/* 0, or -1 with the upstream validation message in `err`. */
int praefect_config_load(struct praefect_config *cfg, const char *path, struct strbuf *err);
void praefect_config_release(struct praefect_config *cfg);
const struct praefect_vs_cfg *praefect_config_vs(const struct praefect_config *cfg, const char *name,
						  size_t len);
const struct praefect_node_cfg *praefect_config_node(const struct praefect_vs_cfg *vs, const char *storage);
/* The address praefect's own subcommands dial: unix socket, else TCP. NULL if none. */
char *praefect_config_dial_address(const struct praefect_config *cfg);

#endif

/*
 * praefect's config.toml (upstream's keys, docs/technical/config.md), read once at
 * start-up. The tracking store is embedded SQLite by default: `[database]
 * sqlite_path` names the file; without it PRAEFECT_DEFAULT_DB is used. A
 * PostgreSQL [database] (host or dbname, and no sqlite_path) selects the
 * PostgreSQL backend with upstream's schema (docs/technical/store.md).
 * A `config_command` is run and its JSON output
 * merged before any key is read (lib/config/command.h).
 */
#ifndef PRAEFECT_CONFIG_H
#define PRAEFECT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/strbuf.h"
#include "metrics/metrics.h"

#define PRAEFECT_DEFAULT_DB "/var/lib/praefect/praefect.db"

/* A PostgreSQL connection as upstream's config names it; NULL / 0: libpq's default. */
struct praefect_db_conn {
	char *host, *user, *password, *dbname, *sslmode, *sslcert, *sslkey, *sslrootcert;
	int64_t port;
};

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
	char *tls_cert_path, *tls_key_path;     /* [tls] certificate_path, key_path */
	struct metrics_config prometheus;       /* [prometheus] */
	uint64_t graceful_stop_timeout_ms;      /* default 1m */
	char *auth_token;
	bool auth_transitioning;
	char *log_format, *log_level;
	char *log_dir;                          /* [logging] dir: accepted, unused (as upstream's praefect) */
	char *config_command;

	/*
	 * [failover] enabled: upstream's per-repository elector runs either way;
	 * the flag gates only its error-count tracker, which we do not have, so
	 * false changes nothing here but a warning at start-up.
	 */
	bool failover_enabled;                  /* default true */
	char *election_strategy;                /* validated as written, then forced to per_repository */
	bool allow_legacy_electors;             /* i_understand_..._without_warning: keep it (refused: we have none) */
	/*
	 * Ours (not upstream): health checks every interval with a timeout; a
	 * node is unhealthy once no check succeeded for unhealthy_after, or at
	 * once when its connection breaks. Tuned for sub-second failover on a LAN.
	 */
	uint64_t health_check_interval_ms;      /* [failover] health_check_interval, default 200ms */
	uint64_t health_check_timeout_ms;       /* [failover] health_check_timeout, default 500ms */
	uint64_t unhealthy_after_ms;            /* [failover] unhealthy_after, default 1s */

	/* [database] and [database.session_pooled]: upstream's PostgreSQL keys */
	struct praefect_db_conn db, db_session_pooled;
	bool db_postgres;                       /* they name a PostgreSQL database (and no sqlite_path) */
	char *sqlite_path;

	int64_t replication_batch_size;         /* default 10 */
	/*
	 * [replication] parallel_storage_processing_workers, default 1: upstream
	 * processes that many target storages of a virtual storage at once. Our
	 * replicator already runs one worker per target storage, all in parallel
	 * (docs/technical/config.md), so the value is only read and checked.
	 */
	int64_t replication_workers;
	/*
	 * Ours, [replication] stale_job_timeout, default 1m (upstream's fixed
	 * period): a job whose lock no praefect refreshed for that long is
	 * released for another to take (docs/technical/multi-praefect.md).
	 */
	uint64_t replication_stale_ms;
	uint64_t reconciliation_interval_ms;    /* default 5m, 0 disables */
	int64_t rebalance_moves;                /* ours: replicas moved at once per virtual storage, 0 disables (default 2) */

	/* [repositories_cleanup]: upstream's defaults (30m, 24h, 16) and checks; the cleaner (cleaner/cleaner.c) */
	uint64_t cleanup_check_interval_ms, cleanup_run_interval_ms;
	int64_t cleanup_repositories_in_batch;
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

/*
 * Read a config from bytes without the classic validation (for
 * `configuration validate`): 0, or -1 with a read error in `err` (a TOML
 * error as "<name>:<line>:<col>: <what>"). Release cfg either way.
 */
int praefect_config_parse(struct praefect_config *cfg, const char *buf, size_t len, const char *name,
			  struct strbuf *err);
/*
 * Upstream's structured validation: append every problem to the JSON array
 * `errors` as {"key": ["virtual_storage", "[0]", "name"], "message": "blank or empty"}.
 */
struct json_t;
void praefect_config_validate_all(const struct praefect_config *cfg, struct json_t *errors);

/* 0, or -1 with the upstream validation message in `err`. */
int praefect_config_load(struct praefect_config *cfg, const char *path, struct strbuf *err);
void praefect_config_release(struct praefect_config *cfg);
/*
 * The libpq parameters of [database] (`port` is a buffer for its text).
 * Pointers into `cfg`, valid while it is.
 */
struct store_pg_params;
void praefect_config_pg_params(const struct praefect_config *cfg, struct store_pg_params *p, char port[16]);
const struct praefect_vs_cfg *praefect_config_vs(const struct praefect_config *cfg, const char *name,
						  size_t len);
const struct praefect_node_cfg *praefect_config_node(const struct praefect_vs_cfg *vs, const char *storage);
/* The address praefect's own subcommands dial: unix socket, else TCP. NULL if none. */
char *praefect_config_dial_address(const struct praefect_config *cfg);

#endif

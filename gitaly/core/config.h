/*
 * gitaly's config.toml, read into a plain struct at start-up and read-only
 * afterwards. Keys and defaults follow upstream (see docs/config.gitaly.toml);
 * unknown keys are ignored (logged at debug level once the logger is set up,
 * by gitaly_config_log_unknown()), bad values stop start-up with
 * "file:line: "key": what is wrong". A `config_command` is run and its JSON
 * output merged before any key is read (lib/config/command.h).
 */
#ifndef GITALY_CONFIG_H
#define GITALY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/strbuf.h"
#include "metrics/metrics.h"
#include "base/strvec.h"

struct gitaly_storage {
	char *name;
	char *path;     /* cleaned, absolute */
};

struct gitaly_git_config {
	char *key, *value;
};

/*
 * One [[concurrency]] entry (docs/technical/gitaly-node.md, "Concurrency
 * limits"): at most `max_per_repo` calls of `rpc` run at once per repository,
 * `max_queue_size` more may wait (0: no bound), each for at most
 * `max_queue_wait_ms` (0: as long as the call lives). With `adaptive`,
 * upstream calibrates the limit between min_limit and max_limit from cgroup
 * pressure; we start at initial_limit and keep it there.
 */
struct gitaly_concurrency {
	char *rpc;                              /* "/gitaly.SSHService/SSHUploadPack" */
	int64_t max_per_repo;
	int64_t max_queue_size;
	uint64_t max_queue_wait_ms;
	bool adaptive;
	int64_t initial_limit, max_limit, min_limit;
};

/* [pack_objects_limiting]: read and validated; nothing limits pack-objects yet. */
struct gitaly_pack_objects_limiting {
	int64_t max_concurrency;                /* default 200 */
	int64_t max_queue_length;
	uint64_t max_queue_wait_ms;
	bool adaptive;
	int64_t initial_limit, max_limit, min_limit;
};

/*
 * [daily_maintenance] (docs/technical/housekeeping.md, "Daily maintenance"):
 * every day at start_hour:start_minute local time, for `duration_ms`,
 * OptimizeRepository over every repository of `storages`. Without the table
 * (or with every key at its zero value) upstream's default applies: 12:00,
 * 10 minutes, every storage.
 */
struct gitaly_daily_maintenance {
	int64_t start_hour, start_minute;
	uint64_t duration_ms;
	struct strvec storages;
	bool disabled;
};

struct gitaly_config {
	char *file;
	char *socket_path;
	char *listen_addr;
	char *tls_listen_addr;
	char *tls_cert_path, *tls_key_path;     /* [tls] certificate_path, key_path */
	char *prometheus_listen_addr;
	struct metrics_config prometheus;    /* [prometheus] */
	char *bin_dir;
	char *runtime_dir;
	uint64_t graceful_restart_timeout_ms;   /* default 1m */

	struct gitaly_storage *storages;
	size_t nr_storages;

	char *auth_token;
	bool auth_transitioning;

	char *git_bin_path;
	int64_t catfile_cache_size;             /* default 100 */
	/* [git] signing_key, rotated_signing_keys (docs/technical/commit-signing.md) */
	char *git_signing_key;
	struct strvec git_rotated_signing_keys;
	struct gitaly_git_config *git_config;
	size_t nr_git_config;

	char *custom_hooks_dir;

	/* [backup]: server-side backups (docs/technical/backups.md) */
	char *backup_go_cloud_url;              /* NULL: not configured */
	char *backup_layout;                    /* "pointer" (default) or "manifest" */
	char *backup_root;                      /* the file:// sink's directory */
	char *gitlab_shell_dir;

	char *gitlab_url;
	char *gitlab_relative_url_root;
	char *gitlab_secret;                    /* from secret or secret_file */
	char *gitlab_http_user, *gitlab_http_password, *gitlab_ca_file, *gitlab_ca_path;
	uint64_t gitlab_read_timeout_ms;       /* [gitlab.http-settings] read_timeout: seconds upstream */

	char *log_dir;
	char *log_format;                       /* "text" or "json" */
	char *log_level;

	uint64_t upload_pack_negotiation_ms;    /* default 10m */
	uint64_t upload_archive_negotiation_ms; /* default 1m */

	struct gitaly_concurrency *concurrency; /* [[concurrency]], in file order */
	size_t nr_concurrency;
	struct gitaly_pack_objects_limiting pack_objects_limiting;
	/* [adaptive_limiting]: read and validated, used by nothing yet */
	double adaptive_cpu_throttled_threshold, adaptive_memory_threshold;

	struct gitaly_daily_maintenance daily_maintenance;

	/* [pack_objects_cache] (docs/technical/pack-objects-cache.md) */
	struct {
		bool enabled;
		char *dir;                      /* default <first storage>/+gitaly/PackObjectsCache */
		uint64_t max_age_ms;            /* default 5m */
		int64_t min_occurrences;        /* default 1 */
	} pack_objects_cache;

	struct strvec unknown_keys;             /* "file:line: ignoring unknown config key ..." */
};

/* 0, or -1 with a message in `err`. */
int gitaly_config_load(struct gitaly_config *cfg, const char *path, struct strbuf *err);
void gitaly_config_release(struct gitaly_config *cfg);
/* Log the unknown keys found by gitaly_config_load() (debug level); call once logging is configured. */
void gitaly_config_log_unknown(const struct gitaly_config *cfg);
const struct gitaly_storage *gitaly_config_storage(const struct gitaly_config *cfg, const char *name,
						     size_t len);

/*
 * `gitaly configuration validate`: read a config from buf[0..len), run its
 * config_command, and append upstream's structured errors to the JSON array
 * `errors` ({"key": ["storage", "[0]", "path"], "message": "doesn't exist: \"/x\""}):
 * the listeners, bin_dir, runtime_dir and every [[storage]] name and path.
 * 0 when read (errors may be empty); -1 for a TOML error ("<stdin>:L:C: what"
 * in `err`); -2 when the config_command failed (`err` says why).
 */
struct json_t;
int gitaly_config_validate_text(const char *buf, size_t len, struct json_t *errors, struct strbuf *err);

/* Validate a git config key as upstream does ("core.foo", no "=", ...). */
int git_config_key_valid(const char *key, size_t len);

#endif

/*
 * gitaly's config.toml, read into a plain struct at start-up and read-only
 * afterwards. Keys and defaults follow upstream (see docs/config.gitaly.toml);
 * unknown keys are ignored (logged at debug level), bad values stop start-up
 * with "file:line: "key": what is wrong".
 */
#ifndef GITALY_CONFIG_H
#define GITALY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/strbuf.h"

struct gitaly_storage {
	char *name;
	char *path;     /* cleaned, absolute */
};

struct gitaly_git_config {
	char *key, *value;
};

struct gitaly_config {
	char *file;
	char *socket_path;
	char *listen_addr;
	char *tls_listen_addr;
	char *prometheus_listen_addr;
	char *bin_dir;
	char *runtime_dir;
	uint64_t graceful_restart_timeout_ms;   /* default 1m */

	struct gitaly_storage *storages;
	size_t nr_storages;

	char *auth_token;
	bool auth_transitioning;

	char *git_bin_path;
	int64_t catfile_cache_size;             /* default 100 */
	struct gitaly_git_config *git_config;
	size_t nr_git_config;

	char *custom_hooks_dir;
	char *gitlab_shell_dir;

	char *gitlab_url;
	char *gitlab_relative_url_root;
	char *gitlab_secret;                    /* from secret or secret_file */
	char *gitlab_http_user, *gitlab_http_password, *gitlab_ca_file, *gitlab_ca_path;
	uint64_t gitlab_read_timeout_ms;

	char *log_dir;
	char *log_format;                       /* "text" or "json" */
	char *log_level;

	uint64_t upload_pack_negotiation_ms;    /* default 10m */
	uint64_t upload_archive_negotiation_ms; /* default 1m */
};

/* 0, or -1 with a message in `err`. */
int gitaly_config_load(struct gitaly_config *cfg, const char *path, struct strbuf *err);
void gitaly_config_release(struct gitaly_config *cfg);
const struct gitaly_storage *gitaly_config_storage(const struct gitaly_config *cfg, const char *name,
						     size_t len);

/* Validate a git config key as upstream does ("core.foo", no "=", ...). */
int git_config_key_valid(const char *key, size_t len);

#endif

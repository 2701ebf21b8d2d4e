/* Loading and validating praefect's config.toml (upstream keys and messages). */
#include "config.h"
#include "config/reader.h"
#include "config/command.h"
#include "config/toml.h"
#include "base/util.h"
#include "base/log.h"
#include "store/pg-admin.h"
#include "h2/io.h"

#include <sys/stat.h>

#include <jansson.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIG_SIZE (4 * 1024 * 1024)

static void load_vs(struct cfg_reader *r, struct praefect_config *cfg, struct toml_table *root)
{
	struct toml_array *arr = cfg_tables(r, root, "virtual_storage");
	if (!arr)
		return;
	cfg->vs = xcalloc(toml_array_len(arr) + 1, sizeof(*cfg->vs));
	for (size_t i = 0; i < toml_array_len(arr) && !cfg_failed(r); i++) {
		struct toml_table *t = toml_array_table(arr, i);
		struct praefect_vs_cfg *vs = &cfg->vs[cfg->nr_vs++];
		struct toml_array *nodes;
		cfg_string(r, t, "name", &vs->name);
		cfg_int(r, t, "default_replication_factor", INT32_MIN, INT32_MAX, &vs->default_replication_factor);
		nodes = cfg_tables(r, t, "node");
		if (!nodes)
			continue;
		vs->nodes = xcalloc(toml_array_len(nodes) + 1, sizeof(*vs->nodes));
		for (size_t j = 0; j < toml_array_len(nodes) && !cfg_failed(r); j++) {
			struct toml_table *nt = toml_array_table(nodes, j);
			struct praefect_node_cfg *n = &vs->nodes[vs->nr_nodes++];
			cfg_string(r, nt, "storage", &n->storage);
			cfg_string(r, nt, "address", &n->address);
			cfg_string(r, nt, "token", &n->token);
			if (!n->token)
				n->token = xstrdup("");
		}
	}
}

/* Upstream's classic validator: its checks in its order and words, the first failure wins (docs/technical/config.md). */
static void validate(struct praefect_config *cfg, struct strbuf *err)
{
	if (strcmp(cfg->election_strategy, "per_repository") && strcmp(cfg->election_strategy, "sql") &&
	    strcmp(cfg->election_strategy, "local")) {
		strbuf_addf(err, "invalid election strategy: \"%s\"", cfg->election_strategy);
		return;
	}
	if (cfg_blank(cfg->listen_addr) && cfg_blank(cfg->socket_path) && cfg_blank(cfg->tls_listen_addr)) {
		strbuf_addstr(err, "no listen address or socket path configured");
		return;
	}
	if (!cfg_blank(cfg->tls_listen_addr) && (cfg_blank(cfg->tls_cert_path) || cfg_blank(cfg->tls_key_path))) {
		strbuf_addstr(err, "tls_listen_addr needs [tls] certificate_path and key_path");
		return;
	}
	if (!cfg->nr_vs) {
		strbuf_addstr(err, "no virtual storages configured");
		return;
	}
	if (cfg->replication_batch_size < 1) {
		strbuf_addf(err, "replication batch size was %lld but must be >=1",
			    (long long)cfg->replication_batch_size);
		return;
	}
	for (size_t i = 0; i < cfg->nr_vs; i++) {
		struct praefect_vs_cfg *vs = &cfg->vs[i];
		if (cfg_blank(vs->name)) {
			strbuf_addstr(err, "virtual storages must have a name");
			return;
		}
		if (!vs->nr_nodes) {
			strbuf_addf(err, "virtual storage \"%s\": no primary gitaly backends configured", vs->name);
			return;
		}
		for (size_t j = 0; j < i; j++)
			if (!strcmp(cfg->vs[j].name, vs->name)) {
				strbuf_addf(err, "virtual storage \"%s\": virtual storages must have unique names",
					    vs->name);
				return;
			}
		for (size_t j = 0; j < vs->nr_nodes; j++) {
			if (cfg_blank(vs->nodes[j].storage)) {
				strbuf_addf(err, "virtual storage \"%s\": all gitaly nodes must have a storage", vs->name);
				return;
			}
			if (cfg_blank(vs->nodes[j].address)) {
				strbuf_addf(err, "virtual storage \"%s\": all gitaly nodes must have an address", vs->name);
				return;
			}
			for (size_t k = 0; k < j; k++)
				if (!strcmp(vs->nodes[k].storage, vs->nodes[j].storage)) {
					strbuf_addf(err, "virtual storage \"%s\": internal gitaly storages are not unique",
						    vs->name);
					return;
				}
		}
		if (vs->default_replication_factor > (int64_t)vs->nr_nodes) {
			strbuf_addf(err, "virtual storage \"%s\" has a default replication factor (%lld) which is "
				    "higher than the number of storages (%zu)", vs->name,
				    (long long)vs->default_replication_factor, vs->nr_nodes);
			return;
		}
	}
	if (cfg->cleanup_run_interval_ms > 0) {
		if (cfg->cleanup_check_interval_ms < 60000) {
			strbuf_addstr(err, "repositories_cleanup.check_interval is less then 1m0s, which could lead to a "
				      "database performance problem");
			return;
		}
		if (cfg->cleanup_run_interval_ms < 60000) {
			strbuf_addstr(err, "repositories_cleanup.run_interval is less then 1m0s, which could lead to a "
				      "database performance problem");
			return;
		}
	}
	if (cfg->yamux_max_window < 262144) {
		strbuf_addf(err, "yamux.maximum_stream_window_size_bytes must be at least 262144 but it was %lld",
			    (long long)cfg->yamux_max_window);
		return;
	}
	if (cfg->yamux_accept_backlog < 1) {
		strbuf_addf(err, "yamux.accept_backlog must be at least 1 but it was %lld",
			    (long long)cfg->yamux_accept_backlog);
		return;
	}
	/* ours: only the per-repository elector exists */
	if (cfg->allow_legacy_electors && strcmp(cfg->election_strategy, "per_repository"))
		strbuf_addf(err, "election strategy \"%s\" is not supported by this praefect: only per_repository is",
			    cfg->election_strategy);
}

void praefect_config_pg_params(const struct praefect_config *cfg, struct store_pg_params *p, char port[16])
{
	const struct praefect_db_conn *c = &cfg->db;

	memset(p, 0, sizeof(*p));
	p->host = c->host;
	p->user = c->user;
	p->password = c->password;
	p->dbname = c->dbname;
	p->sslmode = c->sslmode;
	p->sslcert = c->sslcert;
	p->sslkey = c->sslkey;
	p->sslrootcert = c->sslrootcert;
	if (c->port > 0) {
		snprintf(port, 16, "%d", (int)c->port);
		p->port = port;
	}
}

static void read_db_conn(struct cfg_reader *r, struct toml_table *t, struct praefect_db_conn *c)
{
	cfg_string(r, t, "host", &c->host);
	cfg_int(r, t, "port", 0, 65535, &c->port);
	cfg_string(r, t, "user", &c->user);
	cfg_string(r, t, "password", &c->password);
	cfg_string(r, t, "dbname", &c->dbname);
	cfg_string(r, t, "sslmode", &c->sslmode);
	cfg_string(r, t, "sslcert", &c->sslcert);
	cfg_string(r, t, "sslkey", &c->sslkey);
	cfg_string(r, t, "sslrootcert", &c->sslrootcert);
}

static void release_db_conn(struct praefect_db_conn *c)
{
	char **strs[] = { &c->host, &c->user, &c->password, &c->dbname, &c->sslmode, &c->sslcert,
			  &c->sslkey, &c->sslrootcert };
	for (size_t i = 0; i < ARRAY_SIZE(strs); i++)
		free(*strs[i]);
}

static void set_defaults(struct praefect_config *cfg, const char *name)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->file = xstrdup(name);
	cfg->graceful_stop_timeout_ms = 60000;
	cfg->failover_enabled = true;
	cfg->health_check_interval_ms = 200;
	cfg->health_check_timeout_ms = 500;
	cfg->unhealthy_after_ms = 1000;
	cfg->election_strategy = xstrdup("per_repository");
	cfg->replication_batch_size = 10;
	cfg->replication_workers = 1;
	cfg->replication_stale_ms = 60000;
	cfg->reconciliation_interval_ms = 5 * 60 * 1000;
	cfg->rebalance_moves = 2;
	cfg->yamux_max_window = 262144;
	cfg->yamux_accept_backlog = 256;
	metrics_config_default(&cfg->prometheus);
	cfg->cleanup_check_interval_ms = 30 * 60 * 1000;
	cfg->cleanup_run_interval_ms = 24 * 60 * 60 * 1000;
	cfg->cleanup_repositories_in_batch = 16;
	cfg->verification_interval_ms = 7ull * 24 * 3600 * 1000;
	cfg->delete_invalid_records = true;
	cfg->verifications_per_node = 1;

}

/* Read every key of `root` (taken over) into cfg, after running its config_command. */
static int read_tree(struct praefect_config *cfg, struct toml_table *root, const char *name, struct strbuf *err)
{
	struct toml_table *t;
	struct cfg_reader r;

	if (cfg_config_command(root, err) < 0) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "error reading config file: %s", err->buf);
		strbuf_reset(err);
		strbuf_add(err, m.buf, m.len);
		strbuf_release(&m);
		toml_free(root);
		return -1;
	}
	cfg_reader_init(&r, name);
	cfg_string(&r, root, "listen_addr", &cfg->listen_addr);
	cfg_string(&r, root, "tls_listen_addr", &cfg->tls_listen_addr);
	if ((t = cfg_table(&r, root, "tls"))) {
		cfg_string(&r, t, "certificate_path", &cfg->tls_cert_path);
		cfg_string(&r, t, "key_path", &cfg->tls_key_path);
	}
	cfg_string(&r, root, "socket_path", &cfg->socket_path);
	cfg_string(&r, root, "prometheus_listen_addr", &cfg->prometheus_listen_addr);
	cfg_duration(&r, root, "graceful_stop_timeout", &cfg->graceful_stop_timeout_ms);
	metrics_config_read(&r, root, &cfg->prometheus);
	cfg_string(&r, root, "config_command", &cfg->config_command);
	cfg_bool(&r, root, "i_understand_my_election_strategy_is_unsupported_and_will_be_removed_without_warning",
		 &cfg->allow_legacy_electors);
	if ((t = cfg_table(&r, root, "auth"))) {
		cfg_string(&r, t, "token", &cfg->auth_token);
		cfg_bool(&r, t, "transitioning", &cfg->auth_transitioning);
	}
	if ((t = cfg_table(&r, root, "logging"))) {
		cfg_string(&r, t, "format", &cfg->log_format);
		cfg_string(&r, t, "level", &cfg->log_level);
		cfg_string(&r, t, "dir", &cfg->log_dir);    /* accepted; upstream's praefect does not use it either */
		if (!cfg_failed(&r) && cfg->log_format && log_format_parse(cfg->log_format) < 0)
			cfg_errorf(&r, t, "format", "invalid logger format \"%s\"", cfg->log_format);
	}
	if ((t = cfg_table(&r, root, "failover"))) {
		cfg_bool(&r, t, "enabled", &cfg->failover_enabled);
		cfg_string(&r, t, "election_strategy", &cfg->election_strategy);
		cfg_duration(&r, t, "health_check_interval", &cfg->health_check_interval_ms);
		cfg_duration(&r, t, "health_check_timeout", &cfg->health_check_timeout_ms);
		cfg_duration(&r, t, "unhealthy_after", &cfg->unhealthy_after_ms);
		if (!cfg_failed(&r) && (!cfg->health_check_interval_ms || !cfg->health_check_timeout_ms))
			cfg_errorf(&r, t, "health_check_interval", "health check interval and timeout must be > 0");
	}
	if ((t = cfg_table(&r, root, "database"))) {
		struct toml_table *sp;

		read_db_conn(&r, t, &cfg->db);
		if ((sp = cfg_table(&r, t, "session_pooled")))
			read_db_conn(&r, sp, &cfg->db_session_pooled);
		cfg_string(&r, t, "sqlite_path", &cfg->sqlite_path);
		cfg->db_postgres = !cfg->sqlite_path && ((cfg->db.host && *cfg->db.host) ||
							 (cfg->db.dbname && *cfg->db.dbname));
	}
	if ((t = cfg_table(&r, root, "replication"))) {
		cfg_int(&r, t, "batch_size", INT32_MIN, INT32_MAX, &cfg->replication_batch_size);
		cfg_int(&r, t, "parallel_storage_processing_workers", 0, 1024, &cfg->replication_workers);
		cfg_duration(&r, t, "stale_job_timeout", &cfg->replication_stale_ms);
	}
	if ((t = cfg_table(&r, root, "repositories_cleanup"))) {
		cfg_duration(&r, t, "check_interval", &cfg->cleanup_check_interval_ms);
		cfg_duration(&r, t, "run_interval", &cfg->cleanup_run_interval_ms);
		cfg_int(&r, t, "repositories_in_batch", 0, UINT32_MAX, &cfg->cleanup_repositories_in_batch);
	}
	if ((t = cfg_table(&r, root, "reconciliation"))) {
		cfg_duration(&r, t, "scheduling_interval", &cfg->reconciliation_interval_ms);
		cfg_int(&r, t, "rebalance_moves", 0, 1024, &cfg->rebalance_moves);
	}
	if ((t = cfg_table(&r, root, "background_verification"))) {
		cfg_duration(&r, t, "verification_interval", &cfg->verification_interval_ms);
		cfg_bool(&r, t, "delete_invalid_records", &cfg->delete_invalid_records);
		cfg_int(&r, t, "max_verifications_per_node", 1, 1024, &cfg->verifications_per_node);
	}
	if ((t = cfg_table(&r, root, "yamux"))) {
		cfg_int(&r, t, "maximum_stream_window_size_bytes", 0, UINT32_MAX, &cfg->yamux_max_window);
		cfg_int(&r, t, "accept_backlog", 0, INT32_MAX, &cfg->yamux_accept_backlog);
	}
	load_vs(&r, cfg, root);
	toml_free(root);
	if (cfg_failed(&r)) {
		strbuf_addf(err, "error reading config file: %s", r.err.buf);
		cfg_reader_release(&r);
		return -1;
	}
	cfg_reader_release(&r);
	if (!cfg->graceful_stop_timeout_ms)
		cfg->graceful_stop_timeout_ms = 60000;
	return 0;
}

int praefect_config_parse(struct praefect_config *cfg, const char *buf, size_t len, const char *name,
			  struct strbuf *err)
{
	struct toml_table *root = NULL;
	set_defaults(cfg, name);
	if (toml_parse(buf, len, name, &root, err) < 0)
		return -1;
	return read_tree(cfg, root, name, err);
}

int praefect_config_load(struct praefect_config *cfg, const char *path, struct strbuf *err)
{
	struct toml_table *root = NULL;

	set_defaults(cfg, path);
	if (toml_parse_file(path, MAX_CONFIG_SIZE, &root, err) < 0) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "error reading config file: %s", err->buf);
		strbuf_reset(err);
		strbuf_add(err, m.buf, m.len);
		strbuf_release(&m);
		return -1;
	}
	if (read_tree(cfg, root, path, err) < 0)
		return -1;
	validate(cfg, err);
	if (err->len) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "validating config: %s", err->buf);
		strbuf_reset(err);
		strbuf_add(err, m.buf, m.len);
		strbuf_release(&m);
		return -1;
	}
	/* upstream validates the strategy as written, then forces per_repository unless told otherwise */
	if (!cfg->allow_legacy_electors) {
		free(cfg->election_strategy);
		cfg->election_strategy = xstrdup("per_repository");
	}
	if (!cfg->sqlite_path)
		cfg->sqlite_path = xstrdup(PRAEFECT_DEFAULT_DB);
	return 0;
}

void praefect_config_release(struct praefect_config *cfg)
{
	char **strs[] = {
		&cfg->file, &cfg->listen_addr, &cfg->tls_listen_addr, &cfg->socket_path,
		&cfg->tls_cert_path, &cfg->tls_key_path,
		&cfg->prometheus_listen_addr, &cfg->auth_token, &cfg->log_format, &cfg->log_level,
		&cfg->election_strategy, &cfg->sqlite_path,
		&cfg->config_command, &cfg->log_dir,
	};
	for (size_t i = 0; i < ARRAY_SIZE(strs); i++)
		free(*strs[i]);
	release_db_conn(&cfg->db);
	release_db_conn(&cfg->db_session_pooled);
	for (size_t i = 0; i < cfg->nr_vs; i++) {
		for (size_t j = 0; j < cfg->vs[i].nr_nodes; j++) {
			free(cfg->vs[i].nodes[j].storage);
			free(cfg->vs[i].nodes[j].address);
			free(cfg->vs[i].nodes[j].token);
		}
		free(cfg->vs[i].nodes);
		free(cfg->vs[i].name);
	}
	free(cfg->vs);
	memset(cfg, 0, sizeof(*cfg));
}

const struct praefect_vs_cfg *praefect_config_vs(const struct praefect_config *cfg, const char *name,
						  size_t len)
{
	for (size_t i = 0; i < cfg->nr_vs; i++)
		if (strlen(cfg->vs[i].name) == len && !memcmp(cfg->vs[i].name, name, len))
			return &cfg->vs[i];
	return NULL;
}

const struct praefect_node_cfg *praefect_config_node(const struct praefect_vs_cfg *vs, const char *storage)
{
	for (size_t i = 0; i < vs->nr_nodes; i++)
		if (!strcmp(vs->nodes[i].storage, storage))
			return &vs->nodes[i];
	return NULL;
}

char *praefect_config_dial_address(const struct praefect_config *cfg)
{
	struct strbuf sb = STRBUF_INIT;
	if (cfg->socket_path && *cfg->socket_path)
		strbuf_addf(&sb, "unix:%s", cfg->socket_path);
	else if (cfg->listen_addr && *cfg->listen_addr)
		strbuf_addf(&sb, "%s%s", strstr(cfg->listen_addr, "://") ? "" : "tcp://", cfg->listen_addr);
	else
		return NULL;
	return strbuf_detach(&sb, NULL);
}

/* --- the structured validator (`praefect configuration validate`) --- */

/* Append {"key": [k...], "message": msg}; the key list ends with NULL. */
static void add_error(json_t *errors, const char *msg, ...)
{
	json_t *e = json_object(), *key = json_array();
	va_list ap;
	const char *k;
	va_start(ap, msg);
	while ((k = va_arg(ap, const char *)))
		json_array_append_new(key, json_string(k));
	va_end(ap);
	if (json_array_size(key))
		json_object_set_new(e, "key", key);
	else
		json_decref(key);
	json_object_set_new(e, "message", json_string(msg));
	json_array_append_new(errors, e);
}

static void min_int(json_t *errors, int64_t v, int64_t min, const char *k1, const char *k2)
{
	char msg[128];
	if (v >= min)
		return;
	snprintf(msg, sizeof(msg), "not in range: %lld is not greater than or equal to %lld", (long long)v,
		 (long long)min);
	add_error(errors, msg, k1, k2, (const char *)NULL);
}

static void min_duration(json_t *errors, uint64_t v, uint64_t min, const char *k1, const char *k2)
{
	struct strbuf sb = STRBUF_INIT;
	if (v >= min)
		return;
	strbuf_addstr(&sb, "not in range: ");
	format_go_duration(&sb, (int64_t)v * 1000000);
	strbuf_addstr(&sb, " is not greater than or equal to ");
	format_go_duration(&sb, (int64_t)min * 1000000);
	add_error(errors, sb.buf, k1, k2, (const char *)NULL);
	strbuf_release(&sb);
}

/* upstream's TLS.Validate `doesn't exist` / `not a file` (docs/technical/tls.md) */
static int tls_file(json_t *errors, const char *path, const char *key)
{
	struct stat st;
	char msg[600];
	if (stat(path, &st) < 0)
		snprintf(msg, sizeof(msg), "doesn't exist: \"%s\"", path);
	else if (!S_ISREG(st.st_mode))
		snprintf(msg, sizeof(msg), "not a file: \"%s\"", path);
	else
		return 0;
	add_error(errors, msg, "tls", key, (const char *)NULL);
	return -1;
}

static void validate_tls(const struct praefect_config *cfg, json_t *errors)
{
	char msg[512], full[600];
	struct ssl_ctx_st *ctx;
	int bad = 0;

	if (cfg_blank(cfg->tls_cert_path) && cfg_blank(cfg->tls_key_path))
		return;
	bad |= tls_file(errors, cfg->tls_cert_path ? cfg->tls_cert_path : "", "certificate_path");
	bad |= tls_file(errors, cfg->tls_key_path ? cfg->tls_key_path : "", "key_path");
	if (bad)
		return;
	ctx = tls_server_ctx_new(cfg->tls_cert_path, cfg->tls_key_path, msg, sizeof(msg));
	if (ctx) {
		tls_ctx_free(ctx);
		return;
	}
	snprintf(full, sizeof(full), "loading x509 keypair: %s", msg);
	add_error(errors, full, "tls", !strncmp(msg, "loading certificate", 19) ? "certificate_path" : "key_path",
		  (const char *)NULL);
}

void praefect_config_validate_all(const struct praefect_config *cfg, json_t *errors)
{
	if (cfg_blank(cfg->socket_path) && cfg_blank(cfg->listen_addr) && cfg_blank(cfg->tls_listen_addr))
		add_error(errors, "none of \"socket_path\", \"listen_addr\" or \"tls_listen_addr\" is set",
			  (const char *)NULL);
	validate_tls(cfg, errors);
	min_int(errors, cfg->replication_batch_size, 1, "replication", "batch_size");
	min_int(errors, cfg->replication_workers, 1, "replication", "parallel_storage_processing_workers");
	min_duration(errors, cfg->replication_stale_ms, 1000, "replication", "stale_job_timeout");
	if (cfg->failover_enabled && strcmp(cfg->election_strategy, "per_repository") &&
	    strcmp(cfg->election_strategy, "sql") && strcmp(cfg->election_strategy, "local")) {
		struct strbuf sb = STRBUF_INIT;
		strbuf_addf(&sb, "not supported: \"%s\"", cfg->election_strategy);
		add_error(errors, sb.buf, "failover", "election_strategy", (const char *)NULL);
		strbuf_release(&sb);
	}
	if (cfg->cleanup_run_interval_ms) {
		min_duration(errors, cfg->cleanup_check_interval_ms, 60000, "repositories_cleanup", "check_interval");
		min_duration(errors, cfg->cleanup_run_interval_ms, 60000, "repositories_cleanup", "run_interval");
		min_int(errors, cfg->cleanup_repositories_in_batch, 1, "repositories_cleanup", "repositories_in_batch");
	}
	min_int(errors, cfg->yamux_max_window, 262144, "yamux", "maximum_stream_window_size_bytes");
	min_int(errors, cfg->yamux_accept_backlog, 1, "yamux", "accept_backlog");
	if (!cfg->nr_vs)
		add_error(errors, "not set", "virtual_storage", (const char *)NULL);
	for (size_t i = 0; i < cfg->nr_vs; i++) {
		const struct praefect_vs_cfg *vs = &cfg->vs[i];
		char vi[32];
		snprintf(vi, sizeof(vi), "[%zu]", i);
		if (cfg_blank(vs->name))
			add_error(errors, "blank or empty", "virtual_storage", vi, "name", (const char *)NULL);
		if (!vs->nr_nodes)
			add_error(errors, "not set", "virtual_storage", vi, "node", (const char *)NULL);
		for (size_t j = 0; j < vs->nr_nodes; j++) {
			char ni[32];
			snprintf(ni, sizeof(ni), "[%zu]", j);
			if (cfg_blank(vs->nodes[j].storage))
				add_error(errors, "blank or empty", "virtual_storage", vi, "node", ni, "storage",
					  (const char *)NULL);
			if (cfg_blank(vs->nodes[j].address))
				add_error(errors, "blank or empty", "virtual_storage", vi, "node", ni, "address",
					  (const char *)NULL);
		}
	}
}

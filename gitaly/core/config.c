/* Loading and validating gitaly's config.toml. */
#include "core/config.h"
#include "config/reader.h"
#include "config/command.h"
#include "config/toml.h"
#include "base/util.h"
#include "base/log.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CONFIG_SIZE (4 * 1024 * 1024)

/* Lexically clean an absolute or relative path (Go's filepath.Clean). */
static char *clean_path(const char *p)
{
	struct strbuf out = STRBUF_INIT;
	const char **parts = NULL;
	size_t nr = 0, alloc = 0;
	int abs = p[0] == '/';
	char *copy = xstrdup(p), *save = NULL;

	for (char *tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (!strcmp(tok, "."))
			continue;
		if (!strcmp(tok, "..")) {
			if (nr && strcmp(parts[nr - 1], ".."))
				nr--;
			else if (!abs) {
				ALLOC_GROW(parts, nr + 1, alloc);
				parts[nr++] = tok;
			}
			continue;
		}
		ALLOC_GROW(parts, nr + 1, alloc);
		parts[nr++] = tok;
	}
	if (abs)
		strbuf_addch(&out, '/');
	for (size_t i = 0; i < nr; i++) {
		if (i)
			strbuf_addch(&out, '/');
		strbuf_addstr(&out, parts[i]);
	}
	if (!out.len)
		strbuf_addch(&out, '.');
	free(parts);
	free(copy);
	return strbuf_detach(&out, NULL);
}

static char *absolute_path(const char *p)
{
	char cwd[PATH_MAX];
	struct strbuf sb = STRBUF_INIT;
	char *res;
	if (p[0] == '/')
		return clean_path(p);
	if (!getcwd(cwd, sizeof(cwd)))
		return clean_path(p);
	strbuf_addf(&sb, "%s/%s", cwd, p);
	res = clean_path(sb.buf);
	strbuf_release(&sb);
	return res;
}

int git_config_key_valid(const char *key, size_t len)
{
	size_t i = 0, seg = 0;
	int dots = 0;
	/* ^[[:alnum:]]+(\.[*-/_:@a-zA-Z0-9]+)+$ */
	while (i < len && isalnum((unsigned char)key[i]))
		i++;
	if (i == 0)
		return 0;
	while (i < len) {
		if (key[i] != '.')
			return 0;
		i++;
		dots++;
		seg = 0;
		while (i < len && key[i] != '.') {
			unsigned char c = (unsigned char)key[i];
			if (!(isalnum(c) || (c >= '*' && c <= '/') || c == '_' || c == ':' || c == '@'))
				return 0;
			i++;
			seg++;
		}
		if (!seg)
			return 0;
	}
	return dots > 0;
}

static int read_file_trimmed(const char *path, char **out)
{
	FILE *f = fopen(path, "r");
	struct strbuf sb = STRBUF_INIT;
	char buf[4096];
	size_t n;
	if (!f)
		return -errno;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && sb.len < 65536)
		strbuf_add(&sb, buf, n);
	fclose(f);
	while (sb.len && isspace((unsigned char)sb.buf[sb.len - 1]))
		strbuf_setlen(&sb, sb.len - 1);
	*out = strbuf_detach(&sb, NULL);
	return 0;
}

static void load_storages(struct cfg_reader *r, struct gitaly_config *cfg, struct toml_table *root)
{
	struct toml_array *arr = cfg_tables(r, root, "storage");
	if (!arr)
		return;
	cfg->storages = xcalloc(toml_array_len(arr) + 1, sizeof(*cfg->storages));
	for (size_t i = 0; i < toml_array_len(arr) && !cfg_failed(r); i++) {
		struct toml_table *t = toml_array_table(arr, i);
		struct gitaly_storage *s = &cfg->storages[cfg->nr_storages];
		char *path = NULL;
		struct stat st;

		cfg_string(r, t, "name", &s->name);
		cfg_string(r, t, "path", &path);
		if (cfg_failed(r)) {
			free(path);
			break;
		}
		cfg->nr_storages++;
		if (!s->name || !*s->name) {
			cfg_errorf(r, t, "name", "every [[storage]] needs a non-empty name");
			free(path);
			break;
		}
		if (!path || !*path) {
			cfg_errorf(r, t, "path", "storage \"%s\" needs a path", s->name);
			free(path);
			break;
		}
		s->path = absolute_path(path);
		free(path);
		for (size_t j = 0; j + 1 < cfg->nr_storages; j++)
			if (!strcmp(cfg->storages[j].name, s->name))
				cfg_errorf(r, t, "name", "storage \"%s\" is defined twice", s->name);
		if (!cfg_failed(r) && (stat(s->path, &st) < 0 || !S_ISDIR(st.st_mode)))
			cfg_errorf(r, t, "path", "storage \"%s\": \"%s\" is not a directory", s->name, s->path);
	}
	/* paths may not nest (identical paths are tolerated, as upstream) */
	for (size_t i = 0; i < cfg->nr_storages && !cfg_failed(r); i++)
		for (size_t j = 0; j < cfg->nr_storages; j++) {
			const char *a = cfg->storages[i].path, *b = cfg->storages[j].path;
			size_t la = strlen(a);
			if (i == j || !strcmp(a, b))
				continue;
			if (!strncmp(a, b, la) && (b[la] == '/' || !strcmp(a, "/")))
				cfg_errorf(r, NULL, NULL, "storage paths may not nest: \"%s\" contains \"%s\"", a, b);
		}
}

/*
 * [git] signing_key and rotated_signing_keys: paths of key files. Upstream
 * reads them only when a call needs them; we also refuse at start-up a path
 * that cannot be read, so that a typo shows before the first signature check
 * (docs/technical/commit-signing.md).
 */
static void check_key_file(struct cfg_reader *r, struct toml_table *t, const char *key, const char *path)
{
	if (!*path)
		cfg_errorf(r, t, key, "empty signing key path");
	else if (access(path, R_OK) < 0)
		cfg_errorf(r, t, key, "cannot read signing key \"%s\": %s", path, strerror(errno));
}

static void load_signing_keys(struct cfg_reader *r, struct gitaly_config *cfg, struct toml_table *git)
{
	struct toml_array *arr;
	if (cfg_string(r, git, "signing_key", &cfg->git_signing_key) == 0 && cfg->git_signing_key)
		check_key_file(r, git, "signing_key", cfg->git_signing_key);
	if (cfg_failed(r) || !toml_get(git, "rotated_signing_keys"))
		return;
	if (toml_get_array(git, "rotated_signing_keys", &arr) < 0) {
		cfg_errorf(r, git, "rotated_signing_keys", "expected an array of key paths");
		return;
	}
	for (size_t i = 0; i < toml_array_len(arr) && !cfg_failed(r); i++) {
		const char *s;
		size_t len;
		if (toml_value_string(toml_array_at(arr, i), &s, &len) < 0) {
			cfg_errorf(r, git, "rotated_signing_keys", "expected an array of key paths");
			break;
		}
		check_key_file(r, git, "rotated_signing_keys", s);
		strvec_push(&cfg->git_rotated_signing_keys, s);
	}
}

static void load_git(struct cfg_reader *r, struct gitaly_config *cfg, struct toml_table *root)
{
	struct toml_table *git = cfg_table(r, root, "git");
	struct toml_array *arr;
	if (!git)
		return;
	cfg_string(r, git, "bin_path", &cfg->git_bin_path);
	cfg_int(r, git, "catfile_cache_size", 0, 100000, &cfg->catfile_cache_size);
	load_signing_keys(r, cfg, git);
	arr = cfg_tables(r, git, "config");
	if (!arr)
		return;
	cfg->git_config = xcalloc(toml_array_len(arr) + 1, sizeof(*cfg->git_config));
	for (size_t i = 0; i < toml_array_len(arr) && !cfg_failed(r); i++) {
		struct toml_table *t = toml_array_table(arr, i);
		struct gitaly_git_config *gc = &cfg->git_config[cfg->nr_git_config++];
		cfg_string(r, t, "key", &gc->key);
		cfg_string(r, t, "value", &gc->value);
		if (!cfg_failed(r) && (!gc->key || !git_config_key_valid(gc->key, strlen(gc->key))))
			cfg_errorf(r, t, "key", "invalid git config key \"%s\"", gc->key ? gc->key : "");
		if (!gc->value)
			gc->value = xstrdup("");
	}
}

static void load_gitlab(struct cfg_reader *r, struct gitaly_config *cfg, struct toml_table *root)
{
	struct toml_table *gl = cfg_table(r, root, "gitlab");
	struct toml_table *http;
	char *secret_file = NULL;
	if (!gl)
		return;
	cfg_string(r, gl, "url", &cfg->gitlab_url);
	cfg_string(r, gl, "relative_url_root", &cfg->gitlab_relative_url_root);
	cfg_string(r, gl, "secret", &cfg->gitlab_secret);
	cfg_string(r, gl, "secret_file", &secret_file);
	http = cfg_table(r, gl, "http-settings");
	if (http) {
		int64_t secs = -1;
		/* upstream: a plain number of seconds, not a duration */
		if (cfg_int(r, http, "read_timeout", 0, INT64_MAX / 1000, &secs) == 0 && secs >= 0)
			cfg->gitlab_read_timeout_ms = (uint64_t)secs * 1000;
		cfg_string(r, http, "user", &cfg->gitlab_http_user);
		cfg_string(r, http, "password", &cfg->gitlab_http_password);
		cfg_string(r, http, "ca_file", &cfg->gitlab_ca_file);
		cfg_string(r, http, "ca_path", &cfg->gitlab_ca_path);
	}
	if (!cfg_failed(r) && cfg->gitlab_url && *cfg->gitlab_url && !cfg->gitlab_secret) {
		char *path = secret_file;
		struct strbuf def = STRBUF_INIT;
		if (!path && cfg->gitlab_shell_dir) {
			strbuf_addf(&def, "%s/.gitlab_shell_secret", cfg->gitlab_shell_dir);
			path = def.buf;
		}
		if (path && read_file_trimmed(path, &cfg->gitlab_secret) < 0)
			cfg_errorf(r, gl, secret_file ? "secret_file" : "url",
				   "cannot read the GitLab secret from \"%s\"", path);
		strbuf_release(&def);
	}
	free(secret_file);
}

/*
 * A duration that upstream requires to be >= 0. Go parses "-1m", so a minus
 * sign gets upstream's range message rather than "expected a duration".
 */
static void limit_duration(struct cfg_reader *r, struct toml_table *t, const char *key, uint64_t *out_ms)
{
	struct toml_value *v = cfg_failed(r) || !t ? NULL : toml_get(t, key);
	const char *s;
	size_t len;
	uint64_t ns;

	if (v && toml_value_string(v, &s, &len) == 0 && s[0] == '-' && parse_go_duration(s + 1, &ns) == 0 &&
	    ns) {
		struct strbuf d = STRBUF_INIT;
		format_go_duration(&d, -(int64_t)ns);
		cfg_errorf(r, t, key, "not in range: %s is not greater than or equal to 0s", d.buf);
		strbuf_release(&d);
		return;
	}
	if (v && toml_value_string(v, &s, &len) == 0 && s[0] == '-' && parse_go_duration(s + 1, &ns) == 0) {
		*out_ms = 0; /* "-0s" */
		return;
	}
	cfg_duration(r, t, key, out_ms);
}

/* An integer with upstream's range check "not in range: -1 is not greater than or equal to 0". */
static void limit_int(struct cfg_reader *r, struct toml_table *t, const char *key, int64_t min, int64_t *out)
{
	int64_t v = *out;
	if (cfg_int(r, t, key, INT64_MIN, INT64_MAX, &v) < 0 || !toml_get(t, key))
		return;
	*out = v;
	if (v < min)
		cfg_errorf(r, t, key, "not in range: %lld is not greater than or equal to %lld", (long long)v,
			   (long long)min);
}

/* Upstream's adaptive checks, in its order: min_limit > 0 (>= 0 for pack-objects), max >= initial >= min. */
static void check_adaptive(struct cfg_reader *r, struct toml_table *t, int64_t initial, int64_t max, int64_t min,
			   int min_positive)
{
	if (cfg_failed(r))
		return;
	if (min_positive && min <= 0)
		cfg_errorf(r, t, "min_limit", "not in range: %lld is not greater than 0", (long long)min);
	else if (!min_positive && min < 0)
		cfg_errorf(r, t, "min_limit", "not in range: %lld is not greater than or equal to 0", (long long)min);
	else if (max < initial)
		cfg_errorf(r, t, "max_limit", "not in range: %lld is not greater than or equal to %lld", (long long)max,
			   (long long)initial);
	else if (initial < min)
		cfg_errorf(r, t, "initial_limit", "not in range: %lld is not greater than or equal to %lld",
			   (long long)initial, (long long)min);
}

static void load_concurrency(struct cfg_reader *r, struct gitaly_config *cfg, struct toml_table *root)
{
	struct toml_array *arr = cfg_tables(r, root, "concurrency");
	struct toml_table *t;

	if (arr) {
		cfg->concurrency = xcalloc(toml_array_len(arr) + 1, sizeof(*cfg->concurrency));
		for (size_t i = 0; i < toml_array_len(arr) && !cfg_failed(r); i++) {
			struct gitaly_concurrency *c = &cfg->concurrency[cfg->nr_concurrency++];
			bool set;
			t = toml_array_table(arr, i);
			cfg_string(r, t, "rpc", &c->rpc);
			cfg_bool(r, t, "adaptive", &c->adaptive);
			limit_int(r, t, "initial_limit", INT64_MIN, &c->initial_limit);
			limit_int(r, t, "max_limit", INT64_MIN, &c->max_limit);
			limit_int(r, t, "min_limit", INT64_MIN, &c->min_limit);
			limit_int(r, t, "max_per_repo", 0, &c->max_per_repo);
			limit_int(r, t, "max_queue_size", 0, &c->max_queue_size);
			limit_duration(r, t, "max_queue_wait", &c->max_queue_wait_ms);
			if (c->adaptive)
				check_adaptive(r, t, c->initial_limit, c->max_limit, c->min_limit, 1);
			set = c->rpc && *c->rpc;
			if (!cfg_failed(r) && !set)
				/* upstream would silently never match; an entry without a method is a mistake */
				strbuf_addf(&r->err, "%s:%u: [[concurrency]] needs \"rpc\", a full method name such as "
					    "\"/gitaly.SSHService/SSHUploadPack\"", r->file, arr->v[i].line);
		}
	}
	if ((t = cfg_table(r, root, "pack_objects_limiting"))) {
		struct gitaly_pack_objects_limiting *p = &cfg->pack_objects_limiting;
		cfg_bool(r, t, "adaptive", &p->adaptive);
		limit_int(r, t, "max_concurrency", 0, &p->max_concurrency);
		limit_int(r, t, "max_queue_length", 0, &p->max_queue_length);
		limit_duration(r, t, "max_queue_wait", &p->max_queue_wait_ms);
		limit_int(r, t, "min_limit", INT64_MIN, &p->min_limit);
		limit_int(r, t, "max_limit", INT64_MIN, &p->max_limit);
		limit_int(r, t, "initial_limit", INT64_MIN, &p->initial_limit);
		/* upstream checks these whether or not adaptive is on */
		check_adaptive(r, t, p->initial_limit, p->max_limit, p->min_limit, 0);
	}
	if ((t = cfg_table(r, root, "adaptive_limiting"))) {
		static const char *const keys[] = { "cpu_throttled_threshold", "memory_threshold" };
		double *outs[] = { &cfg->adaptive_cpu_throttled_threshold, &cfg->adaptive_memory_threshold };
		for (size_t i = 0; i < ARRAY_SIZE(keys) && !cfg_failed(r); i++) {
			struct toml_value *v = toml_get(t, keys[i]);
			int64_t n;
			if (!v)
				continue;
			if (toml_value_int(v, &n) == 0)
				*outs[i] = (double)n;
			else if (toml_value_float(v, outs[i]) < 0)
				cfg_errorf(r, t, keys[i], "expected a number");
			if (!cfg_failed(r) && *outs[i] < 0)
				cfg_errorf(r, t, keys[i], "not in range: %g is not greater than or equal to 0", *outs[i]);
		}
	}
}

/* [daily_maintenance] with upstream's default and checks (docs/technical/housekeeping.md). */
static void load_daily_maintenance(struct cfg_reader *r, struct gitaly_config *cfg, struct toml_table *root)
{
	struct gitaly_daily_maintenance *d = &cfg->daily_maintenance;
	struct toml_table *t = cfg_table(r, root, "daily_maintenance");
	struct toml_array *arr = NULL;

	if (t) {
		cfg_int(r, t, "start_hour", INT64_MIN, INT64_MAX, &d->start_hour);
		cfg_int(r, t, "start_minute", INT64_MIN, INT64_MAX, &d->start_minute);
		cfg_duration(r, t, "duration", &d->duration_ms);
		cfg_bool(r, t, "disabled", &d->disabled);
		if (!cfg_failed(r) && toml_get(t, "storages")) {
			if (toml_get_array(t, "storages", &arr) < 0) {
				cfg_errorf(r, t, "storages", "expected an array of storage names");
			} else {
				for (size_t i = 0; i < toml_array_len(arr); i++) {
					const char *s;
					size_t len;
					if (toml_value_string(toml_array_at(arr, i), &s, &len) < 0) {
						cfg_errorf(r, t, "storages", "expected an array of storage names");
						break;
					}
					strvec_push(&d->storages, s);
				}
			}
		}
	}
	if (cfg_failed(r))
		return;
	if (!d->start_hour && !d->start_minute && !d->duration_ms && !d->storages.nr && !d->disabled) {
		/* upstream's default window: 12:00 for 10 minutes over every storage */
		d->start_hour = 12;
		d->duration_ms = 10 * 60 * 1000;
		for (size_t i = 0; i < cfg->nr_storages; i++)
			strvec_push(&d->storages, cfg->storages[i].name);
		return;
	}
	for (size_t i = 0; i < d->storages.nr; i++)
		if (!gitaly_config_storage(cfg, d->storages.v[i], strlen(d->storages.v[i]))) {
			cfg_errorf(r, t, "storages", "daily maintenance specified storage \"%s\" does not exist in configuration",
				   d->storages.v[i]);
			return;
		}
	if (d->start_hour < 0 || d->start_hour > 23)
		cfg_errorf(r, t, "start_hour", "daily maintenance specified hour '%lld' outside range (0-23)",
			   (long long)d->start_hour);
	else if (d->start_minute < 0 || d->start_minute > 59)
		cfg_errorf(r, t, "start_minute", "daily maintenance specified minute '%lld' outside range (0-59)",
			   (long long)d->start_minute);
	else if (d->duration_ms > 24ull * 3600 * 1000)
		cfg_errorf(r, t, "duration", "daily maintenance specified duration must be less than 24 hours");
}

/* Kept for gitaly_config_log_unknown(): the logger is not set up while the file is read. */
static void ignore_unread(const char *path, unsigned line, unsigned col, void *data)
{
	struct gitaly_config *cfg = data;
	strvec_pushf(&cfg->unknown_keys, "%s:%u: ignoring unknown config key \"%s\"", cfg->file, line, path);
}

void gitaly_config_log_unknown(const struct gitaly_config *cfg)
{
	for (size_t i = 0; i < cfg->unknown_keys.nr; i++)
		log_msgf(LOG_DEBUG, "%s", cfg->unknown_keys.v[i]);
}

/*
 * [pack_objects_cache] as upstream loads it (docs/technical/pack-objects-cache.md):
 * checked only when enabled; a negative max_age is an error, 0 means 5m, the
 * directory defaults under the first storage and must be absolute.
 */
static void load_pack_objects_cache(struct cfg_reader *r, struct gitaly_config *cfg, struct toml_table *root)
{
	struct toml_table *t = cfg_table(r, root, "pack_objects_cache");
	struct toml_value *v;
	const char *s;
	size_t len;
	uint64_t ns;
	struct strbuf d = STRBUF_INIT;

	cfg->pack_objects_cache.min_occurrences = 1;
	if (!t)
		return;
	cfg_bool(r, t, "enabled", &cfg->pack_objects_cache.enabled);
	cfg_string(r, t, "dir", &cfg->pack_objects_cache.dir);
	cfg_int(r, t, "min_occurrences", INT64_MIN, INT64_MAX, &cfg->pack_objects_cache.min_occurrences);
	v = cfg_failed(r) ? NULL : toml_get(t, "max_age");
	if (v && toml_value_string(v, &s, &len) == 0 && s[0] == '-' && parse_go_duration(s + 1, &ns) == 0) {
		if (ns && cfg->pack_objects_cache.enabled)
			cfg_errorf(r, t, "max_age", "pack_objects_cache.max_age cannot be negative");
	} else {
		cfg_duration(r, t, "max_age", &cfg->pack_objects_cache.max_age_ms);
	}
	if (cfg_failed(r) || !cfg->pack_objects_cache.enabled)
		return;
	if (!cfg->pack_objects_cache.max_age_ms)
		cfg->pack_objects_cache.max_age_ms = 5 * 60 * 1000;
	if (!cfg->pack_objects_cache.dir || !*cfg->pack_objects_cache.dir) {
		free(cfg->pack_objects_cache.dir);
		cfg->pack_objects_cache.dir = NULL;
		if (!cfg->nr_storages) {
			cfg_errorf(r, t, NULL, "pack_objects_cache: cannot pick default cache directory: no storages");
			return;
		}
		strbuf_addf(&d, "%s/+gitaly/PackObjectsCache", cfg->storages[0].path);
		cfg->pack_objects_cache.dir = strbuf_detach(&d, NULL);
	}
	if (cfg->pack_objects_cache.dir[0] != '/')
		cfg_errorf(r, t, "dir", "pack_objects_cache: storage directory must be absolute path");
}

int gitaly_config_load(struct gitaly_config *cfg, const char *path, struct strbuf *err)
{
	struct toml_table *root = NULL;
	struct cfg_reader r;
	struct toml_table *t;
	struct stat st;

	memset(cfg, 0, sizeof(*cfg));
	strvec_init(&cfg->unknown_keys);
	strvec_init(&cfg->daily_maintenance.storages);
	strvec_init(&cfg->git_rotated_signing_keys);
	cfg->file = xstrdup(path);
	cfg->graceful_restart_timeout_ms = 60000;
	cfg->catfile_cache_size = 100;
	cfg->upload_pack_negotiation_ms = 10 * 60 * 1000;
	cfg->upload_archive_negotiation_ms = 60 * 1000;
	cfg->gitlab_read_timeout_ms = 0;
	cfg->pack_objects_limiting.max_concurrency = 200;
	metrics_config_default(&cfg->prometheus);

	if (toml_parse_file(path, MAX_CONFIG_SIZE, &root, err) < 0)
		return -1;
	if (cfg_config_command(root, err) < 0) {
		toml_free(root);
		return -1;
	}
	cfg_reader_init(&r, path);
	cfg_string(&r, root, "socket_path", &cfg->socket_path);
	cfg_string(&r, root, "listen_addr", &cfg->listen_addr);
	cfg_string(&r, root, "tls_listen_addr", &cfg->tls_listen_addr);
	if ((t = cfg_table(&r, root, "tls"))) {
		cfg_string(&r, t, "certificate_path", &cfg->tls_cert_path);
		cfg_string(&r, t, "key_path", &cfg->tls_key_path);
	}
	cfg_string(&r, root, "prometheus_listen_addr", &cfg->prometheus_listen_addr);
	cfg_string(&r, root, "bin_dir", &cfg->bin_dir);
	cfg_string(&r, root, "runtime_dir", &cfg->runtime_dir);
	cfg_duration(&r, root, "graceful_restart_timeout", &cfg->graceful_restart_timeout_ms);
	metrics_config_read(&r, root, &cfg->prometheus);
	load_storages(&r, cfg, root);

	if ((t = cfg_table(&r, root, "auth"))) {
		cfg_string(&r, t, "token", &cfg->auth_token);
		cfg_bool(&r, t, "transitioning", &cfg->auth_transitioning);
	}
	load_git(&r, cfg, root);
	if ((t = cfg_table(&r, root, "hooks")))
		cfg_string(&r, t, "custom_hooks_dir", &cfg->custom_hooks_dir);
	if ((t = cfg_table(&r, root, "gitlab-shell")))
		cfg_string(&r, t, "dir", &cfg->gitlab_shell_dir);
	load_gitlab(&r, cfg, root);
	if ((t = cfg_table(&r, root, "backup"))) {
		cfg_string(&r, t, "go_cloud_url", &cfg->backup_go_cloud_url);
		cfg_string(&r, t, "layout", &cfg->backup_layout);
		if (!cfg_failed(&r) && cfg->backup_go_cloud_url && *cfg->backup_go_cloud_url) {
			const char *u = cfg->backup_go_cloud_url;
			if (!cfg->backup_layout)
				cfg->backup_layout = xstrdup("pointer");
			if (strncmp(u, "file://", 7) || u[7] != '/')
				cfg_errorf(&r, t, "go_cloud_url", "unsupported backup sink \"%s\" (only file:///path)", u);
			else if (strcmp(cfg->backup_layout, "pointer") && strcmp(cfg->backup_layout, "manifest"))
				cfg_errorf(&r, t, "layout", "unknown backup layout \"%s\" (use \"pointer\" or \"manifest\")",
					   cfg->backup_layout);
			else
				cfg->backup_root = xstrdup(u + 7);
		}
	}
	if ((t = cfg_table(&r, root, "logging"))) {
		cfg_string(&r, t, "dir", &cfg->log_dir);
		cfg_string(&r, t, "format", &cfg->log_format);
		cfg_string(&r, t, "level", &cfg->log_level);
		if (!cfg_failed(&r) && cfg->log_format && log_format_parse(cfg->log_format) < 0)
			cfg_errorf(&r, t, "format", "unknown log format \"%s\" (use \"text\" or \"json\")",
				   cfg->log_format);
		if (!cfg_failed(&r) && cfg->log_level && *cfg->log_level && log_level_parse(cfg->log_level) < 0)
			cfg_errorf(&r, t, "level", "unknown log level \"%s\"", cfg->log_level);
	}
	if ((t = cfg_table(&r, root, "timeout"))) {
		cfg_duration(&r, t, "upload_pack_negotiation", &cfg->upload_pack_negotiation_ms);
		cfg_duration(&r, t, "upload_archive_negotiation", &cfg->upload_archive_negotiation_ms);
	}
	load_concurrency(&r, cfg, root);
	load_daily_maintenance(&r, cfg, root);
	load_pack_objects_cache(&r, cfg, root);

	if (!cfg_failed(&r)) {
		if (!cfg->socket_path && !cfg->listen_addr && !cfg->tls_listen_addr)
			cfg_errorf(&r, NULL, NULL, "no listener: set socket_path, listen_addr or tls_listen_addr");
		else if (!cfg->nr_storages)
			cfg_errorf(&r, NULL, NULL, "at least one [[storage]] is required");
		else if (!cfg->bin_dir || !*cfg->bin_dir)
			cfg_errorf(&r, NULL, NULL, "\"bin_dir\" is required");
		else if (stat(cfg->bin_dir, &st) < 0 || !S_ISDIR(st.st_mode))
			cfg_errorf(&r, root, "bin_dir", "\"%s\" is not a directory", cfg->bin_dir);
		else if (cfg->tls_listen_addr && *cfg->tls_listen_addr &&
			 (!cfg->tls_cert_path || !*cfg->tls_cert_path || !cfg->tls_key_path || !*cfg->tls_key_path))
			cfg_errorf(&r, root, "tls_listen_addr",
				   "tls_listen_addr needs [tls] certificate_path and key_path");
	}
	if (!cfg_failed(&r)) {
		char *abs = absolute_path(cfg->bin_dir);
		free(cfg->bin_dir);
		cfg->bin_dir = abs;
		if (cfg->runtime_dir) {
			abs = absolute_path(cfg->runtime_dir);
			free(cfg->runtime_dir);
			cfg->runtime_dir = abs;
		}
		toml_for_each_unread(root, ignore_unread, cfg);
	}
	toml_free(root);
	if (cfg_failed(&r)) {
		strbuf_add(err, r.err.buf, r.err.len);
		cfg_reader_release(&r);
		return -1;
	}
	cfg_reader_release(&r);
	return 0;
}

void gitaly_config_release(struct gitaly_config *cfg)
{
	char **strs[] = {
		&cfg->file, &cfg->socket_path, &cfg->listen_addr, &cfg->tls_listen_addr,
		&cfg->tls_cert_path, &cfg->tls_key_path,
		&cfg->prometheus_listen_addr, &cfg->bin_dir, &cfg->runtime_dir, &cfg->auth_token,
		&cfg->git_bin_path, &cfg->git_signing_key, &cfg->custom_hooks_dir, &cfg->gitlab_shell_dir, &cfg->gitlab_url,
		&cfg->gitlab_relative_url_root, &cfg->gitlab_secret, &cfg->gitlab_http_user,
		&cfg->gitlab_http_password, &cfg->gitlab_ca_file, &cfg->gitlab_ca_path,
		&cfg->log_dir, &cfg->log_format, &cfg->log_level,
		&cfg->backup_go_cloud_url, &cfg->backup_layout, &cfg->backup_root,
		&cfg->pack_objects_cache.dir,
	};
	for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
		free(*strs[i]);
		*strs[i] = NULL;
	}
	for (size_t i = 0; i < cfg->nr_storages; i++) {
		free(cfg->storages[i].name);
		free(cfg->storages[i].path);
	}
	free(cfg->storages);
	for (size_t i = 0; i < cfg->nr_git_config; i++) {
		free(cfg->git_config[i].key);
		free(cfg->git_config[i].value);
	}
	free(cfg->git_config);
	for (size_t i = 0; i < cfg->nr_concurrency; i++)
		free(cfg->concurrency[i].rpc);
	free(cfg->concurrency);
	strvec_clear(&cfg->unknown_keys);
	strvec_clear(&cfg->daily_maintenance.storages);
	strvec_clear(&cfg->git_rotated_signing_keys);
	memset(cfg, 0, sizeof(*cfg));
}

const struct gitaly_storage *gitaly_config_storage(const struct gitaly_config *cfg, const char *name,
						     size_t len)
{
	for (size_t i = 0; i < cfg->nr_storages; i++)
		if (strlen(cfg->storages[i].name) == len && !memcmp(cfg->storages[i].name, name, len))
			return &cfg->storages[i];
	return NULL;
}

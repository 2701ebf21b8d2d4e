/* Loading and validating gitaly's config.toml. */
#include "core/config.h"
#include "config/reader.h"
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

static void load_git(struct cfg_reader *r, struct gitaly_config *cfg, struct toml_table *root)
{
	struct toml_table *git = cfg_table(r, root, "git");
	struct toml_array *arr;
	if (!git)
		return;
	cfg_string(r, git, "bin_path", &cfg->git_bin_path);
	cfg_int(r, git, "catfile_cache_size", 0, 100000, &cfg->catfile_cache_size);
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
		cfg_duration(r, http, "read_timeout", &cfg->gitlab_read_timeout_ms);
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

static void ignore_unread(const char *path, unsigned line, unsigned col, void *data)
{
	log_msgf(LOG_DEBUG, "%s:%u: ignoring unknown config key \"%s\"", (const char *)data, line, path);
}

int gitaly_config_load(struct gitaly_config *cfg, const char *path, struct strbuf *err)
{
	struct toml_table *root = NULL;
	struct cfg_reader r;
	struct toml_table *t;
	struct stat st;

	memset(cfg, 0, sizeof(*cfg));
	cfg->file = xstrdup(path);
	cfg->graceful_restart_timeout_ms = 60000;
	cfg->catfile_cache_size = 100;
	cfg->upload_pack_negotiation_ms = 10 * 60 * 1000;
	cfg->upload_archive_negotiation_ms = 60 * 1000;
	cfg->gitlab_read_timeout_ms = 0;

	if (toml_parse_file(path, MAX_CONFIG_SIZE, &root, err) < 0)
		return -1;
	cfg_reader_init(&r, path);
	cfg_string(&r, root, "socket_path", &cfg->socket_path);
	cfg_string(&r, root, "listen_addr", &cfg->listen_addr);
	cfg_string(&r, root, "tls_listen_addr", &cfg->tls_listen_addr);
	cfg_string(&r, root, "prometheus_listen_addr", &cfg->prometheus_listen_addr);
	cfg_string(&r, root, "bin_dir", &cfg->bin_dir);
	cfg_string(&r, root, "runtime_dir", &cfg->runtime_dir);
	cfg_duration(&r, root, "graceful_restart_timeout", &cfg->graceful_restart_timeout_ms);
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

	if (!cfg_failed(&r)) {
		if (!cfg->socket_path && !cfg->listen_addr && !cfg->tls_listen_addr)
			cfg_errorf(&r, NULL, NULL, "no listener: set socket_path, listen_addr or tls_listen_addr");
		else if (!cfg->nr_storages)
			cfg_errorf(&r, NULL, NULL, "at least one [[storage]] is required");
		else if (!cfg->bin_dir || !*cfg->bin_dir)
			cfg_errorf(&r, NULL, NULL, "\"bin_dir\" is required");
		else if (stat(cfg->bin_dir, &st) < 0 || !S_ISDIR(st.st_mode))
			cfg_errorf(&r, root, "bin_dir", "\"%s\" is not a directory", cfg->bin_dir);
		else if (cfg->tls_listen_addr && *cfg->tls_listen_addr)
			cfg_errorf(&r, root, "tls_listen_addr", "TLS listeners are not supported yet");
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
		toml_for_each_unread(root, ignore_unread, (void *)path);
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
		&cfg->prometheus_listen_addr, &cfg->bin_dir, &cfg->runtime_dir, &cfg->auth_token,
		&cfg->git_bin_path, &cfg->custom_hooks_dir, &cfg->gitlab_shell_dir, &cfg->gitlab_url,
		&cfg->gitlab_relative_url_root, &cfg->gitlab_secret, &cfg->gitlab_http_user,
		&cfg->gitlab_http_password, &cfg->gitlab_ca_file, &cfg->gitlab_ca_path,
		&cfg->log_dir, &cfg->log_format, &cfg->log_level,
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

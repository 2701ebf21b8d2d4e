/* `gitaly configuration validate`: upstream's structured checks, on the raw TOML tree. */
#include "core/config.h"
#include "config/reader.h"
#include "config/command.h"
#include "h2/io.h"
#include "config/toml.h"
#include "base/util.h"

#include <jansson.h>

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void add_error(json_t *errors, const char *msg, const char *k1, const char *k2, const char *k3)
{
	json_t *e = json_object(), *key = json_array();
	const char *ks[] = { k1, k2, k3 };
	for (size_t i = 0; i < ARRAY_SIZE(ks) && ks[i]; i++)
		json_array_append_new(key, json_string(ks[i]));
	if (json_array_size(key))
		json_object_set_new(e, "key", key);
	else
		json_decref(key);
	json_object_set_new(e, "message", json_string(msg));
	json_array_append_new(errors, e);
}

static const char *tree_string(struct toml_table *t, const char *key)
{
	const char *s = NULL;
	if (t && toml_get_string(t, key, &s, NULL) == 0)
		return s;
	return NULL;
}

/* upstream's DirExists: `doesn't exist: "<path>"` or `not a dir: "<path>"` */
static void dir_exists(json_t *errors, const char *path, const char *k1, const char *k2, const char *k3)
{
	struct stat st;
	struct strbuf sb = STRBUF_INIT;
	if (!path)
		path = "";
	if (stat(path, &st) < 0)
		strbuf_addf(&sb, "doesn't exist: \"%s\"", path);
	else if (!S_ISDIR(st.st_mode))
		strbuf_addf(&sb, "not a dir: \"%s\"", path);
	if (sb.len)
		add_error(errors, sb.buf, k1, k2, k3);
	strbuf_release(&sb);
}

/* upstream's FileExists: `doesn't exist: "<path>"` or `not a file: "<path>"` */
static void file_exists(json_t *errors, const char *path, const char *k1, const char *k2, const char *k3)
{
	struct stat st;
	struct strbuf sb = STRBUF_INIT;
	if (stat(path, &st) < 0)
		strbuf_addf(&sb, "doesn't exist: \"%s\"", path);
	else if (!S_ISREG(st.st_mode))
		strbuf_addf(&sb, "not a file: \"%s\"", path);
	if (sb.len)
		add_error(errors, sb.buf, k1, k2, k3);
	strbuf_release(&sb);
}

static int64_t tree_int(struct toml_table *t, const char *key)
{
	int64_t v = 0;
	if (t)
		toml_get_int(t, key, &v);
	return v;
}

/* `not in range: <v> is not greater than or equal to <min>` (`greater than` when strict) */
static void int_at_least(json_t *errors, int64_t v, int64_t min, int strict, const char *k1, const char *k2,
			 const char *k3)
{
	char msg[160];
	if (strict ? v > min : v >= min)
		return;
	snprintf(msg, sizeof(msg), "not in range: %lld is not greater than %s%lld", (long long)v,
		 strict ? "" : "or equal to ", (long long)min);
	add_error(errors, msg, k1, k2, k3);
}

static void validate_git(json_t *errors, struct toml_table *root)
{
	struct toml_table *git = NULL;
	struct toml_array *arr = NULL;
	if (toml_get_table(root, "git", &git) < 0 || toml_get_tables(git, "config", &arr) < 0)
		return;
	for (size_t i = 0; i < toml_array_len(arr); i++) {
		const char *key = tree_string(toml_array_table(arr, i), "key");
		struct strbuf sb = STRBUF_INIT;
		if (!key || !*key)
			strbuf_addstr(&sb, "not set");
		else if (strchr(key, '='))
			strbuf_addf(&sb, "key \"%s\" cannot contain \"=\"", key);
		else if (!strchr(key, '.'))
			strbuf_addf(&sb, "key \"%s\" must contain at least one section", key);
		if (sb.len)
			add_error(errors, sb.buf, "git", "config", "key");
		strbuf_release(&sb);
	}
}

/* upstream's TLS.Validate (docs/technical/tls.md): both files exist, then they load as a pair. */
static void validate_tls(json_t *errors, struct toml_table *root)
{
	struct toml_table *t = NULL;
	const char *cert, *key;
	size_t before = json_array_size(errors);
	char msg[512];
	struct ssl_ctx_st *ctx;

	toml_get_table(root, "tls", &t);
	cert = tree_string(t, "certificate_path");
	key = tree_string(t, "key_path");
	if ((!cert || !*cert) && (!key || !*key))
		return;
	file_exists(errors, cert ? cert : "", "tls", "certificate_path", NULL);
	file_exists(errors, key ? key : "", "tls", "key_path", NULL);
	if (json_array_size(errors) != before)
		return;
	ctx = tls_server_ctx_new(cert, key, msg, sizeof(msg));
	if (ctx) {
		tls_ctx_free(ctx);
		return;
	}
	{
		struct strbuf sb = STRBUF_INIT;
		strbuf_addf(&sb, "loading x509 keypair: %s", msg);
		add_error(errors, sb.buf, "tls",
			  !strncmp(msg, "loading certificate", 19) ? "certificate_path" : "key_path", NULL);
		strbuf_release(&sb);
	}
}

static void validate_gitlab(json_t *errors, struct toml_table *root)
{
	struct toml_table *gl = NULL, *shell = NULL;
	const char *url, *secret, *secret_file, *shell_dir;
	struct strbuf def = STRBUF_INIT;

	toml_get_table(root, "gitlab", &gl);
	toml_get_table(root, "gitlab-shell", &shell);
	url = tree_string(gl, "url");
	secret = tree_string(gl, "secret");
	secret_file = tree_string(gl, "secret_file");
	shell_dir = tree_string(shell, "dir");
	if (cfg_blank(url))
		add_error(errors, "blank or empty", "gitlab", "url", NULL);
	if (secret && *secret && secret_file && *secret_file)
		add_error(errors, "ambiguous secret configuration", "gitlab", "secret", "secret_file");
	if (!secret || !*secret) {
		/* upstream's default: <gitlab-shell dir>/.gitlab_shell_secret */
		if (!secret_file || !*secret_file) {
			if (shell_dir && *shell_dir)
				strbuf_addf(&def, "%s/", shell_dir);
			strbuf_addstr(&def, ".gitlab_shell_secret");
			secret_file = def.buf;
		}
		file_exists(errors, secret_file, "gitlab", "secret_file", NULL);
	}
	dir_exists(errors, shell_dir, "gitlab-shell", "dir", NULL);
	strbuf_release(&def);
}

static void validate_concurrency(json_t *errors, struct toml_table *root)
{
	struct toml_array *arr = NULL;
	if (toml_get_tables(root, "concurrency", &arr) < 0)
		return;
	for (size_t i = 0; i < toml_array_len(arr); i++) {
		struct toml_table *t = toml_array_table(arr, i);
		bool adaptive = false;
		char idx[32];
		snprintf(idx, sizeof(idx), "[%zu]", i);
		int_at_least(errors, tree_int(t, "max_per_repo"), 0, 0, "concurrency", idx, "max_per_repo");
		int_at_least(errors, tree_int(t, "max_queue_size"), 0, 0, "concurrency", idx, "max_queue_size");
		toml_get_bool(t, "adaptive", &adaptive);
		if (adaptive) {
			int_at_least(errors, tree_int(t, "min_limit"), 0, 1, "concurrency", idx, "min_limit");
			int_at_least(errors, tree_int(t, "max_limit"), tree_int(t, "initial_limit"), 0, "concurrency", idx,
				     "max_limit");
			int_at_least(errors, tree_int(t, "initial_limit"), tree_int(t, "min_limit"), 0, "concurrency", idx,
				     "initial_limit");
		}
	}
}

/* [daily_maintenance] as upstream's DailyJob.Validate: "not in range: 24 out of [0, 23]", unknown storages. */
static void validate_daily(json_t *errors, struct toml_table *root, struct toml_array *storages)
{
	struct toml_table *t = NULL;
	struct toml_array *names = NULL;
	bool disabled = false;
	const char *s;
	uint64_t ns = 0;
	char msg[160];

	if (toml_get_table(root, "daily_maintenance", &t) < 0 || !t)
		return;
	toml_get_bool(t, "disabled", &disabled);
	if (disabled)
		return;
	if (toml_get(t, "start_hour") && (tree_int(t, "start_hour") < 0 || tree_int(t, "start_hour") > 23)) {
		snprintf(msg, sizeof(msg), "not in range: %lld out of [0, 23]", (long long)tree_int(t, "start_hour"));
		add_error(errors, msg, "daily_maintenance", "start_hour", NULL);
	}
	if (toml_get(t, "start_minute") && (tree_int(t, "start_minute") < 0 || tree_int(t, "start_minute") > 59)) {
		snprintf(msg, sizeof(msg), "not in range: %lld out of [0, 59]", (long long)tree_int(t, "start_minute"));
		add_error(errors, msg, "daily_maintenance", "start_minute", NULL);
	}
	if ((s = tree_string(t, "duration")) && parse_go_duration(s, &ns) == 0 && ns > 24ull * 3600 * 1000000000) {
		struct strbuf d = STRBUF_INIT;
		format_go_duration(&d, (int64_t)ns);
		snprintf(msg, sizeof(msg), "not in range: %s out of [0s, 24h0m0s]", d.buf);
		add_error(errors, msg, "daily_maintenance", "duration", NULL);
		strbuf_release(&d);
	}
	if (toml_get_array(t, "storages", &names) < 0 || !names)
		return;
	for (size_t i = 0; i < toml_array_len(names); i++) {
		const char *name;
		size_t nlen;
		bool found = false;
		char idx[32];
		if (toml_value_string(toml_array_at(names, i), &name, &nlen) < 0)
			continue;
		for (size_t j = 0; storages && j < toml_array_len(storages); j++) {
			const char *have = tree_string(toml_array_table(storages, j), "name");
			found |= have && !strcmp(have, name);
		}
		if (found)
			continue;
		snprintf(idx, sizeof(idx), "[%zu]", i);
		snprintf(msg, sizeof(msg), "doesn't exist: \"%s\"", name);
		add_error(errors, msg, "daily_maintenance", "storages", idx);
	}
}

/* [pack_objects_cache] as upstream's StreamCacheConfig.Validate: only when enabled, max_age >= 0. */
static void validate_pack_objects_cache(json_t *errors, struct toml_table *root)
{
	struct toml_table *t = NULL;
	bool enabled = false;
	const char *s;
	uint64_t ns = 0;

	if (toml_get_table(root, "pack_objects_cache", &t) < 0 || !t)
		return;
	toml_get_bool(t, "enabled", &enabled);
	if (!enabled)
		return;
	if ((s = tree_string(t, "max_age")) && s[0] == '-' && parse_go_duration(s + 1, &ns) == 0 && ns) {
		struct strbuf d = STRBUF_INIT, msg = STRBUF_INIT;
		format_go_duration(&d, -(int64_t)ns);
		strbuf_addf(&msg, "not in range: %s is not greater than or equal to 0s", d.buf);
		add_error(errors, msg.buf, "pack_objects_cache", "max_age", NULL);
		strbuf_release(&d);
		strbuf_release(&msg);
	}
}

int gitaly_config_validate_text(const char *buf, size_t len, json_t *errors, struct strbuf *err)
{
	struct toml_table *root = NULL;
	struct toml_array *storages = NULL;
	const char *s;

	if (toml_parse(buf, len, "<stdin>", &root, err) < 0)
		return -1;
	if (cfg_config_command(root, err) < 0) {
		toml_free(root);
		return -2;
	}
	if (!tree_string(root, "socket_path") && !tree_string(root, "listen_addr") &&
	    !tree_string(root, "tls_listen_addr"))
		add_error(errors, "none of \"socket_path\", \"listen_addr\" or \"tls_listen_addr\" is set", NULL, NULL,
			  NULL);
	dir_exists(errors, tree_string(root, "bin_dir"), "bin_dir", NULL, NULL);
	if ((s = tree_string(root, "runtime_dir")) && *s)
		dir_exists(errors, s, "runtime_dir", NULL, NULL);
	validate_git(errors, root);
	if (toml_get_tables(root, "storage", &storages) == 0) {
		for (size_t i = 0; i < toml_array_len(storages); i++) {
			struct toml_table *t = toml_array_table(storages, i);
			const char *name = tree_string(t, "name");
			char idx[32];
			snprintf(idx, sizeof(idx), "[%zu]", i);
			if (!name || !*name)
				add_error(errors, "not set", "storage", idx, "name");
			dir_exists(errors, tree_string(t, "path"), "storage", idx, "path");
		}
	}
	validate_tls(errors, root);
	validate_gitlab(errors, root);
	validate_daily(errors, root, storages);
	validate_concurrency(errors, root);
	validate_pack_objects_cache(errors, root);
	toml_free(root);
	return 0;
}

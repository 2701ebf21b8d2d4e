/* Custom hooks of a hook run: finding them, their environment, running them one by one. */
#include "hooks/run.h"
#include "base/log.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- custom hooks --- */

static int valid_hook(const char *path)
{
	struct stat st;
	size_t n = strlen(path);
	if (n && path[n - 1] == '~')
		return 0;
	if (stat(path, &st) < 0 || S_ISDIR(st.st_mode))
		return 0;
	return access(path, X_OK) == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Executable entries of `dir`, sorted by name; a missing directory has none. */
static int find_hooks_in(const char *dir, struct strvec *out, struct strbuf *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct strvec names = STRVEC_INIT;
	if (!d) {
		if (errno == ENOENT)
			return 0;
		strbuf_addf(err, "open %s: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		strvec_pushf(&names, "%s/%s", dir, de->d_name);
	}
	closedir(d);
	if (names.nr)
		qsort(names.v, names.nr, sizeof(*names.v), cmp_str);
	for (size_t i = 0; i < names.nr; i++)
		if (valid_hook(names.v[i]))
			strvec_push(out, names.v[i]);
	strvec_clear(&names);
	return 0;
}

static int find_custom_hooks(struct hook_run *r, struct strbuf *err)
{
	const char *name = hook_name(r->kind);
	struct strbuf p = STRBUF_INIT;
	int rc = 0;

	strvec_clear(&r->hooks);
	r->next_hook = 0;
	strbuf_addf(&p, "%s/custom_hooks/%s", r->repo_path.buf, name);
	if (valid_hook(p.buf))
		strvec_push(&r->hooks, p.buf);
	strbuf_addstr(&p, ".d");
	rc = find_hooks_in(p.buf, &r->hooks, err);
	if (rc == 0 && r->g->cfg.custom_hooks_dir && *r->g->cfg.custom_hooks_dir) {
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/%s.d", r->g->cfg.custom_hooks_dir, name);
		rc = find_hooks_in(p.buf, &r->hooks, err);
	}
	strbuf_release(&p);
	return rc;
}

/* Set KEY=value, replacing an earlier value as exec.Cmd's de-duplication would. */
static void env_set(struct strvec *env, const char *kv)
{
	const char *eq = strchr(kv, '=');
	struct strbuf prefix = STRBUF_INIT;
	if (!eq)
		return;
	strbuf_add(&prefix, kv, (size_t)(eq - kv) + 1);
	strvec_remove_prefix(env, prefix.buf);
	strvec_push(env, kv);
	strbuf_release(&prefix);
}

static void env_setf(struct strvec *env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void env_setf(struct strvec *env, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	env_set(env, sb.buf);
	strbuf_release(&sb);
}

/* Variables a custom hook inherits from git's environment (upstream's allow-list). */
static const char *const exported_env[] = {
	"HOME", "PATH", "LD_LIBRARY_PATH", "TZ", "GIT_TRACE", "GIT_TRACE_PACK_ACCESS", "GIT_TRACE_PACKET",
	"GIT_TRACE_PERFORMANCE", "GIT_TRACE_SETUP", "GIT_EXEC_PATH", "all_proxy", "http_proxy",
	"HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY",
	"GITALY_TESTING_ENABLE_ALL_FEATURE_FLAGS", NULL,
};

static int env_exported(const char *kv)
{
	for (const char *const *e = exported_env; *e; e++) {
		size_t n = strlen(*e);
		if (!strncmp(kv, *e, n) && kv[n] == '=')
			return 1;
	}
	return 0;
}

static void custom_hooks_env(struct hook_run *r, struct strvec *env)
{
	const struct hook_payload *p = &r->payload;
	const Gitaly__Repository *prepo = p->repo;
	const char *objdir = hook_env_lookup(r->env.v, r->env.nr, "GIT_OBJECT_DIRECTORY", 1);
	const char *alts = hook_env_lookup(r->env.v, r->env.nr, "GIT_ALTERNATE_OBJECT_DIRECTORIES", 1);
	const char *path = hook_env_lookup(r->env.v, r->env.nr, "PATH", 1);
	const char *slash = strrchr(r->g->git_path, '/');

	strvec_pushv(env, r->g->base_env.v);
	for (size_t i = 0; i < r->env.nr; i++)
		if (env_exported(r->env.v[i]))
			env_set(env, r->env.v[i]);
	if (r->push_options.nr) {
		env_setf(env, "GIT_PUSH_OPTION_COUNT=%zu", r->push_options.nr);
		for (size_t i = 0; i < r->push_options.nr; i++)
			env_setf(env, "GIT_PUSH_OPTION_%zu=%s", i, r->push_options.v[i]);
	}
	if (objdir && *objdir)
		env_setf(env, "GIT_OBJECT_DIRECTORY=%s", objdir);
	else if (prepo->git_object_directory && *prepo->git_object_directory)
		env_setf(env, "GIT_OBJECT_DIRECTORY=%s/%s", r->payload_repo_path.buf, prepo->git_object_directory);
	if (alts && *alts) {
		env_setf(env, "GIT_ALTERNATE_OBJECT_DIRECTORIES=%s", alts);
	} else if (prepo->n_git_alternate_object_directories) {
		struct strbuf sb = STRBUF_INIT;
		strbuf_addstr(&sb, "GIT_ALTERNATE_OBJECT_DIRECTORIES=");
		for (size_t i = 0; i < prepo->n_git_alternate_object_directories; i++)
			strbuf_addf(&sb, "%s%s/%s", i ? ":" : "", r->payload_repo_path.buf,
				    prepo->git_alternate_object_directories[i]);
		env_set(env, sb.buf);
		strbuf_release(&sb);
	}
	/* custom hooks must find the git gitaly runs */
	if (slash) {
		if (!path)
			path = getenv("PATH");
		env_setf(env, "PATH=%.*s:%s", (int)(slash - r->g->git_path), r->g->git_path, path ? path : "");
	}
	env_setf(env, "GIT_DIR=%s", r->payload_repo_path.buf);
	env_setf(env, "GL_REPOSITORY=%s", prepo->gl_repository ? prepo->gl_repository : "");
	env_setf(env, "GL_PROJECT_PATH=%s", prepo->gl_project_path ? prepo->gl_project_path : "");
	env_setf(env, "GL_ID=%s", p->has_user ? p->userid : "");
	env_setf(env, "GL_USERNAME=%s", p->has_user ? p->username : "");
	env_setf(env, "GL_PROTOCOL=%s", p->has_user ? p->protocol : "");
}

static void hook_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct hook_run *r = git_cmd_user(cmd);
	if (!r->cancelled)
		r->on_output(r->arg, 1, buf, len);
}

static void hook_stderr(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct hook_run *r = git_cmd_user(cmd);
	if (!r->cancelled)
		r->on_output(r->arg, 2, buf, len);
}

static void run_next_custom_hook(struct hook_run *r);

static void hook_exit(struct git_cmd *cmd, int status)
{
	struct hook_run *r = git_cmd_user(cmd);
	const char *file = r->hooks.v[r->next_hook];
	r->cmd = NULL;
	if (status != 0) {
		struct strbuf q = STRBUF_INIT;
		hooks_quote(&q, file, strlen(file));
		r->res.exit_code = status > 0 ? status : -1;
		if (status > 0)
			hook_run_fail(r, HOOK_FAIL_CUSTOM, GRPC_INTERNAL,
				 "executing custom hooks: error executing %s: exit status %d", q.buf, status);
		else {
			/* Go words it "signal: killed" */
			char sig[64];
			snprintf(sig, sizeof(sig), "%s", strsignal(-status));
			if (sig[0] >= 'A' && sig[0] <= 'Z')
				sig[0] = (char)(sig[0] - 'A' + 'a');
			hook_run_fail(r, HOOK_FAIL_CUSTOM, GRPC_INTERNAL,
				 "executing custom hooks: error executing %s: signal: %s", q.buf, sig);
		}
		strbuf_release(&q);
		return;
	}
	r->next_hook++;
	run_next_custom_hook(r);
}

static const struct git_cmd_ops hook_cmd_ops = {
	.on_stdout = hook_stdout,
	.on_stderr = hook_stderr,
	.on_exit = hook_exit,
};

static void run_next_custom_hook(struct hook_run *r)
{
	struct strvec argv = STRVEC_INIT, env = STRVEC_INIT;
	struct git_cmd_spec spec = { 0 };
	int with_stdin = r->kind != HOOK_KIND_UPDATE;
	int rc;

	if (r->next_hook >= r->hooks.nr) {
		r->step++;
		hook_run_advance(r);
		return;
	}
	strvec_push(&argv, r->hooks.v[r->next_hook]);
	if (r->kind == HOOK_KIND_UPDATE)
		strvec_pushl(&argv, r->ref, r->old_value, r->new_value, NULL);
	custom_hooks_env(r, &env);
	spec.argv = argv.v;
	spec.env = env.v;
	spec.cwd = r->repo_path.buf;
	spec.pipe_stdin = with_stdin;
	spec.pipe_stdout = 1;
	rc = git_cmd_spawn(r->g->loop, &spec, &hook_cmd_ops, r, &r->cmd);
	strvec_clear(&argv);
	strvec_clear(&env);
	if (rc < 0) {
		struct strbuf q = STRBUF_INIT;
		hooks_quote(&q, r->hooks.v[r->next_hook], strlen(r->hooks.v[r->next_hook]));
		r->res.exit_code = -1;
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "executing custom hooks: error executing %s: %s",
			 q.buf, uv_strerror(rc));
		strbuf_release(&q);
		return;
	}
	if (r->output_paused)
		git_cmd_pause_stdout(r->cmd);
	if (with_stdin) {
		if (r->changes.len)
			git_cmd_write_stdin(r->cmd, r->changes.buf, r->changes.len);
		git_cmd_close_stdin(r->cmd);
	}
}

void hook_step_custom(struct hook_run *r)
{
	struct strbuf err = STRBUF_INIT;
	if (find_custom_hooks(r, &err) < 0) {
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "creating custom hooks executor: %s", err.buf);
		strbuf_release(&err);
		return;
	}
	run_next_custom_hook(r);
}


/* --- which hooks have work (hook_mask_needed) --- */

/* 1 unless `dir` is missing or empty: what is inside is looked at when the hook runs. */
static int dir_has_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int found = 0;
	if (!d)
		return errno != ENOENT && errno != ENOTDIR;   /* unreadable: let the hook report it */
	while (!found && (de = readdir(d)))
		found = strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return found;
}

static int custom_hooks_present(struct gitaly *g, const char *repo_dir, enum hook_kind k)
{
	const char *name = hook_name(k);
	struct strbuf p = STRBUF_INIT;
	struct stat st;
	int found;

	strbuf_addf(&p, "%s/custom_hooks/%s", repo_dir, name);
	found = lstat(p.buf, &st) == 0;
	if (!found) {
		strbuf_addstr(&p, ".d");
		found = dir_has_entries(p.buf);
	}
	if (!found && g->cfg.custom_hooks_dir && *g->cfg.custom_hooks_dir) {
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/%s.d", g->cfg.custom_hooks_dir, name);
		found = dir_has_entries(p.buf);
	}
	strbuf_release(&p);
	return found;
}

unsigned hook_mask_needed(struct gitaly *g, unsigned requested, int has_tx, const char *repo_dir)
{
	static const struct {
		unsigned bit;
		enum hook_kind kind;
	} receive[] = {
		{ HOOK_PRE_RECEIVE, HOOK_KIND_PRE_RECEIVE },
		{ HOOK_UPDATE, HOOK_KIND_UPDATE },
		{ HOOK_POST_RECEIVE, HOOK_KIND_POST_RECEIVE },
	};
	unsigned mask = requested;

	if (has_tx)
		return mask;
	mask &= ~(unsigned)HOOK_REFERENCE_TRANSACTION;
	if (gitlab_configured(g))
		return mask;
	for (size_t i = 0; i < ARRAY_SIZE(receive); i++)
		if ((mask & receive[i].bit) && !(repo_dir && custom_hooks_present(g, repo_dir, receive[i].kind)))
			mask &= ~receive[i].bit;
	return mask;
}

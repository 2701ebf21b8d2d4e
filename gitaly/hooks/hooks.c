/* pre-receive, update and post-receive as one asynchronous hook run: GitLab calls, custom hooks, votes (spec §3.4). */
#include "hooks/hooks.h"
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

/* --- a hook run --- */

enum run_step {
	STEP_START,
	STEP_VALIDATE,
	STEP_ALLOWED,
	STEP_CUSTOM_PRE,
	STEP_PRE_RECEIVE,
	STEP_POST_RECEIVE,
	STEP_CUSTOM_POST,
	STEP_SYNC,
	STEP_DONE,
};

struct hook_run {
	struct gitaly *g;
	enum hook_kind kind;
	const Gitaly__Repository *repo;
	struct strvec env;
	struct strvec push_options;
	struct strbuf changes;
	char *ref, *old_value, *new_value;
	struct grpc_call *tx_call;
	void (*on_output)(void *arg, int fd, const char *buf, size_t len);
	void (*done)(void *arg, const struct hook_result *res);
	void *arg;

	struct hook_payload payload;
	int have_payload;
	struct strbuf repo_path;          /* the request repository */
	struct strbuf payload_repo_path;  /* the payload's repository (GIT_DIR of custom hooks) */
	/* object directories reported to /allowed, relative to the repository */
	char *rel_object_dir;
	struct strvec rel_alternates;

	enum run_step step;
	struct strvec hooks;              /* custom hooks still to run */
	size_t next_hook;
	struct git_cmd *cmd;
	struct gitlab_req *http;
	int vote_pending;
	int cancelled;
	int output_paused;
	uv_timer_t defer;
	struct hook_result res;
};

static void run_advance(struct hook_run *r);

static void run_closed(uv_handle_t *h)
{
	struct hook_run *r = h->data;
	strvec_clear(&r->env);
	strvec_clear(&r->push_options);
	strbuf_release(&r->changes);
	free(r->ref);
	free(r->old_value);
	free(r->new_value);
	if (r->have_payload)
		hook_payload_release(&r->payload);
	strbuf_release(&r->repo_path);
	strbuf_release(&r->payload_repo_path);
	free(r->rel_object_dir);
	strvec_clear(&r->rel_alternates);
	strvec_clear(&r->hooks);
	strbuf_release(&r->res.msg);
	strbuf_release(&r->res.api_msg);
	free(r);
}

static void run_free(struct hook_run *r)
{
	uv_close((uv_handle_t *)&r->defer, run_closed);
}

static void on_defer(uv_timer_t *t)
{
	run_advance(t->data);
}

/* Continue from the loop rather than the current stack (keeps callbacks asynchronous). */
static void run_continue_later(struct hook_run *r)
{
	uv_timer_start(&r->defer, on_defer, 0, 0);
}

static void run_finish(struct hook_run *r)
{
	r->step = STEP_DONE;
	/* whatever `done` does, a later hook_run_cancel() must not free us twice */
	r->cancelled = 1;
	if (r->res.fail == HOOK_FAIL_NOT_ALLOWED) {
		r->res.user_id = r->have_payload && r->payload.userid ? r->payload.userid : "";
		r->res.protocol = r->have_payload && r->payload.protocol ? r->payload.protocol : "";
	}
	r->done(r->arg, &r->res);
	run_free(r);
}

static void on_tx_stopped(void *arg, enum grpc_code code, const char *msg)
{
	if (code != GRPC_OK)
		log_msgf(LOG_WARN, "stopping the transaction failed: %s", msg ? msg : grpc_code_name(code));
}

static void run_fail(struct hook_run *r, enum hook_fail kind, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void run_fail(struct hook_run *r, enum hook_fail kind, enum grpc_code code, const char *fmt, ...)
{
	va_list ap;
	r->res.fail = kind;
	r->res.code = code;
	strbuf_reset(&r->res.msg);
	va_start(ap, fmt);
	strbuf_vaddf(&r->res.msg, fmt, ap);
	va_end(ap);
	if (r->step < STEP_SYNC && r->have_payload && r->payload.has_tx && r->payload.tx_primary) {
		/* the secondaries wait on the synchronisation vote: tell them to give up */
		struct tx_info tx;
		memset(&tx, 0, sizeof(tx));
		tx.id = r->payload.tx_id;
		tx.primary = 1;
		tx.backchannel_id = r->payload.tx_backchannel_id;
		snprintf(tx.node, sizeof(tx.node), "%s", r->payload.tx_node ? r->payload.tx_node : "");
		log_msgf(LOG_WARN, "hook failed on the primary, stopping transaction %llu: %s",
			 (unsigned long long)tx.id, r->res.msg.buf);
		gitaly_tx_stop_info(r->g, &tx, on_tx_stopped, NULL);
	}
	run_finish(r);
}

static const char *hook_name(enum hook_kind k)
{
	switch (k) {
	case HOOK_KIND_PRE_RECEIVE: return "pre-receive";
	case HOOK_KIND_UPDATE: return "update";
	default: return "post-receive";
	}
}

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
			run_fail(r, HOOK_FAIL_CUSTOM, GRPC_INTERNAL,
				 "executing custom hooks: error executing %s: exit status %d", q.buf, status);
		else {
			/* Go words it "signal: killed" */
			char sig[64];
			snprintf(sig, sizeof(sig), "%s", strsignal(-status));
			if (sig[0] >= 'A' && sig[0] <= 'Z')
				sig[0] = (char)(sig[0] - 'A' + 'a');
			run_fail(r, HOOK_FAIL_CUSTOM, GRPC_INTERNAL,
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
		run_advance(r);
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
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "executing custom hooks: error executing %s: %s",
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

static void step_custom_hooks(struct hook_run *r)
{
	struct strbuf err = STRBUF_INIT;
	if (find_custom_hooks(r, &err) < 0) {
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "creating custom hooks executor: %s", err.buf);
		strbuf_release(&err);
		return;
	}
	run_next_custom_hook(r);
}

/* --- GitLab API calls --- */

/* "application/json; charset=utf-8" -> 1 */
static int is_json_type(const char *ct, struct strbuf *why)
{
	size_t n;
	if (!ct || !*ct) {
		strbuf_addstr(why, "mime: no media type");
		return 0;
	}
	while (*ct == ' ')
		ct++;
	n = strcspn(ct, ";");
	while (n && ct[n - 1] == ' ')
		n--;
	if (n == 16 && !strncasecmp(ct, "application/json", 16))
		return 1;
	strbuf_add(why, ct, n);
	return 0;
}

/*
 * Turn a transport result into upstream's error, or 0 when there is a
 * response with a 2xx/3xx status to look at.
 */
static int api_error(long status, const struct strbuf *body, const char *error, struct strbuf *msg)
{
	json_t *o;
	if (!status) {
		strbuf_addstr(msg, "Internal API unreachable");
		return -1;
	}
	if (status >= 200 && status <= 399)
		return 0;
	o = json_loadb(body->buf, body->len, JSON_DISABLE_EOF_CHECK, NULL);
	if (json_is_object(o)) {
		const char *m = json_string_value(json_object_get(o, "message"));
		strbuf_addstr(msg, m ? m : "");
	} else {
		strbuf_addf(msg, "Internal API error (%ld)", status);
	}
	json_decref(o);
	return -1;
}

static void json_field(struct strbuf *sb, int *first, const char *key, const char *val, size_t len)
{
	if (!len)
		return;   /* omitempty */
	strbuf_addstr(sb, *first ? "{" : ",");
	*first = 0;
	strbuf_add_json_string(sb, key, strlen(key));
	strbuf_addch(sb, ':');
	strbuf_add_json_string(sb, val, len);
}


static void compute_object_dirs(struct hook_run *r)
{
	const char *objdir = hook_env_lookup(r->env.v, r->env.nr, "GIT_OBJECT_DIRECTORY", 1);
	const char *alts = hook_env_lookup(r->env.v, r->env.nr, "GIT_ALTERNATE_OBJECT_DIRECTORIES", 1);
	char real[PATH_MAX];

	strvec_clear(&r->rel_alternates);
	if (objdir && *objdir && alts && *alts && realpath(r->repo_path.buf, real)) {
		struct strbuf sb = STRBUF_INIT;
		const char *p = alts;
		hooks_rel_path(real, objdir, &sb);
		r->rel_object_dir = strbuf_detach(&sb, NULL);
		for (;;) {
			const char *colon = strchr(p, ':');
			char *one = colon ? xstrndup(p, (size_t)(colon - p)) : xstrdup(p);
			strbuf_reset(&sb);
			hooks_rel_path(real, one, &sb);
			strvec_push(&r->rel_alternates, sb.buf);
			free(one);
			if (!colon)
				break;
			p = colon + 1;
		}
		strbuf_release(&sb);
		return;
	}
	r->rel_object_dir = xstrdup(r->repo->git_object_directory ? r->repo->git_object_directory : "");
	for (size_t i = 0; i < r->repo->n_git_alternate_object_directories; i++)
		strvec_push(&r->rel_alternates, r->repo->git_alternate_object_directories[i]);
}

static void allowed_done(void *arg, long status, const char *ctype, const struct strbuf *body,
			 const char *error)
{
	struct hook_run *r = arg;
	struct strbuf msg = STRBUF_INIT, why = STRBUF_INIT;
	json_t *o = NULL;
	int ok = 0;

	r->http = NULL;
	if (api_error(status, body, error, &msg) < 0)
		goto refused;
	if (status != 200 && status != 300) {
		strbuf_addf(&msg, "gitlab api is not accessible: %ld", status);
		goto refused;
	}
	if (!is_json_type(ctype, &why)) {
		strbuf_addf(&msg, "/allowed endpoint respond with unsupported content type: %s", why.buf);
		goto refused;
	}
	o = json_loadb(body->buf, body->len, JSON_DISABLE_EOF_CHECK, NULL);
	if (!json_is_object(o)) {
		strbuf_addstr(&msg, "decoding response from /allowed endpoint: invalid JSON");
		goto refused;
	}
	ok = json_is_true(json_object_get(o, "status"));
	if (!ok) {
		const char *m = json_string_value(json_object_get(o, "message"));
		strbuf_addstr(&msg, m ? m : "");
		goto refused;
	}
	json_decref(o);
	strbuf_release(&why);
	strbuf_release(&msg);
	r->step++;
	run_advance(r);
	return;
refused:
	json_decref(o);
	strbuf_reset(&r->res.api_msg);
	strbuf_add(&r->res.api_msg, msg.buf, msg.len);
	run_fail(r, HOOK_FAIL_NOT_ALLOWED, GRPC_PERMISSION_DENIED, "GitLab: %s", msg.buf);
	strbuf_release(&why);
	strbuf_release(&msg);
}

static void refuse_before_request(struct hook_run *r, const char *fmt, const char *what)
{
	strbuf_reset(&r->res.api_msg);
	strbuf_addf(&r->res.api_msg, fmt, what);
	run_fail(r, HOOK_FAIL_NOT_ALLOWED, GRPC_PERMISSION_DENIED, "GitLab: %s", r->res.api_msg.buf);
}

/* A JSON array of strings as Go marshals a slice: an empty (nil) one is null. */
static void json_strings(struct strbuf *sb, const struct strvec *v)
{
	if (!v->nr) {
		strbuf_addstr(sb, "null");
		return;
	}
	strbuf_addch(sb, '[');
	for (size_t i = 0; i < v->nr; i++) {
		if (i)
			strbuf_addch(sb, ',');
		strbuf_add_json_string(sb, v->v[i], strlen(v->v[i]));
	}
	strbuf_addch(sb, ']');
}

static int all_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

static void step_allowed(struct hook_run *r)
{
	struct strbuf json = STRBUF_INIT, env = STRBUF_INIT, project = STRBUF_INIT, err = STRBUF_INIT;
	const char *glid = r->payload.userid;
	const char *username = "", *key_id = "", *user_id = "";
	int first = 1;

	compute_object_dirs(r);
	if (!strncmp(glid, "username-", 9)) {
		username = glid + 9;
	} else {
		const char *value = "";
		if (!strncmp(glid, "key-", 4))
			value = key_id = glid + 4;
		else if (!strncmp(glid, "user-", 5))
			value = user_id = glid + 5;
		if (!all_digits(value)) {
			struct strbuf q = STRBUF_INIT;
			hooks_quote(&q, glid, strlen(glid));
			refuse_before_request(r, "setting gl_id: gl_id=%s is invalid", q.buf);
			strbuf_release(&q);
			return;
		}
	}
	/* env: Go marshals the map with sorted keys; a nil slice is null */
	strbuf_addstr(&env, "{\"GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE\":");
	json_strings(&env, &r->rel_alternates);
	strbuf_addstr(&env, ",\"GIT_OBJECT_DIRECTORY_RELATIVE\":");
	strbuf_add_json_string(&env, r->rel_object_dir, strlen(r->rel_object_dir));
	strbuf_addch(&env, '}');
	for (const char *p = r->repo_path.buf; *p; p++)
		if (*p != '\'')
			strbuf_addch(&project, *p);

	json_field(&json, &first, "action", "git-receive-pack", 16);
	json_field(&json, &first, "gl_repository", r->repo->gl_repository, strlen(r->repo->gl_repository));
	json_field(&json, &first, "project", project.buf, project.len);
	json_field(&json, &first, "changes", r->changes.buf, r->changes.len);
	json_field(&json, &first, "protocol", r->payload.protocol, strlen(r->payload.protocol));
	json_field(&json, &first, "relative_path", r->repo->relative_path, strlen(r->repo->relative_path));
	json_field(&json, &first, "env", env.buf, env.len);
	json_field(&json, &first, "username", username, strlen(username));
	json_field(&json, &first, "key_id", key_id, strlen(key_id));
	json_field(&json, &first, "user_id", user_id, strlen(user_id));
	strbuf_addstr(&json, first ? "{}" : "}");

	r->http = gitlab_post(r->g, "/allowed", json.buf, allowed_done, r, &err);
	if (!r->http)
		refuse_before_request(r, "%s", err.buf);
	strbuf_release(&json);
	strbuf_release(&env);
	strbuf_release(&project);
	strbuf_release(&err);
}

static void pre_receive_done(void *arg, long status, const char *ctype, const struct strbuf *body,
			     const char *error)
{
	struct hook_run *r = arg;
	struct strbuf msg = STRBUF_INIT, why = STRBUF_INIT;
	json_t *o = NULL;

	r->http = NULL;
	if (api_error(status, body, error, &msg) < 0) {
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "calling pre_receive endpoint: http post to gitlab api /pre_receive endpoint: %s", msg.buf);
	} else if (status != 200) {
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "calling pre_receive endpoint: pre-receive call failed with status: %ld", status);
	} else if (!is_json_type(ctype, &why)) {
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "calling pre_receive endpoint: /pre_receive endpoint respond with unsupported content type: %s",
			 why.buf);
	} else if (!(o = json_loadb(body->buf, body->len, JSON_DISABLE_EOF_CHECK, NULL)) || !json_is_object(o)) {
		/* (json_is_object() is a macro: it must not see the call itself) */
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "calling pre_receive endpoint: decoding response from /pre_receive endpoint: invalid JSON");
	} else if (!json_is_true(json_object_get(o, "reference_counter_increased"))) {
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "%s", "");
	} else {
		r->step++;
		run_advance(r);
	}
	json_decref(o);
	strbuf_release(&msg);
	strbuf_release(&why);
}

static void step_pre_receive(struct hook_run *r)
{
	struct strbuf json = STRBUF_INIT, err = STRBUF_INIT;
	strbuf_addstr(&json, "{\"gl_repository\":");
	strbuf_add_json_string(&json, r->repo->gl_repository, strlen(r->repo->gl_repository));
	strbuf_addch(&json, '}');
	r->http = gitlab_post(r->g, "/pre_receive", json.buf, pre_receive_done, r, &err);
	if (!r->http)
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "calling pre_receive endpoint: http post to gitlab api /pre_receive endpoint: %s", err.buf);
	strbuf_release(&json);
	strbuf_release(&err);
}

/* Post-receive messages, formatted as upstream prints them for an 80 column terminal. */
#define MSG_WIDTH (80 - 8)
#define MSG_TEXT_WIDTH (MSG_WIDTH - 4)

static void center_line(struct strbuf *out, const char *s, size_t len)
{
	while (len && strchr(" \t\r\n\v\f", *s)) {
		s++;
		len--;
	}
	while (len && strchr(" \t\r\n\v\f", s[len - 1]))
		len--;
	if (len < MSG_WIDTH)
		for (size_t i = 0; i < (MSG_WIDTH - len) / 2; i++)
			strbuf_addch(out, ' ');
	strbuf_add(out, s, len);
}

static void print_alert(struct strbuf *out, const char *m)
{
	struct strbuf line = STRBUF_INIT;
	const char *p = m;
	for (int i = 0; i < MSG_WIDTH; i++)
		strbuf_addch(out, '=');
	strbuf_addstr(out, "\n\n");
	for (;;) {
		size_t n;
		while (*p && strchr(" \t\r\n\v\f", *p))
			p++;
		if (!*p)
			break;
		n = strcspn(p, " \t\r\n\v\f");
		if (line.len + 1 + n > MSG_TEXT_WIDTH) {
			center_line(out, line.buf, line.len);
			strbuf_addch(out, '\n');
			strbuf_reset(&line);
		}
		strbuf_add(&line, p, n);
		strbuf_addch(&line, ' ');
		p += n;
	}
	center_line(out, line.buf, line.len);
	strbuf_addstr(out, "\n\n");
	for (int i = 0; i < MSG_WIDTH; i++)
		strbuf_addch(out, '=');
	strbuf_release(&line);
}

static int print_messages(json_t *msgs, struct strbuf *out, struct strbuf *err)
{
	size_t i;
	json_t *m;
	if (!json_is_array(msgs))
		return 0;
	json_array_foreach(msgs, i, m) {
		const char *type = json_string_value(json_object_get(m, "type"));
		const char *text = json_string_value(json_object_get(m, "message"));
		strbuf_addch(out, '\n');
		if (!text)
			text = "";
		if (type && !strcmp(type, "basic")) {
			strbuf_addstr(out, text);
		} else if (type && !strcmp(type, "alert")) {
			print_alert(out, text);
		} else {
			strbuf_addf(err, "invalid message type: %s", type ? type : "");
			return -1;
		}
		strbuf_addstr(out, "\n\n");
	}
	return 0;
}

static void post_receive_done(void *arg, long status, const char *ctype, const struct strbuf *body,
			      const char *error)
{
	struct hook_run *r = arg;
	struct strbuf msg = STRBUF_INIT, why = STRBUF_INIT, out = STRBUF_INIT;
	json_t *o = NULL;

	r->http = NULL;
	if (api_error(status, body, error, &msg) < 0) {
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "GitLab: http post to gitlab api /post_receive endpoint: %s", msg.buf);
	} else if (status != 200) {
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "GitLab: post-receive call failed with status: %ld",
			 status);
	} else if (!is_json_type(ctype, &why)) {
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "GitLab: /post_receive endpoint respond with unsupported content type: %s", why.buf);
	} else if (!(o = json_loadb(body->buf, body->len, JSON_DISABLE_EOF_CHECK, NULL)) || !json_is_object(o)) {
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "GitLab: decoding response from /post_receive endpoint: invalid JSON");
	} else if (print_messages(json_object_get(o, "messages"), &out, &why) < 0) {
		if (out.len)
			r->on_output(r->arg, 1, out.buf, out.len);
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "error writing messages to stream: %s", why.buf);
	} else {
		if (out.len)
			r->on_output(r->arg, 1, out.buf, out.len);
		if (!json_is_true(json_object_get(o, "reference_counter_decreased"))) {
			run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "%s", "");
		} else {
			r->step++;
			run_advance(r);
		}
	}
	json_decref(o);
	strbuf_release(&msg);
	strbuf_release(&why);
	strbuf_release(&out);
}

static void step_post_receive(struct hook_run *r)
{
	struct strbuf json = STRBUF_INIT, err = STRBUF_INIT;
	/* Go marshals this map with sorted keys; no push options is null */
	strbuf_addstr(&json, "{\"changes\":");
	strbuf_add_json_string(&json, r->changes.buf, r->changes.len);
	strbuf_addstr(&json, ",\"gl_repository\":");
	strbuf_add_json_string(&json, r->repo->gl_repository, strlen(r->repo->gl_repository));
	strbuf_addstr(&json, ",\"identifier\":");
	strbuf_add_json_string(&json, r->payload.userid, strlen(r->payload.userid));
	strbuf_addstr(&json, ",\"push_options\":");
	json_strings(&json, &r->push_options);
	strbuf_addch(&json, '}');
	r->http = gitlab_post(r->g, "/post_receive", json.buf, post_receive_done, r, &err);
	if (!r->http)
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "GitLab: http post to gitlab api /post_receive endpoint: %s", err.buf);
	strbuf_release(&json);
	strbuf_release(&err);
}

/* --- the run's steps --- */

static void sync_vote_done(void *arg, enum grpc_code code, const char *msg)
{
	struct hook_run *r = arg;
	r->vote_pending = 0;
	if (r->cancelled) {
		run_free(r);
		return;
	}
	if (code != GRPC_OK) {
		run_fail(r, HOOK_FAIL_OTHER, code, "synchronizing %s hook: vote failed: %s", hook_name(r->kind),
			 msg ? msg : "");
		return;
	}
	r->step = STEP_DONE;
	run_finish(r);
}

static void step_sync(struct hook_run *r)
{
	struct strbuf text = STRBUF_INIT;
	uint8_t hash[20];
	if (!r->payload.has_tx) {
		run_finish(r);
		return;
	}
	strbuf_addf(&text, "synchronize %s hook", hook_name(r->kind));
	gitaly_sha1(text.buf, text.len, hash);
	strbuf_release(&text);
	r->vote_pending = 1;
	if (r->tx_call)
		gitaly_tx_vote(r->g, r->tx_call, TX_PHASE_SYNCHRONIZED, hash, sync_vote_done, r);
	else
		hook_payload_vote(r->g, &r->payload, TX_PHASE_SYNCHRONIZED, hash, sync_vote_done, r);
}

/* Validation upstream does on the primary before anything else. */
static int step_validate(struct hook_run *r)
{
	int gitlab = gitlab_configured(r->g);
	const struct hook_payload *p = &r->payload;
	struct strbuf err = STRBUF_INIT;
	size_t hexlen = hook_payload_hexlen(p);

	switch (r->kind) {
	case HOOK_KIND_PRE_RECEIVE:
	case HOOK_KIND_POST_RECEIVE:
		if (!r->changes.len) {
			run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "hook got no reference updates");
			return -1;
		}
		if (!gitlab)
			break;
		if (r->kind == HOOK_KIND_PRE_RECEIVE && !*r->repo->gl_repository) {
			run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "repository not set");
			return -1;
		}
		if (!p->has_user) {
			run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "payload has no receive hooks info");
			return -1;
		}
		if (!*p->userid) {
			run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "user ID not set");
			return -1;
		}
		if (r->kind == HOOK_KIND_POST_RECEIVE && !*r->repo->gl_repository) {
			run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "repository not set");
			return -1;
		}
		if (r->kind == HOOK_KIND_PRE_RECEIVE && !*p->protocol) {
			run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "protocol not set");
			return -1;
		}
		break;
	case HOOK_KIND_UPDATE:
		if (!*r->ref) {
			run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "hook got no reference");
			return -1;
		}
		if (hooks_validate_hex(r->old_value, hexlen, &err) < 0) {
			run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "hook got invalid old value: %s", err.buf);
			strbuf_release(&err);
			return -1;
		}
		if (hooks_validate_hex(r->new_value, hexlen, &err) < 0) {
			run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "hook got invalid new value: %s", err.buf);
			strbuf_release(&err);
			return -1;
		}
		if (gitlab && !p->has_user) {
			run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "payload has no receive hooks info");
			return -1;
		}
		break;
	}
	return 0;
}

static int step_start(struct hook_run *r)
{
	struct strbuf err = STRBUF_INIT;
	enum grpc_code code;

	if (hook_payload_from_env(r->env.v, r->env.nr, &r->payload, &err) < 0) {
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "extracting hooks payload: %s", err.buf);
		strbuf_release(&err);
		return -1;
	}
	r->have_payload = 1;
	if (!hook_payload_is_primary(&r->payload)) {
		r->step = STEP_SYNC;
		return 0;
	}
	code = gitaly_locate(r->g, r->repo, 0, &r->repo_path, &err);
	if (code == GRPC_OK)
		code = gitaly_locate(r->g, r->payload.repo, LOCATE_NO_EXIST_CHECK, &r->payload_repo_path, &err);
	if (code != GRPC_OK) {
		run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "getting repo path: %s", err.buf);
		strbuf_release(&err);
		return -1;
	}
	r->step = STEP_VALIDATE;
	return 0;
}

/*
 * Steps in order; each either completes synchronously (the loop goes on) or
 * starts an asynchronous operation whose completion calls run_advance()
 * again. Failures finish the run through run_fail().
 */
static void run_advance(struct hook_run *r)
{
	int gitlab = gitlab_configured(r->g);
	for (;;) {
		switch (r->step) {
		case STEP_START:
			if (step_start(r) < 0)
				return;
			continue;
		case STEP_VALIDATE:
			if (step_validate(r) < 0)
				return;
			r->step = STEP_ALLOWED;
			continue;
		case STEP_ALLOWED:
			if (r->kind == HOOK_KIND_PRE_RECEIVE && gitlab) {
				step_allowed(r);
				return;
			}
			r->step++;
			continue;
		case STEP_CUSTOM_PRE:
			if (r->kind != HOOK_KIND_POST_RECEIVE) {
				step_custom_hooks(r);
				return;
			}
			r->step++;
			continue;
		case STEP_PRE_RECEIVE:
			if (r->kind == HOOK_KIND_PRE_RECEIVE && gitlab) {
				step_pre_receive(r);
				return;
			}
			r->step++;
			continue;
		case STEP_POST_RECEIVE:
			if (r->kind == HOOK_KIND_POST_RECEIVE && gitlab) {
				step_post_receive(r);
				return;
			}
			r->step++;
			continue;
		case STEP_CUSTOM_POST:
			if (r->kind == HOOK_KIND_POST_RECEIVE) {
				step_custom_hooks(r);
				return;
			}
			r->step++;
			continue;
		case STEP_SYNC:
			step_sync(r);
			return;
		case STEP_DONE:
			return;
		}
	}
}

struct hook_run *hook_run_start(struct gitaly *g, const struct hook_run_opts *o)
{
	struct hook_run *r = xcalloc(1, sizeof(*r));

	r->g = g;
	r->kind = o->kind;
	r->repo = o->repo;
	strvec_init(&r->env);
	for (size_t i = 0; i < o->nr_env; i++)
		strvec_push(&r->env, o->env[i] ? o->env[i] : "");
	strvec_init(&r->push_options);
	for (size_t i = 0; i < o->nr_push_options; i++)
		strvec_push(&r->push_options, o->push_options[i] ? o->push_options[i] : "");
	strbuf_init(&r->changes, 0);
	strbuf_add(&r->changes, o->changes, o->changes_len);
	r->ref = xstrdup(o->ref ? o->ref : "");
	r->old_value = xstrdup(o->old_value ? o->old_value : "");
	r->new_value = xstrdup(o->new_value ? o->new_value : "");
	r->tx_call = o->tx_call;
	r->on_output = o->on_output;
	r->done = o->done;
	r->arg = o->arg;
	strbuf_init(&r->repo_path, 0);
	strbuf_init(&r->payload_repo_path, 0);
	strvec_init(&r->rel_alternates);
	strvec_init(&r->hooks);
	strbuf_init(&r->res.msg, 0);
	strbuf_init(&r->res.api_msg, 0);
	r->res.code = GRPC_OK;
	uv_timer_init(g->loop, &r->defer);
	r->defer.data = r;
	r->step = STEP_START;
	run_continue_later(r);
	return r;
}

void hook_run_cancel(struct hook_run *r)
{
	if (!r || r->cancelled)
		return;
	r->cancelled = 1;
	uv_timer_stop(&r->defer);
	if (r->cmd) {
		git_cmd_detach(r->cmd);
		r->cmd = NULL;
	}
	if (r->http) {
		gitlab_cancel(r->http);
		r->http = NULL;
	}
	/* a vote cannot be called back; its callback frees the run */
	if (!r->vote_pending)
		run_free(r);
}

void hook_run_pause_output(struct hook_run *r)
{
	r->output_paused = 1;
	if (r->cmd)
		git_cmd_pause_stdout(r->cmd);
}

void hook_run_resume_output(struct hook_run *r)
{
	r->output_paused = 0;
	if (r->cmd)
		git_cmd_resume_stdout(r->cmd);
}

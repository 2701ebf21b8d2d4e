/* Building git command lines and environments the way upstream does
 * (docs/technical/gitaly-node.md, "Git command lines"; the hooks payload: hooks.md). */
#include "core/gitaly.h"
#include "core/vote.h"
#include "hooks/hooks.h"
#include "base/util.h"
#include "grpc/metadata.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* -c defaults for every git call; later entries win in git. */
static const char *const global_config[] = {
	"gc.auto=0",
	"maintenance.auto=0",
	"core.autocrlf=input",
	"core.useReplaceRefs=false",
	"core.fsync=objects,derived-metadata,reference",
	"core.fsyncMethod=fsync",
	"core.packedRefsTimeout=10000",
	"core.filesRefLockTimeout=1000",
	"core.bigFileThreshold=50m",
	/* never run code a repository's own config asks for */
	"core.fsmonitor=false",
	NULL,
};

static const char *const pack_config[] = {
	"pack.windowMemory=100m",
	"pack.writeReverseIndex=true",
	NULL,
};

static const char *const fsck_keys[] = { "badTimezone", "missingSpaceBeforeDate", "zeroPaddedFilemode", NULL };

struct subcmd_defaults {
	const char *name;
	const char *const *config;
	int pack;             /* add pack_config */
	const char *fsck;     /* prefix for fsck ignores ("receive.fsck." ...) */
	int no_end_of_options;
};

static const char *const upload_pack_cfg[] = {
	"uploadpack.allowFilter=true",
	"uploadpack.allowAnySHA1InWant=true",
	"uploadpack.hideRefs=refs/keep-around/",
	"uploadpack.hideRefs=refs/remotes/",
	"uploadpack.hideRefs=refs/tmp/",
	NULL,
};

static const char *const receive_pack_cfg[] = {
	"core.alternateRefsCommand=exit 0 #",
	"receive.advertisePushOptions=true",
	"receive.hideRefs=refs/environments/",
	"receive.hideRefs=refs/keep-around/",
	"receive.hideRefs=refs/merge-requests/",
	"receive.hideRefs=refs/pipelines/",
	"receive.hideRefs=refs/remotes/",
	"receive.hideRefs=refs/tmp/",
	"transfer.fsckObjects=true",
	NULL,
};

static const char *const fetch_cfg[] = {
	"core.alternateRefsCommand=exit 0 #",
	"fetch.writeCommitGraph=false",
	"http.followRedirects=false",
	"fetch.recurseSubmodules=no",
	"fetch.fsckObjects=true",
	NULL,
};

/* bitmaps speed up fetches; server info only serves dumb HTTP, which nothing here speaks */
static const char *const repack_cfg[] = { "repack.writeBitmaps=true", "repack.updateServerInfo=false", NULL };

static const char *const init_cfg[] = { "init.defaultBranch=main", "init.templateDir=", NULL };
static const char *const clone_cfg[] = { "init.templateDir=", "http.followRedirects=false", NULL };

static const struct subcmd_defaults subcmds[] = {
	{ "upload-pack", upload_pack_cfg, 1, NULL, 0 },
	{ "receive-pack", receive_pack_cfg, 1, "receive.fsck.", 0 },
	{ "fetch", fetch_cfg, 1, "fetch.fsck.", 0 },
	{ "init", init_cfg, 0, NULL, 0 },
	{ "clone", clone_cfg, 1, "fetch.fsck.", 0 },
	{ "pack-objects", NULL, 1, NULL, 0 },
	{ "repack", repack_cfg, 1, NULL, 0 },
	/* subcommands that take no --end-of-options (docs/technical/gitaly-node.md, "Git command lines") */
	{ "archive", NULL, 0, NULL, 1 }, { "blame", NULL, 0, NULL, 1 },
	{ "check-attr", NULL, 0, NULL, 1 }, { "check-ref-format", NULL, 0, NULL, 1 },
	{ "checkout", NULL, 0, NULL, 1 }, { "grep", NULL, 0, NULL, 1 },
	{ "index-pack", NULL, 0, NULL, 1 }, { "patch-id", NULL, 0, NULL, 1 },
	{ "remote", NULL, 0, NULL, 1 }, { "rev-list", NULL, 0, NULL, 1 },
	{ "rev-parse", NULL, 0, NULL, 1 }, { "unpack-objects", NULL, 0, NULL, 1 },
	{ "mailsplit", NULL, 0, NULL, 1 }, { "update-index", NULL, 0, NULL, 1 },
	{ "upload-archive", NULL, 0, NULL, 1 },
};

static const struct subcmd_defaults *find_subcmd(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(subcmds); i++)
		if (!strcmp(subcmds[i].name, name))
			return &subcmds[i];
	return NULL;
}

static void push_config(struct strvec *argv, const char *kv)
{
	strvec_push(argv, "-c");
	strvec_push(argv, kv);
}

static unsigned pack_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned t = 0;
	while (n > 1) {
		n >>= 1;
		t++;
	}
	return t ? t : 1;
}

json_t *gitaly_repository_json(const Gitaly__Repository *r)
{
	json_t *o = json_object();
	if (r) {
		if (r->storage_name && *r->storage_name)
			json_object_set_new(o, "storageName", json_string(r->storage_name));
		if (r->relative_path && *r->relative_path)
			json_object_set_new(o, "relativePath", json_string(r->relative_path));
		if (r->git_object_directory && *r->git_object_directory)
			json_object_set_new(o, "gitObjectDirectory", json_string(r->git_object_directory));
		if (r->n_git_alternate_object_directories) {
			json_t *a = json_array();
			for (size_t i = 0; i < r->n_git_alternate_object_directories; i++)
				json_array_append_new(a, json_string(r->git_alternate_object_directories[i]));
			json_object_set_new(o, "gitAlternateObjectDirectories", a);
		}
		if (r->gl_repository && *r->gl_repository)
			json_object_set_new(o, "glRepository", json_string(r->gl_repository));
		if (r->gl_project_path && *r->gl_project_path)
			json_object_set_new(o, "glProjectPath", json_string(r->gl_project_path));
	}
	return o;
}

/* gitaly_repository_json() as compact text. */
static char *repository_json(const Gitaly__Repository *r)
{
	json_t *o = gitaly_repository_json(r);
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

/* The transaction this call votes in, plus the backchannel the hook must vote over. */
static json_t *transaction_json(struct gitaly *g, struct grpc_call *rpc)
{
	struct txid tx;
	if (!rpc || vote_txid_from_call(g, rpc, &tx) < 0)
		return NULL;
	return txid_to_json(&tx);
}

static void add_hooks_env(struct gitaly *g, const struct git_call *c, unsigned hooks, struct strvec *env)
{
	json_t *p = json_object();
	json_t *tx = transaction_json(g, c->rpc);
	char *repo = repository_json(c->repo);
	struct strbuf b64 = STRBUF_INIT;

	/* 0 would read as "all hooks": with nothing left to run, git finds no hooks anyway */
	json_object_set_new(p, "requested_hooks", json_integer(hooks ? hooks : c->hooks));
	json_object_set_new(p, "object_format", json_string("sha1"));
	json_object_set_new(p, "runtime_dir", json_string(g->runtime_dir));
	json_object_set_new(p, "internal_socket", json_string(g->internal_socket));
	json_object_set_new(p, "internal_socket_token", json_string(g->cfg.auth_token ? g->cfg.auth_token : ""));
	json_object_set_new(p, "transaction", tx ? tx : json_null());
	if (c->user) {
		json_t *u = json_object();
		json_object_set_new(u, "username", json_string(c->user->username ? c->user->username : ""));
		json_object_set_new(u, "userid", json_string(c->user->userid ? c->user->userid : ""));
		json_object_set_new(u, "protocol", json_string(c->user->protocol ? c->user->protocol : ""));
		json_object_set_new(u, "remote_ip", json_string(c->user->remote_ip ? c->user->remote_ip : ""));
		json_object_set_new(p, "user_details", u);
	} else {
		json_object_set_new(p, "user_details", json_null());
	}
	json_object_set_new(p, "repository", json_string(repo));
	/* standard, padded base64 as upstream writes it */
	txid_envelope_encode(p, &b64);
	strvec_pushf(env, "GITALY_HOOKS_PAYLOAD=%s", b64.buf);
	if (g->cfg.log_dir)
		strvec_pushf(env, "GITALY_LOG_DIR=%s", g->cfg.log_dir);
	strbuf_release(&b64);
	free(repo);
	json_decref(p);
}

int gitaly_git_spec(struct gitaly *g, const struct git_call *c, struct strvec *argv,
		    struct strvec *env, struct strbuf *msg)
{
	const struct subcmd_defaults *d = find_subcmd(c->subcmd);
	unsigned hooks = 0;

	/* per-call config is validated before anything is built */
	for (size_t i = 0; i < c->nr_config; i++) {
		const char *eq = strchr(c->config[i], '=');
		if (!eq || !git_config_key_valid(c->config[i], (size_t)(eq - c->config[i]))) {
			strbuf_addf(msg, "invalid git config option \"%s\"", c->config[i]);
			return -1;
		}
	}

	strvec_push(argv, g->git_path);
	if (c->git_dir) {
		strvec_push(argv, "--git-dir");
		strvec_push(argv, c->git_dir);
	}
	for (const char *const *p = global_config; *p; p++)
		push_config(argv, *p);
	if (d && d->config)
		for (const char *const *p = d->config; *p; p++)
			push_config(argv, *p);
	if (d && d->fsck)
		for (const char *const *k = fsck_keys; *k; k++) {
			struct strbuf kv = STRBUF_INIT;
			strbuf_addf(&kv, "%s%s=ignore", d->fsck, *k);
			push_config(argv, kv.buf);
			strbuf_release(&kv);
		}
	if (d && d->pack) {
		for (const char *const *p = pack_config; *p; p++)
			push_config(argv, *p);
		strvec_push(argv, "-c");
		strvec_pushf(argv, "pack.threads=%u", pack_threads());
	}
	for (size_t i = 0; i < c->nr_config; i++)
		push_config(argv, c->config[i]);
	/* only the hooks with work: git starts no process for the others (hooks/hooks.h) */
	if (c->hooks) {
		struct txid tx;
		hooks = hook_mask_needed(g, c->hooks, c->rpc && vote_txid_from_call(g, c->rpc, &tx) == 0, c->git_dir);
	}
	strvec_push(argv, "-c");
	if (!(hooks & HOOK_RECEIVE_PACK))
		strvec_push(argv, "core.hooksPath=/dev/null");
	else if ((hooks & HOOK_RECEIVE_PACK) == HOOK_RECEIVE_PACK)
		strvec_pushf(argv, "core.hooksPath=%s", g->hooks_dir);
	else
		strvec_pushf(argv, "core.hooksPath=%s/%u", g->hooks_dir, hooks & HOOK_RECEIVE_PACK);
	for (size_t i = 0; i < g->cfg.nr_git_config; i++) {
		strvec_push(argv, "-c");
		strvec_pushf(argv, "%s=%s", g->cfg.git_config[i].key, g->cfg.git_config[i].value);
	}
	/* upload-pack packs through gitaly-hooks (docs/technical/pack-objects-cache.md) */
	if (!strcmp(c->subcmd, "upload-pack") && g->cfg.bin_dir) {
		strvec_push(argv, "-c");
		strvec_pushf(argv, "uploadpack.packObjectsHook=%s/gitaly-hooks", g->cfg.bin_dir);
	}
	strvec_push(argv, c->subcmd);
	strvec_pushv(argv, c->flags);
	if (!(d && d->no_end_of_options))
		strvec_push(argv, "--end-of-options");
	strvec_pushv(argv, c->args);
	if (c->paths) {
		strvec_push(argv, "--");
		strvec_pushv(argv, c->paths);
	}

	/* environment: allow-listed server env, then repository and call specifics */
	strvec_pushv(env, g->base_env.v);
	strvec_push(env, "GIT_CONFIG_GLOBAL=/dev/null");
	strvec_push(env, "GIT_CONFIG_SYSTEM=/dev/null");
	strvec_push(env, "GIT_TERMINAL_PROMPT=0");
	if (c->repo && c->git_dir) {
		if (c->repo->git_object_directory && *c->repo->git_object_directory)
			strvec_pushf(env, "GIT_OBJECT_DIRECTORY=%s/%s", c->git_dir, c->repo->git_object_directory);
		if (c->repo->n_git_alternate_object_directories) {
			struct strbuf alt = STRBUF_INIT;
			for (size_t i = 0; i < c->repo->n_git_alternate_object_directories; i++) {
				if (i)
					strbuf_addch(&alt, ':');
				strbuf_addf(&alt, "%s/%s", c->git_dir, c->repo->git_alternate_object_directories[i]);
			}
			strvec_pushf(env, "GIT_ALTERNATE_OBJECT_DIRECTORIES=%s", alt.buf);
			strbuf_release(&alt);
		}
	}
	if (c->git_protocol && (!strcmp(c->git_protocol, "version=2") || !strcmp(c->git_protocol, "version=1")))
		strvec_pushf(env, "GIT_PROTOCOL=%s", c->git_protocol);
	if (c->hooks) {
		add_hooks_env(g, c, hooks, env);
	} else if (!strcmp(c->subcmd, "upload-pack") && g->cfg.bin_dir) {
		struct git_call pc = *c;
		pc.hooks = HOOK_PACK_OBJECTS;
		add_hooks_env(g, &pc, HOOK_PACK_OBJECTS, env);
	}
	strvec_pushv(env, c->env);
	return 0;
}

int gitaly_git_spawn(struct gitaly *g, const struct git_call *c, int pipe_stdin, int pipe_stdout,
		     const struct git_cmd_ops *ops, void *user, struct git_cmd **out, struct strbuf *msg)
{
	struct strvec argv = STRVEC_INIT, env = STRVEC_INIT;
	struct git_cmd_spec spec = { 0 };
	int rc;

	if (gitaly_git_spec(g, c, &argv, &env, msg) < 0)
		return -EINVAL;
	spec.argv = argv.v;
	spec.env = env.v;
	spec.cwd = c->cwd;
	spec.pipe_stdin = pipe_stdin;
	spec.pipe_stdout = pipe_stdout;
	rc = git_cmd_spawn(g->loop, &spec, ops, user, out);
	if (rc < 0)
		strbuf_addf(msg, "cannot start git %s: %s", c->subcmd, uv_strerror(rc));
	strvec_clear(&argv);
	strvec_clear(&env);
	return rc;
}

int gitaly_git_capture(struct gitaly *g, const struct git_call *c, const void *stdin_data,
		       size_t stdin_len, size_t max_out, git_capture_fn done, void *arg, struct git_cmd **cmd,
		       struct strbuf *msg)
{
	struct strvec argv = STRVEC_INIT, env = STRVEC_INIT;
	struct git_cmd_spec spec = { 0 };
	int rc;

	if (cmd)
		*cmd = NULL;
	if (gitaly_git_spec(g, c, &argv, &env, msg) < 0)
		return -EINVAL;
	spec.argv = argv.v;
	spec.env = env.v;
	spec.cwd = c->cwd;
	rc = git_cmd_capture(g->loop, &spec, stdin_data, stdin_len, max_out, done, arg, cmd);
	strvec_clear(&argv);
	strvec_clear(&env);
	return rc;
}

void gitaly_describe_status(struct strbuf *sb, int status)
{
	if (status >= 0) {
		strbuf_addf(sb, "exit status %d", status);
	} else {
		const char *s = strsignal(-status);
		strbuf_addstr(sb, "signal: ");
		for (; s && *s; s++)
			strbuf_addch(sb, *s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
	}
}

/*
 * SetCustomHooks / RestoreCustomHooks (client streaming): the tar bytes of
 * every request message go to tar(1), which extracts the archive's
 * custom_hooks member into a fresh directory under the storage's temporary
 * directory; once the client half-closed and tar exited, the extracted tree
 * is checked (nothing in it may point or lead out of it) and swapped in for
 * <repo>/custom_hooks with the two directory votes (reposvc_hooks_install()).
 * Behaviour and messages: docs/technical/gitaly-repository.md, "SetCustomHooks".
 */
#include "repository/repository.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

struct set_hooks {
	struct gitaly_call op;
	int restore;                 /* RestoreCustomHooks: its own (empty) response type */
	struct strbuf path;          /* the repository */
	char *tmp;                   /* our directory under the storage's temp dir */
	struct git_cmd *cmd;         /* tar, NULL once it exited */
	int messages, failed, half_closed, tar_started, tar_exited, tar_status, recv_paused, installing;
	struct strbuf tar_err;
};

static void sh_release(struct gitaly_call *op)
{
	struct set_hooks *x = container_of(op, struct set_hooks, op);
	if (x->tmp) {
		fs_remove_tree(x->tmp);
		free(x->tmp);
	}
	strbuf_release(&x->path);
	strbuf_release(&x->tar_err);
	free(x);
}

static void sh_cancel(struct gitaly_call *op)
{
	struct set_hooks *x = container_of(op, struct set_hooks, op);
	if (x->cmd)
		reposvc_kill(x->cmd);
}

static void sh_fail(struct set_hooks *x, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void sh_fail(struct set_hooks *x, enum grpc_code code, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	if (x->failed)
		return;
	x->failed = 1;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	gitaly_call_finish(&x->op, gitaly_call_gone(&x->op) ? GRPC_CANCELLED : code, sb.buf, NULL);
	strbuf_release(&sb);
	if (x->cmd)
		reposvc_kill(x->cmd);
}

/* --- what the archive may hold --- */

/*
 * Whether the symbolic link `link` in directory `dir` (`depth` components
 * below the hooks directory) resolves inside the hooks directory: its
 * target must be relative, and walking it from `dir` must never climb above
 * the hooks directory. A `..` right after a component that is itself a
 * symbolic link is refused, since the climb would start from wherever that
 * link leads (`b/../x` with `b -> .` leaves the tree); the links met on the
 * way are checked on their own. 0 when inside; -1 when not (nothing in
 * `msg`) or when the link cannot be read (`msg` set).
 */
static int link_stays_inside(const char *dir, int depth, const char *link, struct strbuf *msg)
{
	char target[PATH_MAX];
	struct strbuf cur = STRBUF_INIT;
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	int d = depth, after_link = 0, rc = 0;

	if (n < 0) {
		strbuf_addf(msg, "checking extracted hooks: %s", strerror(errno));
		return -1;
	}
	target[n] = '\0';
	if (target[0] == '/' || !target[0])
		return -1;
	strbuf_addstr(&cur, dir);
	for (const char *p = target; *p && rc == 0;) {
		size_t len = strcspn(p, "/");
		if (len == 2 && !memcmp(p, "..", 2)) {
			char *slash = strrchr(cur.buf, '/');
			if (after_link || --d < 0 || !slash)
				rc = -1;
			else
				strbuf_setlen(&cur, (size_t)(slash - cur.buf));
			after_link = 0;
		} else if (len && !(len == 1 && *p == '.')) {
			struct stat st;
			strbuf_addch(&cur, '/');
			strbuf_add(&cur, p, len);
			d++;
			after_link = lstat(cur.buf, &st) == 0 && S_ISLNK(st.st_mode);
		}
		p += len;
		while (*p == '/')
			p++;
	}
	strbuf_release(&cur);
	return rc;
}

/*
 * Walk `abs` (whose path below the hooks directory is `rel`, `depth`
 * components deep): only directories, regular files and symbolic links whose
 * target stays inside the hooks directory. 0, or -1 with `msg` set.
 */
static int check_tree(const char *abs, const char *rel, int depth, struct strbuf *msg)
{
	char **names;
	size_t nr;
	struct strbuf sa = STRBUF_INIT, sr = STRBUF_INIT;
	int rc = reposvc_list_dir(abs, &names, &nr);

	if (rc < 0) {
		strbuf_addf(msg, "checking extracted hooks: %s", strerror(-rc));
		return -1;
	}
	for (size_t i = 0; i < nr && rc == 0; i++) {
		struct stat st;
		strbuf_reset(&sa);
		strbuf_reset(&sr);
		strbuf_addf(&sa, "%s/%s", abs, names[i]);
		strbuf_addf(&sr, "%s/%s", rel, names[i]);
		if (lstat(sa.buf, &st) < 0) {
			strbuf_addf(msg, "checking extracted hooks: %s", strerror(errno));
			rc = -1;
		} else if (S_ISDIR(st.st_mode)) {
			rc = check_tree(sa.buf, sr.buf, depth + 1, msg);
		} else if (S_ISLNK(st.st_mode)) {
			if (link_stays_inside(abs, depth, sa.buf, msg) < 0) {
				if (!msg->len)
					strbuf_addf(msg, "symbolic link \"%s\" points outside of the hooks directory",
						    sr.buf);
				rc = -1;
			}
		} else if (!S_ISREG(st.st_mode)) {
			strbuf_addf(msg, "\"%s\" is not a regular file, directory or symbolic link", sr.buf);
			rc = -1;
		}
	}
	reposvc_free_names(names, nr);
	strbuf_release(&sa);
	strbuf_release(&sr);
	return rc;
}

/* --- the swap --- */

static void sh_installed(struct gitaly_call *op, enum grpc_code code, const char *msg)
{
	struct set_hooks *x = container_of(op, struct set_hooks, op);
	if (code != GRPC_OK) {
		sh_fail(x, code, "setting custom hooks: %s", msg);
	} else if (gitaly_call_gone(op)) {
		sh_fail(x, GRPC_CANCELLED, "context canceled");
	} else if (x->restore) {
		Gitaly__RestoreCustomHooksResponse resp = GITALY__RESTORE_CUSTOM_HOOKS_RESPONSE__INIT;
		gitaly_call_send(op, &resp);
		gitaly_call_finish(op, GRPC_OK, NULL, NULL);
	} else {
		Gitaly__SetCustomHooksResponse resp = GITALY__SET_CUSTOM_HOOKS_RESPONSE__INIT;
		gitaly_call_send(op, &resp);
		gitaly_call_finish(op, GRPC_OK, NULL, NULL);
	}
	gitaly_call_drop(op);   /* the install's hold; may release x */
}

/* Both the client's half-close and tar's exit (if it ran) are in. */
static void sh_maybe_install(struct set_hooks *x)
{
	struct strbuf msg = STRBUF_INIT, hooks = STRBUF_INIT;
	struct stat st;
	int drop = 0;

	if (x->failed || x->installing || (x->tar_started && !x->tar_exited))
		return;
	/* a broken archive fails at once, without waiting for the rest of the stream */
	if (x->tar_started && x->tar_status != 0 &&
	    strncmp(x->tar_err.buf, "tar: custom_hooks: Not found in archive", 39)) {
		strbuf_addstr(&msg, "waiting for tar command completion: ");
		gitaly_describe_status(&msg, x->tar_status);
		log_msgf(LOG_WARN, "extracting custom hooks failed: %s", x->tar_err.buf);
		sh_fail(x, GRPC_INTERNAL, "setting custom hooks: extracting hooks: %s", msg.buf);
		goto out;
	}
	if (!x->half_closed)
		goto out;
	strbuf_addf(&hooks, "%s/custom_hooks", x->tmp);
	if (lstat(hooks.buf, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			sh_fail(x, GRPC_INVALID_ARGUMENT, "setting custom hooks: extracting hooks: %s",
				"\"custom_hooks\" is not a directory");
			goto out;
		}
		if (check_tree(hooks.buf, "custom_hooks", 0, &msg) < 0) {
			sh_fail(x, GRPC_INVALID_ARGUMENT, "setting custom hooks: extracting hooks: %s", msg.buf);
			goto out;
		}
	}
	x->installing = 1;
	gitaly_call_hold(&x->op);
	if (reposvc_hooks_install(&x->op, x->path.buf, x->tmp, sh_installed, &msg) < 0) {
		sh_fail(x, GRPC_INTERNAL, "setting custom hooks: %s", msg.buf);
		drop = 1;
	}
out:
	strbuf_release(&msg);
	strbuf_release(&hooks);
	if (drop)
		gitaly_call_drop(&x->op);   /* may release x */
}

/* --- tar --- */

static void tar_drained(struct git_cmd *cmd)
{
	struct set_hooks *x = git_cmd_user(cmd);
	if (x->recv_paused && x->op.call) {
		x->recv_paused = 0;
		grpc_call_resume_recv(x->op.call);
	}
}

static void tar_exit(struct git_cmd *cmd, int status)
{
	struct set_hooks *x = git_cmd_user(cmd);
	const struct strbuf *err = git_cmd_stderr(cmd);

	x->cmd = NULL;
	x->tar_exited = 1;
	x->tar_status = status;
	strbuf_add(&x->tar_err, err->buf, err->len);
	if (x->recv_paused && x->op.call) {
		x->recv_paused = 0;
		grpc_call_resume_recv(x->op.call);   /* the rest of the stream is read and dropped */
	}
	sh_maybe_install(x);
	gitaly_call_drop(&x->op);   /* tar's hold; may release x */
}

static const struct git_cmd_ops tar_ops = {
	.on_stdin_drained = tar_drained,
	.on_exit = tar_exit,
};

static int sh_start_tar(struct set_hooks *x)
{
	const char *argv[] = { "tar", "-xf", "-", "-C", x->tmp, "--strip-components", "0", "custom_hooks", NULL };
	struct git_cmd_spec spec = { 0 };
	int rc;

	spec.argv = argv;
	spec.env = x->op.g->base_env.v;
	spec.pipe_stdin = 1;
	x->tar_started = 1;
	gitaly_call_hold(&x->op);
	rc = git_cmd_spawn(x->op.g->loop, &spec, &tar_ops, x, &x->cmd);
	if (rc < 0) {
		x->cmd = NULL;
		gitaly_call_drop(&x->op);
		sh_fail(x, GRPC_INTERNAL, "setting custom hooks: extracting hooks: executing tar command: %s",
			uv_strerror(rc));
		return -1;
	}
	return 0;
}

/* --- the call --- */

static int sh_first(struct set_hooks *x, const Gitaly__SetCustomHooksRequest *req)
{
	const struct gitaly_storage *st;
	struct strbuf msg = STRBUF_INIT, tmp = STRBUF_INIT;
	enum grpc_code code;
	int rc;

	code = gitaly_locate(x->op.g, req->repository, 0, &x->path, &msg);
	if (code == GRPC_OK)
		code = gitaly_storage(x->op.g, req->repository->storage_name, &st, &msg);
	if (code != GRPC_OK) {
		sh_fail(x, code, "%s", msg.buf);
		goto fail;
	}
	if ((rc = gitaly_tmp_dir(x->op.g, st, &tmp)) < 0) {
		sh_fail(x, GRPC_INTERNAL, "setting custom hooks: creating temp directory: %s", strerror(-rc));
		goto fail;
	}
	strbuf_addstr(&tmp, "/custom-hooks-XXXXXX");
	if (!mkdtemp(tmp.buf)) {
		sh_fail(x, GRPC_INTERNAL, "setting custom hooks: creating temp directory: %s", strerror(errno));
		goto fail;
	}
	x->tmp = strbuf_detach(&tmp, NULL);
	strbuf_release(&msg);
	return 0;
fail:
	strbuf_release(&msg);
	strbuf_release(&tmp);
	return -1;
}

static void sh_message(struct grpc_call *call, const uint8_t *buf, size_t len)
{
	struct set_hooks *x = grpc_call_user(call);
	/* RestoreCustomHooksRequest has the same fields: 1 repository, 2 data */
	Gitaly__SetCustomHooksRequest *req;

	if (x->failed)
		return;
	if (!(req = msg_unpack(call, &gitaly__set_custom_hooks_request__descriptor, buf, len))) {
		x->failed = 1;   /* msg_unpack answered */
		if (x->cmd)
			reposvc_kill(x->cmd);
		return;
	}
	if (!x->messages++ && sh_first(x, req) < 0)
		goto out;
	if (!req->data.len || x->tar_exited)
		goto out;   /* nothing to extract, or tar is over and the rest is dropped */
	if (!x->tar_started && sh_start_tar(x) < 0)
		goto out;   /* GNU tar refuses an empty archive: started on the first data only */
	git_cmd_write_stdin(x->cmd, req->data.data, req->data.len);
	if (!x->recv_paused && git_cmd_stdin_queued(x->cmd) >= GIT_CMD_STDIN_HIGH) {
		x->recv_paused = 1;
		grpc_call_pause_recv(call);
	}
out:
	msg_free(req);
}

static void sh_half_close(struct grpc_call *call)
{
	struct set_hooks *x = grpc_call_user(call);
	if (x->failed)
		return;
	if (!x->messages) {
		sh_fail(x, GRPC_INTERNAL, "getting first request: EOF");
		return;
	}
	x->half_closed = 1;
	if (x->cmd)
		git_cmd_close_stdin(x->cmd);
	sh_maybe_install(x);
}

static void sh_close(struct grpc_call *call, enum grpc_code code)
{
	(void)code;
	gitaly_call_closed(grpc_call_user(call));
}

static const struct grpc_call_ops sh_call_ops = {
	.on_message = sh_message,
	.on_half_close = sh_half_close,
	.on_close = sh_close,
};

static void sh_start(struct grpc_call *call, struct gitaly *g, int restore)
{
	struct set_hooks *x = xcalloc(1, sizeof(*x));
	gitaly_call_init(&x->op, g, call, sh_release);
	x->op.cancel = sh_cancel;
	x->restore = restore;
	strbuf_init(&x->path, 0);
	strbuf_init(&x->tar_err, 0);
	grpc_call_set_ops(call, &sh_call_ops, x);
}

static void set_custom_hooks(struct grpc_call *call, void *data)
{
	sh_start(call, data, 0);
}

static void restore_custom_hooks(struct grpc_call *call, void *data)
{
	sh_start(call, data, 1);
}

void reposvc_register_set_custom_hooks(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_method(s, "/gitaly.RepositoryService/SetCustomHooks", set_custom_hooks, g);
	gitaly_add_method(s, "/gitaly.RepositoryService/RestoreCustomHooks", restore_custom_hooks, g);
}

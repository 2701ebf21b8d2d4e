/*
 * Server-side backups: BackupRepository writes a repository's refs, bundle
 * and custom hooks into the [backup] sink (a file:// directory) in
 * upstream's pointer layout, plus a manifest with layout "manifest";
 * RestoreRepository rebuilds a repository from the latest (or a named)
 * backup through the shared creation routine, so that it appears in one
 * step and voted. Layout, messages and what we left out:
 * docs/technical/backups.md.
 */
#include "repository/repository.h"
#include "repository/backup_parse.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

#define REFS_MAX (256 * 1024 * 1024)
#define POINTER_MAX 4096

struct backup_op {
	struct gitaly_call op;
	int restore;
	void *req;                          /* the request (owns the repositories and strings) */
	const Gitaly__Repository *repo;
	const char *storage;                /* the vanity repository's, for manifests */
	const char *vanity_rel;
	const char *backup_id;
	int incremental, always_create;
	struct strbuf path;                 /* the repository */
	struct strbuf base;                 /* <root>/<relative path without .git> */
	struct strbuf dir;                  /* <base>/<backup directory> */
	char *dir_id;                       /* the backup directory's name */
	unsigned step;                      /* backup: the step written; restore: how many */
	struct strbuf refs, prev_refs, head, format;
	struct git_cmd *cmd;
	/* restore */
	struct reposvc_create *rc;
	struct strbuf tmp_path;
	const Gitaly__Repository *tmp_repo;
	unsigned cur;                       /* the step being applied */
	int have_bundle;
	char head_oid[65];
};

static void bk_release(struct gitaly_call *op)
{
	struct backup_op *b = container_of(op, struct backup_op, op);
	msg_free(b->req);
	strbuf_release(&b->path);
	strbuf_release(&b->base);
	strbuf_release(&b->dir);
	free(b->dir_id);
	strbuf_release(&b->refs);
	strbuf_release(&b->prev_refs);
	strbuf_release(&b->head);
	strbuf_release(&b->format);
	strbuf_release(&b->tmp_path);
	free(b);
}

static void bk_cancel(struct gitaly_call *op)
{
	struct backup_op *b = container_of(op, struct backup_op, op);
	reposvc_kill(b->cmd);
	reposvc_create_cancel(b->rc);
}

static const char *verb(const struct backup_op *b)
{
	return b->restore ? "restore repository" : "backup repository";
}

static void bk_fail(struct backup_op *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bk_fail(struct backup_op *b, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	if (gitaly_call_gone(&b->op))
		reposvc_finish(&b->op, GRPC_CANCELLED, "context canceled");
	else
		reposvc_finishf(&b->op, GRPC_INTERNAL, "%s: manager: %s", verb(b), sb.buf);
	strbuf_release(&sb);
}

/* ErrSkipped: FAILED_PRECONDITION with the SkippedError detail gitaly-backup looks for. */
static void bk_skip(struct backup_op *b, const char *why)
{
	Gitaly__BackupRepositoryResponse__SkippedError bs = GITALY__BACKUP_REPOSITORY_RESPONSE__SKIPPED_ERROR__INIT;
	Gitaly__RestoreRepositoryResponse__SkippedError rs = GITALY__RESTORE_REPOSITORY_RESPONSE__SKIPPED_ERROR__INIT;
	struct strbuf m = STRBUF_INIT;

	strbuf_addf(&m, "%s: manager: repository skipped%s%s", verb(b), why ? ": " : "", why ? why : "");
	if (b->op.finished) {
		/* nothing */
	} else if (b->op.call) {
		b->op.holds--;   /* the work's hold, given back as reposvc_finish() does */
		gitaly_call_finish_detail(&b->op, GRPC_FAILED_PRECONDITION, m.buf, b->restore ? &rs.base : &bs.base);
	} else {
		gitaly_call_finish_detail(&b->op, GRPC_FAILED_PRECONDITION, m.buf, b->restore ? &rs.base : &bs.base);
		gitaly_call_drop(&b->op);
	}
	strbuf_release(&m);
}

/* --- the sink (a directory) --- */

/* Write a small sink file atomically, its directories made. 0 or -errno. */
static int sink_write(const char *path, const void *data, size_t len)
{
	struct strbuf dir = STRBUF_INIT;
	const char *slash = strrchr(path, '/');
	int rc;
	strbuf_add(&dir, path, slash ? (size_t)(slash - path) : 0);
	rc = fs_mkdir_p(dir.buf, 0755);
	if (rc == 0)
		rc = fs_write_atomic(path, data, len, 0644);
	strbuf_release(&dir);
	return rc;
}

/* A LATEST pointer (backup_pointer_check()). 0, -ENOENT or -EINVAL. */
static int read_pointer(const char *path, struct strbuf *out)
{
	int rc = fs_read_file(path, POINTER_MAX, out);
	if (rc < 0)
		return rc;
	return backup_pointer_check(out) < 0 ? -EINVAL : 0;
}

static void step_path(struct strbuf *sb, const struct backup_op *b, unsigned step, const char *ext)
{
	strbuf_reset(sb);
	strbuf_addf(sb, "%s/%03u.%s", b->dir.buf, step, ext);
}

/* --- BackupRepository --- */

static void manifest_step(struct strbuf *m, const struct backup_op *b, const char *rel, unsigned i)
{
	strbuf_addf(m, "\n[[steps]]\nbundle_path = '%s/%s/%03u.bundle'\nref_path = '%s/%s/%03u.refs'\n",
		    rel, b->dir_id, i, rel, b->dir_id, i);
	if (i > 1)
		strbuf_addf(m, "previous_ref_path = '%s/%s/%03u.refs'\n", rel, b->dir_id, i - 1);
	strbuf_addf(m, "custom_hooks_path = '%s/%s/%03u.custom_hooks.tar'\n", rel, b->dir_id, i);
}

static void bk_commit(struct backup_op *b)
{
	const char *root = b->op.g->cfg.backup_root;
	struct strbuf p = STRBUF_INIT, v = STRBUF_INIT;
	int rc;

	strbuf_addf(&p, "%s/LATEST", b->dir.buf);
	strbuf_addf(&v, "%03u", b->step);
	rc = sink_write(p.buf, v.buf, v.len);
	if (rc == 0) {
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/LATEST", b->base.buf);
		rc = sink_write(p.buf, b->dir_id, strlen(b->dir_id));
	}
	if (rc == 0 && !strcmp(b->op.g->cfg.backup_layout, "manifest")) {
		/* the TOML upstream's manifest locator writes: quoted literal strings, no escapes needed */
		size_t rl = strlen(b->vanity_rel);
		const char *rel_end = rl > 4 && !strcmp(b->vanity_rel + rl - 4, ".git") ? b->vanity_rel + rl - 4 : NULL;
		struct strbuf rel = STRBUF_INIT;
		strbuf_add(&rel, b->vanity_rel, rel_end ? (size_t)(rel_end - b->vanity_rel) : rl);
		strbuf_reset(&v);
		strbuf_addf(&v, "object_format = '%s'\n", b->format.buf);
		if (b->head.len)
			strbuf_addf(&v, "head_reference = '%s'\n", b->head.buf);
		for (unsigned i = 1; i <= b->step; i++)
			manifest_step(&v, b, rel.buf, i);
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/manifests/%s/%s/%s.toml", root, b->storage, b->vanity_rel, b->backup_id);
		rc = sink_write(p.buf, v.buf, v.len);
		strbuf_release(&rel);
	}
	if (rc < 0) {
		bk_fail(b, "write latest: %s", strerror(-rc));
	} else {
		Gitaly__BackupRepositoryResponse resp = GITALY__BACKUP_REPOSITORY_RESPONSE__INIT;
		reposvc_reply(&b->op, &resp);
	}
	strbuf_release(&p);
	strbuf_release(&v);
}

static void hooks_tarred(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct backup_op *b = arg;
	struct strbuf tmp = STRBUF_INIT, dst = STRBUF_INIT;
	b->cmd = NULL;
	step_path(&dst, b, b->step, "custom_hooks.tar");
	strbuf_addf(&tmp, "%s.tmp", dst.buf);
	if (status != 0) {
		unlink(tmp.buf);
		strbuf_reset(&dst);
		gitaly_describe_status(&dst, status);
		bk_fail(b, "write custom hooks: %s", dst.buf);
	} else if (rename(tmp.buf, dst.buf) < 0) {
		bk_fail(b, "write custom hooks: %s", strerror(errno));
	} else {
		bk_commit(b);
	}
	strbuf_release(&tmp);
	strbuf_release(&dst);
}

static void bk_hooks(struct backup_op *b)
{
	struct strbuf hooks = STRBUF_INIT, tmp = STRBUF_INIT;
	struct git_cmd_spec spec = { 0 };
	struct stat st;
	int rc;

	strbuf_addf(&hooks, "%s/custom_hooks", b->path.buf);
	if (lstat(hooks.buf, &st) < 0 || !S_ISDIR(st.st_mode)) {
		bk_commit(b);   /* no hooks: no archive, as upstream's lazy writer */
		goto out;
	}
	step_path(&tmp, b, b->step, "custom_hooks.tar.tmp");
	{
		const char *argv[] = { "tar", "-cf", tmp.buf, "-C", b->path.buf, "custom_hooks", NULL };
		spec.argv = argv;
		spec.env = b->op.g->base_env.v;
		rc = git_cmd_capture(b->op.g->loop, &spec, NULL, 0, 64 * 1024, hooks_tarred, b, &b->cmd);
	}
	if (rc < 0) {
		b->cmd = NULL;
		bk_fail(b, "write custom hooks: executing tar: %s", uv_strerror(rc));
	}
out:
	strbuf_release(&hooks);
	strbuf_release(&tmp);
}

static void bundled(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct backup_op *b = arg;
	b->cmd = NULL;
	if (gitaly_call_gone(&b->op)) {
		bk_fail(b, "context canceled");
	} else if (status == 128 && strstr(err->buf, "Refusing to create empty bundle")) {
		bk_skip(b, "write bundle: no changes to bundle");
	} else if (status != 0) {
		struct strbuf m = STRBUF_INIT;
		gitaly_describe_status(&m, status);
		strbuf_addstr(&m, ": stderr: ");
		strbuf_add_json_string(&m, err->buf, err->len);
		bk_fail(b, "write bundle: create bundle: %s", m.buf);
		strbuf_release(&m);
	} else {
		bk_hooks(b);
	}
}

static void bk_bundle(struct backup_op *b)
{
	struct strbuf file = STRBUF_INIT, msg = STRBUF_INIT, in = STRBUF_INIT;
	/* "--all" as an option: git before 2.41 takes no options among --stdin's lines */
	const char *flags[] = { "create", NULL, "--all", "--stdin", NULL };
	struct git_call gc = { 0 };

	if (!b->refs.len) {
		bk_hooks(b);   /* an empty repository: refs (empty) and hooks only */
		goto out;
	}
	step_path(&file, b, b->step, "bundle");
	flags[1] = file.buf;
	gc.git_dir = b->path.buf;
	gc.repo = b->repo;
	gc.subcmd = "bundle";
	if (b->prev_refs.len) {
		/* an increment: everything not reachable from the previous step's refs */
		for (const char *p = b->prev_refs.buf; *p;) {
			size_t n = strcspn(p, "\n");
			const char *sp = memchr(p, ' ', n);
			if (sp)
				strbuf_addf(&in, "^%.*s\n", (int)(sp - p), p);
			p += n;
			if (*p)
				p++;
		}
		gc.flags = flags;
	} else {
		flags[3] = NULL;
		gc.flags = flags;
	}
	if (gitaly_git_capture(b->op.g, &gc, in.buf, in.len, 64 * 1024, bundled, b, &b->cmd, &msg) < 0)
		bk_fail(b, "write bundle: %s", msg.buf);
out:
	strbuf_release(&file);
	strbuf_release(&msg);
	strbuf_release(&in);
}

/* Where this backup goes: a new directory, or the next step of the latest one. */
static void bk_begin(struct backup_op *b)
{
	struct strbuf p = STRBUF_INIT, v = STRBUF_INIT;
	int rc;

	b->step = 1;
	if (b->incremental) {
		strbuf_addf(&p, "%s/LATEST", b->base.buf);
		rc = read_pointer(p.buf, &v);
		if (rc == 0) {
			b->dir_id = strbuf_detach(&v, NULL);
			strbuf_addf(&b->dir, "%s/%s", b->base.buf, b->dir_id);
			strbuf_reset(&p);
			strbuf_addf(&p, "%s/LATEST", b->dir.buf);
			if (read_pointer(p.buf, &v) < 0 || !(b->step = backup_step_number(v.buf)) || b->step >= BACKUP_MAX_STEPS) {
				bk_fail(b, "pointer locator: begin incremental: determine increment ID: \"%s\"", v.buf);
				goto out;
			}
			step_path(&p, b, b->step, "refs");
			if ((rc = fs_read_file(p.buf, REFS_MAX, &b->prev_refs)) < 0) {
				bk_fail(b, "pointer locator: begin incremental: %s", strerror(-rc));
				goto out;
			}
			b->step++;
		} else if (rc != -ENOENT) {
			bk_fail(b, "pointer locator: begin incremental: find latest ID: %s", strerror(-rc));
			goto out;
		}
	}
	if (!b->dir_id) {
		b->dir_id = xstrdup(b->backup_id);
		strbuf_addf(&b->dir, "%s/%s", b->base.buf, b->dir_id);
	}
	step_path(&p, b, b->step, "refs");
	if ((rc = sink_write(p.buf, b->refs.buf, b->refs.len)) < 0) {
		bk_fail(b, "write refs: %s", strerror(-rc));
		goto out;
	}
	bk_bundle(b);
out:
	strbuf_release(&p);
	strbuf_release(&v);
}

static void refs_listed(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct backup_op *b = arg;
	struct strbuf head = STRBUF_INIT, p = STRBUF_INIT;

	b->cmd = NULL;
	if (status != 0) {
		strbuf_addstr(&head, "list refs: ");
		gitaly_describe_status(&head, status);
		bk_fail(b, "%s", head.buf);
		goto out;
	}
	strbuf_add(&b->refs, out->buf, out->len);
	strbuf_addf(&p, "%s/HEAD", b->path.buf);
	if (fs_read_file(p.buf, 4096, &head) == 0 && !strncmp(head.buf, "ref: ", 5)) {
		strbuf_setlen(&head, strcspn(head.buf, "\n"));
		strbuf_addstr(&b->head, head.buf + 5);
	}
	bk_begin(b);
out:
	strbuf_release(&head);
	strbuf_release(&p);
}

static void format_known(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const flags[] = { "--format=%(objectname) %(refname)", NULL };
	struct backup_op *b = arg;
	struct git_call gc = { 0 };
	struct strbuf msg = STRBUF_INIT;

	b->cmd = NULL;
	if (status != 0) {
		strbuf_addstr(&msg, "object hash: ");
		gitaly_describe_status(&msg, status);
		bk_fail(b, "%s", msg.buf);
		goto out;
	}
	strbuf_add(&b->format, out->buf, strcspn(out->buf, "\n"));
	gc.git_dir = b->path.buf;
	gc.repo = b->repo;
	gc.subcmd = "for-each-ref";
	gc.flags = flags;
	if (gitaly_git_capture(b->op.g, &gc, NULL, 0, REFS_MAX, refs_listed, b, &b->cmd, &msg) < 0)
		bk_fail(b, "list refs: %s", msg.buf);
out:
	strbuf_release(&msg);
}

/* --- RestoreRepository --- */

static void apply_step(struct backup_op *b);

static void restored(struct reposvc_create *rc, enum grpc_code code, const char *msg)
{
	struct backup_op *b = reposvc_create_data(rc);
	b->rc = NULL;
	if (code == GRPC_OK) {
		Gitaly__RestoreRepositoryResponse resp = GITALY__RESTORE_REPOSITORY_RESPONSE__INIT;
		reposvc_reply(&b->op, &resp);
	} else if (code == GRPC_CANCELLED) {
		reposvc_finish(&b->op, code, msg);
	} else {
		reposvc_finishf(&b->op, code, "restore repository: manager: %s", msg);
	}
}

static void seed_failf(struct backup_op *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seed_failf(struct backup_op *b, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	reposvc_create_seeded(b->rc, GRPC_INTERNAL, sb.buf);
	strbuf_release(&sb);
}

static void branches_known(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct backup_op *b = arg;
	struct strbuf branch = STRBUF_INIT, content = STRBUF_INIT, head = STRBUF_INIT;
	int rc;

	b->cmd = NULL;
	if (status != 0) {
		seed_failf(b, "restore bundle: guess head: exit status %d", status);
		goto out;
	}
	if (bundle_guess_head(out->buf, b->head_oid, &branch) == 0) {
		/* the temporary repository is ours alone: its HEAD is written directly, then voted with the rest */
		strbuf_addf(&content, "ref: %s\n", branch.buf);
		strbuf_addf(&head, "%s/HEAD", b->tmp_path.buf);
		if ((rc = fs_write_atomic(head.buf, content.buf, content.len, 0644)) < 0) {
			seed_failf(b, "restore bundle: update head: %s", strerror(-rc));
			goto out;
		}
	}
	reposvc_create_seeded(b->rc, GRPC_OK, NULL);
out:
	strbuf_release(&branch);
	strbuf_release(&content);
	strbuf_release(&head);
}

static void heads_known(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const flags[] = { "--format=%(objectname) %(refname)", NULL };
	static const char *const args[] = { "refs/heads/", NULL };
	struct backup_op *b = arg;
	struct git_call gc = { 0 };
	struct strbuf msg = STRBUF_INIT;

	b->cmd = NULL;
	if (status != 0 || bundle_list_head(out->buf, b->head_oid) < 0) {
		reposvc_create_seeded(b->rc, GRPC_OK, NULL);   /* no HEAD recorded: git init's stays */
		return;
	}
	gc.git_dir = b->tmp_path.buf;
	gc.repo = b->tmp_repo;
	gc.subcmd = "for-each-ref";
	gc.flags = flags;
	gc.args = args;
	if (gitaly_git_capture(b->op.g, &gc, NULL, 0, REFS_MAX, branches_known, b, &b->cmd, &msg) < 0)
		seed_failf(b, "restore bundle: %s", msg.buf);
	strbuf_release(&msg);
}

/* Every step applied: HEAD as the last bundle had it. */
static void restore_head(struct backup_op *b)
{
	struct strbuf file = STRBUF_INIT, msg = STRBUF_INIT;
	const char *flags[] = { "list-heads", NULL, NULL };
	static const char *const args[] = { "HEAD", NULL };
	struct git_call gc = { 0 };
	unsigned last = 0;

	for (unsigned i = b->step; i >= 1 && !last; i--) {
		struct stat st;
		step_path(&file, b, i, "bundle");
		if (stat(file.buf, &st) == 0)
			last = i;
	}
	if (!last) {
		reposvc_create_seeded(b->rc, GRPC_OK, NULL);
		goto out;
	}
	flags[1] = file.buf;
	gc.git_dir = b->tmp_path.buf;
	gc.repo = b->tmp_repo;
	gc.subcmd = "bundle";
	gc.flags = flags;
	gc.args = args;
	if (gitaly_git_capture(b->op.g, &gc, NULL, 0, REFS_MAX, heads_known, b, &b->cmd, &msg) < 0)
		seed_failf(b, "restore bundle: %s", msg.buf);
out:
	strbuf_release(&file);
	strbuf_release(&msg);
}

static void hooks_untarred(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct backup_op *b = arg;
	b->cmd = NULL;
	if (status != 0) {
		seed_failf(b, "restore custom hooks: exit status %d", status);
		return;
	}
	b->cur++;
	apply_step(b);
}

static void step_hooks(struct backup_op *b)
{
	struct strbuf tar = STRBUF_INIT, hooks = STRBUF_INIT;
	struct git_cmd_spec spec = { 0 };
	struct stat st;
	int rc;

	step_path(&tar, b, b->cur, "custom_hooks.tar");
	if (stat(tar.buf, &st) < 0) {
		b->cur++;
		apply_step(b);
		goto out;
	}
	/* each step's archive replaces the hooks of the steps before it */
	strbuf_addf(&hooks, "%s/custom_hooks", b->tmp_path.buf);
	fs_remove_tree(hooks.buf);
	{
		const char *argv[] = { "tar", "-xf", tar.buf, "-C", b->tmp_path.buf, "custom_hooks", NULL };
		spec.argv = argv;
		spec.env = b->op.g->base_env.v;
		rc = git_cmd_capture(b->op.g->loop, &spec, NULL, 0, 64 * 1024, hooks_untarred, b, &b->cmd);
	}
	if (rc < 0) {
		b->cmd = NULL;
		seed_failf(b, "restore custom hooks: executing tar: %s", uv_strerror(rc));
	}
out:
	strbuf_release(&tar);
	strbuf_release(&hooks);
}

static void step_fetched(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct backup_op *b = arg;
	b->cmd = NULL;
	if (status != 0) {
		struct strbuf m = STRBUF_INIT;
		gitaly_describe_status(&m, status);
		strbuf_addstr(&m, ", stderr: ");
		strbuf_add_json_string(&m, err->buf, err->len);
		seed_failf(b, "restore bundle: fetch bundle: %s", m.buf);
		strbuf_release(&m);
		return;
	}
	step_hooks(b);
}

/* Step b->cur: fetch its bundle (when its refs are not empty), then its hooks. */
static void apply_step(struct backup_op *b)
{
	static const char *const flags[] = { "--quiet", "--no-write-fetch-head", NULL };
	struct strbuf file = STRBUF_INIT, msg = STRBUF_INIT;
	const char *args[] = { NULL, "+refs/*:refs/*", NULL };
	struct git_call gc = { 0 };
	struct stat st;

	if (gitaly_call_gone(&b->op)) {
		reposvc_create_seeded(b->rc, GRPC_CANCELLED, "context canceled");
		goto out;
	}
	if (b->cur > b->step) {
		restore_head(b);
		goto out;
	}
	step_path(&file, b, b->cur, "refs");
	if (stat(file.buf, &st) < 0) {
		seed_failf(b, "read refs: %s", strerror(errno));
		goto out;
	}
	if (st.st_size == 0) {
		step_hooks(b);
		goto out;
	}
	step_path(&file, b, b->cur, "bundle");
	args[0] = file.buf;
	gc.git_dir = b->tmp_path.buf;
	gc.repo = b->tmp_repo;
	gc.subcmd = "fetch";
	gc.flags = flags;
	gc.args = args;
	/* hooks disabled: nothing to vote on in a repository nobody can see yet */
	if (gitaly_git_capture(b->op.g, &gc, NULL, 0, 64 * 1024, step_fetched, b, &b->cmd, &msg) < 0)
		seed_failf(b, "restore bundle: %s", msg.buf);
out:
	strbuf_release(&file);
	strbuf_release(&msg);
}

static void restore_seed(struct reposvc_create *rc, const char *tmp_path, const Gitaly__Repository *tmp_repo)
{
	struct backup_op *b = reposvc_create_data(rc);
	b->rc = rc;
	strbuf_addstr(&b->tmp_path, tmp_path);
	b->tmp_repo = tmp_repo;
	b->cur = 1;
	apply_step(b);
}

/* An existing repository goes first (upstream removes it too): moved aside, then deleted. */
static int remove_existing(struct backup_op *b, struct strbuf *msg)
{
	const struct gitaly_storage *st;
	struct strbuf tmp = STRBUF_INIT;
	struct stat sb;
	int rc = 0;

	if (lstat(b->path.buf, &sb) < 0)
		return 0;
	if (gitaly_storage(b->op.g, b->repo->storage_name, &st, msg) != GRPC_OK ||
	    gitaly_tmp_dir(b->op.g, st, &tmp) < 0) {
		if (!msg->len)
			strbuf_addstr(msg, "remove: cannot create temporary directory");
		rc = -1;
		goto out;
	}
	strbuf_addstr(&tmp, "/removed-XXXXXX");
	if (!mkdtemp(tmp.buf)) {
		strbuf_addf(msg, "remove: %s", strerror(errno));
		rc = -1;
		goto out;
	}
	strbuf_addstr(&tmp, "/repo");
	if (rename(b->path.buf, tmp.buf) < 0) {
		strbuf_addf(msg, "remove: %s", strerror(errno));
		rc = -1;
		goto out;
	}
	strbuf_setlen(&tmp, tmp.len - 5);
	fs_remove_tree(tmp.buf);
out:
	strbuf_release(&tmp);
	return rc;
}

static void restore_start(struct backup_op *b)
{
	struct strbuf p = STRBUF_INIT, v = STRBUF_INIT, msg = STRBUF_INIT, first = STRBUF_INIT;
	struct reposvc_create_opts opts = { 0 };
	enum grpc_code code;
	int rc;

	if (b->backup_id && *b->backup_id) {
		if (strchr(b->backup_id, '/') || !strcmp(b->backup_id, "..") || !strcmp(b->backup_id, ".")) {
			reposvc_finishf(&b->op, GRPC_INVALID_ARGUMENT, "restore repository: invalid backup ID \"%s\"",
					b->backup_id);
			goto out;
		}
		b->dir_id = xstrdup(b->backup_id);
	} else {
		strbuf_addf(&p, "%s/LATEST", b->base.buf);
		rc = read_pointer(p.buf, &v);
		if (rc == -ENOENT) {
			bk_skip(b, "pointer locator: find latest: find latest ID: doesn't exist");
			goto out;
		} else if (rc < 0) {
			bk_fail(b, "pointer locator: find latest: find latest ID: %s", strerror(-rc));
			goto out;
		}
		b->dir_id = strbuf_detach(&v, NULL);
	}
	strbuf_addf(&b->dir, "%s/%s", b->base.buf, b->dir_id);
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/LATEST", b->dir.buf);
	rc = read_pointer(p.buf, &v);
	if (rc == -ENOENT) {
		bk_skip(b, "pointer locator: find: find latest ID: doesn't exist");
		goto out;
	}
	if (rc < 0 || !(b->step = backup_step_number(v.buf))) {
		bk_fail(b, "pointer locator: find: determine increment ID: \"%s\"", v.buf);
		goto out;
	}
	if (remove_existing(b, &msg) < 0) {
		bk_fail(b, "%s", msg.buf);
		goto out;
	}
	step_path(&p, b, 1, "refs");
	if (fs_read_file(p.buf, 4096, &first) == -ENOENT) {
		if (!b->always_create) {
			bk_skip(b, "read refs: doesn't exist");
			goto out;
		}
		b->step = 0;   /* nothing to apply: an empty repository */
	}
	/* a sha256 repository's refs are 64 hex digits long */
	opts.object_format = strcspn(first.buf, " ") == 64 ? "sha256" : "sha1";
	opts.seed = restore_seed;
	opts.done = restored;
	opts.data = b;
	code = reposvc_create_start(&b->op, b->repo, &opts, &b->rc, &msg);
	if (code != GRPC_OK)
		reposvc_finishf(&b->op, code, "restore repository: manager: %s", msg.buf);
out:
	strbuf_release(&p);
	strbuf_release(&v);
	strbuf_release(&msg);
	strbuf_release(&first);
}

/* --- the RPCs --- */

static int check_vanity(const Gitaly__Repository *v, struct strbuf *msg)
{
	if (!v)
		return 0;
	if (!v->relative_path || !*v->relative_path) {
		strbuf_addstr(msg, "empty RelativePath");
		return -1;
	}
	if (v->relative_path[0] == '/' || strstr(v->relative_path, "..")) {
		strbuf_addstr(msg, "relative path escapes root directory");
		return -1;
	}
	return 0;
}

static void bk_start(struct grpc_call *call, struct gitaly *g, int restore, void *req,
		     const Gitaly__Repository *repo, const Gitaly__Repository *vanity, const char *backup_id,
		     int incremental, int always_create)
{
	struct strbuf msg = STRBUF_INIT;
	struct backup_op *b;
	enum grpc_code code;
	const char *rel;
	size_t rl;

	if (!g->cfg.backup_root) {
		grpc_call_finishf(call, GRPC_FAILED_PRECONDITION, "%s: server-side backups are not configured",
				  restore ? "restore repository" : "backup repository");
		msg_free(req);
		return;
	}
	b = xcalloc(1, sizeof(*b));
	reposvc_init(&b->op, g, call, bk_release);
	b->op.cancel = bk_cancel;
	b->restore = restore;
	b->incremental = incremental;
	b->always_create = always_create;
	b->req = req;
	b->repo = repo;
	strbuf_init(&b->path, 0);
	strbuf_init(&b->base, 0);
	strbuf_init(&b->dir, 0);
	strbuf_init(&b->refs, 0);
	strbuf_init(&b->prev_refs, 0);
	strbuf_init(&b->head, 0);
	strbuf_init(&b->format, 0);
	strbuf_init(&b->tmp_path, 0);
	gitaly_call_watch(&b->op);

	if (!restore && (!backup_id || !*backup_id)) {
		reposvc_finish(&b->op, GRPC_INVALID_ARGUMENT, "empty BackupId");
		goto out;
	}
	code = gitaly_locate(g, repo, restore ? LOCATE_NO_EXIST_CHECK : 0, &b->path, &msg);
	if (code != GRPC_OK) {
		if (restore)
			reposvc_finishf(&b->op, code, "restore repository: repository: %s", msg.buf);
		else
			reposvc_finish(&b->op, code, msg.buf);
		goto out;
	}
	strbuf_reset(&msg);
	if (check_vanity(vanity, &msg) < 0) {
		reposvc_finishf(&b->op, GRPC_INVALID_ARGUMENT, "%s%s", restore ? "restore repository: vanity repository: " : "",
				msg.buf);
		goto out;
	}
	if (!vanity)
		vanity = repo;
	b->storage = vanity->storage_name && *vanity->storage_name ? vanity->storage_name : repo->storage_name;
	b->vanity_rel = vanity->relative_path;
	b->backup_id = backup_id;
	rel = vanity->relative_path;
	rl = strlen(rel);
	if (rl > 4 && !strcmp(rel + rl - 4, ".git"))
		rl -= 4;
	strbuf_addf(&b->base, "%s/%.*s", g->cfg.backup_root, (int)rl, rel);

	if (restore) {
		restore_start(b);
	} else {
		static const char *const flags[] = { "--show-object-format", NULL };
		struct git_call gc = { 0 };
		gc.git_dir = b->path.buf;
		gc.repo = repo;
		gc.subcmd = "rev-parse";
		gc.flags = flags;
		strbuf_reset(&msg);
		if (gitaly_git_capture(g, &gc, NULL, 0, 4096, format_known, b, &b->cmd, &msg) < 0)
			bk_fail(b, "object hash: %s", msg.buf);
	}
out:
	strbuf_release(&msg);
}

static void backup_repository(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__BackupRepositoryRequest *req = msg_unpack(call, &gitaly__backup_repository_request__descriptor, buf, len);
	if (!req)
		return;
	bk_start(call, data, 0, req, req->repository, req->vanity_repository, req->backup_id, req->incremental, 0);
}

static void restore_repository(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__RestoreRepositoryRequest *req =
		msg_unpack(call, &gitaly__restore_repository_request__descriptor, buf, len);
	if (!req)
		return;
	bk_start(call, data, 1, req, req->repository, req->vanity_repository, req->backup_id, 0,
		 req->always_create);
}

void reposvc_register_backup(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.RepositoryService/BackupRepository", backup_repository, g);
	gitaly_add_unary(s, "/gitaly.RepositoryService/RestoreRepository", restore_repository, g);
}

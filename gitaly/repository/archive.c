/*
 * RepositoryService/GetArchive: `git archive` of a commit (or of one of its
 * subtrees) streamed to the client as it is produced, git paused while the
 * call's send queue is full. Compression runs inside git (its tar filter
 * commands, set to upstream's compressor command lines), so one process
 * carries the whole stream. docs/technical/gitaly-repository.md, "Archives".
 */
#include "repository/repository.h"
#include "read/read.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <stdlib.h>
#include <string.h>

/* Output of the existence check: one short line per looked-up name. */
#define CHECK_OUT_MAX (1024 * 1024)

struct archive {
	struct rd rd;
	struct strbuf path;          /* cleaned, relative to the repository ("." for all) */
	struct strvec exclude;       /* cleaned, relative */
	struct strbuf check_in;      /* cat-file --batch-check -z input */
	struct strvec names;         /* what was looked up, in order */
	struct git_cmd *cmd;         /* git archive, NULL once it exited */
	int paused, failed;
};

static void ar_free(struct rd *rd)
{
	struct archive *x = (struct archive *)rd;
	strbuf_release(&x->path);
	strvec_clear(&x->exclude);
	strbuf_release(&x->check_in);
	strvec_clear(&x->names);
}

static void ar_cancel(struct gitaly_call *c)
{
	struct archive *x = container_of(c, struct archive, rd.base);
	if (x->cmd)
		git_cmd_stop(x->cmd);
}

/*
 * Upstream's relative path check: join with the repository path, refuse what
 * leaves it, and keep the path relative to it ("." for the repository).
 */
static int relative_path(struct archive *x, const ProtobufCBinaryData *in, struct strbuf *out)
{
	struct strbuf joined = STRBUF_INIT;
	const struct strbuf *root = &x->rd.path;
	int rc = 0;

	go_path_join(&joined, root->buf, root->len, (const char *)in->data, in->len);
	strbuf_reset(out);
	if (joined.len == root->len && !memcmp(joined.buf, root->buf, root->len))
		strbuf_addch(out, '.');
	else if (joined.len > root->len && !memcmp(joined.buf, root->buf, root->len) && joined.buf[root->len] == '/')
		strbuf_add(out, joined.buf + root->len + 1, joined.len - root->len - 1);
	else
		rc = -1;
	strbuf_release(&joined);
	if (rc < 0 || rd_has_nul(out->buf, out->len)) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "relative path escapes root directory");
		return -1;
	}
	return 0;
}

/* --- streaming git archive --- */

static void ar_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct archive *x = git_cmd_user(cmd);
	Gitaly__GetArchiveResponse resp = GITALY__GET_ARCHIVE_RESPONSE__INIT;
	if (!x->rd.base.call || x->failed)
		return;
	resp.data.data = (uint8_t *)buf;
	resp.data.len = len;
	if (rd_send(&x->rd, &resp) < 0)
		return;
	if (rd_full(&x->rd) && !x->paused) {
		x->paused = 1;
		git_cmd_pause_stdout(cmd);
	}
}

static void ar_writable(struct rd *rd)
{
	struct archive *x = (struct archive *)rd;
	if (x->paused && x->cmd && !rd_full(rd)) {
		x->paused = 0;
		git_cmd_resume_stdout(x->cmd);
	}
}

static void ar_exit(struct git_cmd *cmd, int status)
{
	struct archive *x = git_cmd_user(cmd);
	x->cmd = NULL;
	if (x->rd.base.call && !x->failed) {
		if (status == 0) {
			rd_ok(&x->rd);
		} else {
			struct strbuf sb = STRBUF_INIT;
			const struct strbuf *err = git_cmd_stderr(cmd);
			gitaly_describe_status(&sb, status);
			rd_finish(&x->rd, GRPC_UNKNOWN, "%s, stderr: %.*s", sb.buf, (int)MIN(err->len, (size_t)1000),
				  err->buf);
			strbuf_release(&sb);
		}
	}
	gitaly_call_drop(&x->rd.base);
}

static const struct git_cmd_ops ar_ops = {
	.on_stdout = ar_stdout,
	.on_exit = ar_exit,
};

static void ar_run(struct archive *x)
{
	Gitaly__GetArchiveRequest *req = x->rd.req;
	struct strvec flags = STRVEC_INIT, args = STRVEC_INIT, paths = STRVEC_INIT;
	struct strbuf msg = STRBUF_INIT;
	const char *config[1];
	struct git_call gc;
	size_t nr_config = 0;

	switch (req->format) {
	case GITALY__GET_ARCHIVE_REQUEST__FORMAT__TAR:
		strvec_push(&flags, "--format=tar");
		break;
	case GITALY__GET_ARCHIVE_REQUEST__FORMAT__TAR_GZ:
		/* upstream pipes the tar through `gzip -c -n`: the same bytes */
		config[nr_config++] = "tar.tar.gz.command=gzip -c -n";
		strvec_push(&flags, "--format=tar.gz");
		break;
	case GITALY__GET_ARCHIVE_REQUEST__FORMAT__TAR_BZ2:
		config[nr_config++] = "tar.tar.bz2.command=bzip2 -c";
		strvec_push(&flags, "--format=tar.bz2");
		break;
	default:
		strvec_push(&flags, "--format=zip");
		break;
	}
	strvec_pushf(&flags, "--prefix=%s/", req->prefix ? req->prefix : "");
	if (!req->elide_path) {
		strvec_push(&args, req->commit_id);
		strvec_push(&paths, x->path.buf);
	} else if (strcmp(x->path.buf, ".")) {
		strvec_pushf(&args, "%s:%s", req->commit_id, x->path.buf);
	} else {
		strvec_push(&args, req->commit_id);
	}
	for (size_t i = 0; i < x->exclude.nr; i++)
		strvec_pushf(&paths, ":(exclude)%s", x->exclude.v[i]);

	rd_git_call(&x->rd, &gc, "archive");
	gc.flags = flags.v;
	gc.args = args.v;
	gc.paths = paths.v;
	gc.config = config;
	gc.nr_config = nr_config;
	gitaly_call_hold(&x->rd.base);
	if (gitaly_git_spawn(x->rd.base.g, &gc, 0, 1, &ar_ops, x, &x->cmd, &msg) < 0) {
		x->cmd = NULL;
		x->rd.base.holds--;   /* nothing started */
		rd_finish(&x->rd, GRPC_INTERNAL, "%s", msg.buf);
	}
	strvec_clear(&flags);
	strvec_clear(&args);
	strvec_clear(&paths);
	strbuf_release(&msg);
}

/* --- preconditions: the path and each exclude exist in the commit --- */

static int is_empty_tree(const char *oid, size_t len)
{
	static const char sha1[] = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
	static const char sha256[] = "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321";
	return (len == sizeof(sha1) - 1 && !memcmp(oid, sha1, len)) ||
	       (len == sizeof(sha256) - 1 && !memcmp(oid, sha256, len));
}

/*
 * `git cat-file --batch-check=%(objectname)` answers each name with its id,
 * or with "<name> missing" (or "ambiguous"): the names are known, so a
 * name holding a newline cannot shift the answers.
 */
static void checked(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct archive *x = arg;
	Gitaly__GetArchiveRequest *req = x->rd.req;
	size_t off = 0;
	(void)err;

	if (!x->rd.base.call)
		goto out;
	if (status != 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "checking archive paths: cat-file exited with %d", status);
		goto out;
	}
	for (size_t i = 0; i < x->names.nr; i++) {
		const char *name = x->names.v[i];
		size_t nlen = strlen(name), left = out->len - off;
		int missing = 0, root = i == 0 && !strcmp(x->path.buf, ".");
		const char *nl;
		if (left > nlen && !memcmp(out->buf + off, name, nlen) && out->buf[off + nlen] == ' ') {
			const char *rest = out->buf + off + nlen + 1;
			if (left - nlen - 1 >= 8 && !memcmp(rest, "missing\n", 8))
				missing = 8;
			else if (left - nlen - 1 >= 10 && !memcmp(rest, "ambiguous\n", 10))
				missing = 10;
		}
		if (missing) {
			off += nlen + 1 + (size_t)missing;
		} else {
			size_t line;
			if (!(nl = memchr(out->buf + off, '\n', left))) {
				rd_finish(&x->rd, GRPC_INTERNAL, "checking archive paths: short cat-file output");
				goto out;
			}
			line = (size_t)(nl - (out->buf + off));
			if (root && is_empty_tree(out->buf + off, line)) {
				rd_finish(&x->rd, GRPC_FAILED_PRECONDITION, "path doesn't exist");
				goto out;
			}
			off += line + 1;
			continue;
		}
		if (root)   /* the commit itself cannot be read */
			rd_finish(&x->rd, GRPC_UNKNOWN, "object not found");
		else if (i == 0)
			rd_finish(&x->rd, GRPC_FAILED_PRECONDITION, "path doesn't exist");
		else
			rd_finish(&x->rd, GRPC_FAILED_PRECONDITION, "exclude[%zu] doesn't exist", i - 1);
		goto out;
	}
	if (req->elide_path) {
		/* `git archive <commit>:<path>` takes excludes relative to the path */
		struct strbuf prefix = STRBUF_INIT;
		strbuf_addf(&prefix, "%s/", x->path.buf);
		for (size_t i = 0; i < x->exclude.nr; i++) {
			char *e = (char *)x->exclude.v[i];   /* ours: strvec copies */
			if (strncmp(e, prefix.buf, prefix.len)) {
				rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "invalid exclude: \"%s\" is not a subdirectory of \"%s\"",
					  e, x->path.buf);
				strbuf_release(&prefix);
				goto out;
			}
			memmove(e, e + prefix.len, strlen(e + prefix.len) + 1);
		}
		strbuf_release(&prefix);
	}
	ar_run(x);
out:
	gitaly_call_drop(&x->rd.base);
}

static void ar_check(struct archive *x)
{
	static const char *const flags[] = { "--batch-check=%(objectname)", "-z", NULL };
	Gitaly__GetArchiveRequest *req = x->rd.req;
	struct strbuf msg = STRBUF_INIT;
	struct git_call gc;

	if (!strcmp(x->path.buf, "."))
		strvec_pushf(&x->names, "%s^{tree}", req->commit_id);
	else
		strvec_pushf(&x->names, "%s:%s", req->commit_id, x->path.buf);
	for (size_t i = 0; i < x->exclude.nr; i++)
		strvec_pushf(&x->names, "%s:%s", req->commit_id, x->exclude.v[i]);
	for (size_t i = 0; i < x->names.nr; i++)
		strbuf_add(&x->check_in, x->names.v[i], strlen(x->names.v[i]) + 1);

	rd_git_call(&x->rd, &gc, "cat-file");
	gc.flags = flags;
	gitaly_call_hold(&x->rd.base);
	if (gitaly_git_capture(x->rd.base.g, &gc, x->check_in.buf, x->check_in.len, CHECK_OUT_MAX, checked, x,
			       NULL, &msg) < 0) {
		x->rd.base.holds--;
		rd_finish(&x->rd, GRPC_INTERNAL, "%s", msg.buf);
	}
	strbuf_release(&msg);
}

void reposvc_get_archive(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__GetArchiveRequest *req = msg_unpack(call, &gitaly__get_archive_request__descriptor, buf, len);
	struct strbuf msg = STRBUF_INIT, ex = STRBUF_INIT;
	struct archive *x;

	if (!req)
		return;
	if (!(x = (struct archive *)rd_start(data, call, sizeof(*x), req, req->repository)))
		return;
	strbuf_init(&x->path, 0);
	strvec_init(&x->exclude);
	strbuf_init(&x->check_in, 0);
	strvec_init(&x->names);
	x->rd.on_free = ar_free;
	x->rd.on_writable = ar_writable;
	x->rd.base.cancel = ar_cancel;

	if (relative_path(x, &req->path, &x->path) < 0)
		goto out;
	for (size_t i = 0; i < req->n_exclude; i++) {
		if (relative_path(x, &req->exclude[i], &ex) < 0)
			goto out;
		strvec_push(&x->exclude, ex.buf);
	}
	if (gitaly_check_revision(req->commit_id, strlen(req->commit_id), &msg) < 0) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "invalid commitId: %s", msg.buf);
		goto out;
	}
	if (req->format != GITALY__GET_ARCHIVE_REQUEST__FORMAT__ZIP &&
	    req->format != GITALY__GET_ARCHIVE_REQUEST__FORMAT__TAR &&
	    req->format != GITALY__GET_ARCHIVE_REQUEST__FORMAT__TAR_GZ &&
	    req->format != GITALY__GET_ARCHIVE_REQUEST__FORMAT__TAR_BZ2) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "invalid format");
		goto out;
	}
	/*
	 * include_lfs_blobs: upstream smudges LFS pointers with objects fetched
	 * from GitLab's internal API, and keeps a pointer whose object cannot be
	 * fetched. We have no such client: pointers stay as they are.
	 */
	ar_check(x);
out:
	strbuf_release(&msg);
	strbuf_release(&ex);
}

/*
 * RepositoryService/GetArchive: `git archive` of a commit (or of one of its
 * subtrees) streamed to the client as it is produced, git paused while the
 * call's send queue is full. Compression runs inside git (its tar filter
 * commands, set to upstream's compressor command lines), so one process
 * carries the whole stream. docs/technical/gitaly-repository.md, "Archives".
 */
#include "repository/repository.h"
#include "read/read.h"
#include "hooks/hooks.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	/* include_lfs_blobs (docs/technical/gitaly-repository.md, "Archives") */
	struct strbuf lfs_dir;       /* the objects fetched for this call; removed at the end */
	struct strvec lfs_oids;      /* distinct pointer oids, fetched in order */
	size_t lfs_next;
	int lfs_fd;
	struct gitlab_req *lfs_req;
	struct strbuf lfs_smudge;    /* filter.lfs.smudge=... */
};

static void lfs_remove_dir(struct archive *x);

static void ar_free(struct rd *rd)
{
	struct archive *x = (struct archive *)rd;
	strbuf_release(&x->path);
	strvec_clear(&x->exclude);
	strbuf_release(&x->check_in);
	strvec_clear(&x->names);
	lfs_remove_dir(x);
	strbuf_release(&x->lfs_dir);
	strvec_clear(&x->lfs_oids);
	strbuf_release(&x->lfs_smudge);
}

static void ar_cancel(struct gitaly_call *c)
{
	struct archive *x = container_of(c, struct archive, rd.base);
	if (x->cmd)
		git_cmd_stop(x->cmd);
	if (x->lfs_req) {
		gitlab_cancel(x->lfs_req);   /* its callback never fires: drop its hold here */
		x->lfs_req = NULL;
		if (x->lfs_fd >= 0)
			close(x->lfs_fd);
		x->lfs_fd = -1;
		gitaly_call_drop(&x->rd.base);
	}
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
	const char *config[3];
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
	if (x->lfs_smudge.len) {
		config[nr_config++] = x->lfs_smudge.buf;
		config[nr_config++] = "filter.lfs.required=false";
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

/*
 * --- include_lfs_blobs ---
 *
 * Upstream has git smudge the archived LFS pointers through its
 * gitaly-lfs-smudge filter, which fetches each object from GitLab's internal
 * API. We fetch them first, from the loop: the pointers in the archived tree
 * (blobs of at most 1024 bytes, git-lfs's cut-off, that read as pointers), one GET
 * /lfs?gl_repository=...&oid=... each, a 200 answer's body saved in a
 * directory of this call; then git archive runs with a smudge filter that
 * prints the saved object for a pointer and the input itself otherwise.
 */
#define LFS_POINTER_MAX 1024
#define LFS_LISTING_MAX (64u * 1024 * 1024)

/* The "oid sha256:<64 hex>" of a Git LFS pointer; 0 when `b` is not one. */
static int lfs_pointer_oid(const char *b, size_t len, char oid[65])
{
	static const char version[] = "version https://git-lfs.github.com/spec/v1\n";
	static const char key[] = "\noid sha256:";
	const char *p, *size;
	if (len < sizeof(version) - 1 || memcmp(b, version, sizeof(version) - 1) || b[len - 1] != '\n')
		return 0;
	for (p = b; p + sizeof(key) - 1 + 65 <= b + len; p++)
		if (!memcmp(p, key, sizeof(key) - 1))
			break;
	if (p + sizeof(key) - 1 + 65 > b + len)
		return 0;
	p += sizeof(key) - 1;
	for (int i = 0; i < 64; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return 0;
	if (p[64] != '\n')
		return 0;
	/* and a size line with digits */
	if (!(size = memmem(b, len, "\nsize ", 6)) || size + 7 >= b + len || size[6] < '0' || size[6] > '9')
		return 0;
	memcpy(oid, p, 64);
	oid[64] = '\0';
	return 1;
}

static void lfs_remove_dir(struct archive *x)
{
	if (x->lfs_dir.len)
		fs_remove_tree(x->lfs_dir.buf);
	strbuf_reset(&x->lfs_dir);
}

/* Every object fetched (or not): the filter, then git archive. */
static void lfs_fetched(struct archive *x)
{
	static const char script[] =
		"d=\"$(dirname \"$0\")\"; t=\"$(mktemp \"$d/in.XXXXXX\")\" || exit 1; cat >\"$t\" || exit 1\n"
		"o=\"$(sed -n 's/^oid sha256:\\([0-9a-f]\\{64\\}\\)$/\\1/p' \"$t\" | head -n 1)\"\n"
		"if [ -n \"$o\" ] && [ -f \"$d/obj-$o\" ]; then cat \"$d/obj-$o\"; else cat \"$t\"; fi\n"
		"r=$?; rm -f \"$t\"; exit $r\n";
	struct strbuf path = STRBUF_INIT;
	int rc;
	strbuf_addf(&path, "%s/smudge.sh", x->lfs_dir.buf);
	if ((rc = fs_write_atomic(path.buf, script, sizeof(script) - 1, 0600)) < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "setting up smudge environment: %s", strerror(-rc));
	} else {
		strbuf_addstr(&x->lfs_smudge, "filter.lfs.smudge=sh ");
		strbuf_add_sh_quoted(&x->lfs_smudge, path.buf);
		ar_run(x);
	}
	strbuf_release(&path);
}

static void lfs_get_next(struct archive *x);

static void lfs_got(void *arg, long status, const char *content_type, const struct strbuf *body, const char *error)
{
	struct archive *x = arg;
	const char *oid = x->lfs_oids.v[x->lfs_next++];
	struct strbuf part = STRBUF_INIT, final = STRBUF_INIT;
	(void)content_type, (void)body;
	x->lfs_req = NULL;
	close(x->lfs_fd);
	x->lfs_fd = -1;
	strbuf_addf(&part, "%s/part-%s", x->lfs_dir.buf, oid);
	strbuf_addf(&final, "%s/obj-%s", x->lfs_dir.buf, oid);
	/* upstream keeps the pointer when GitLab does not answer 200 */
	if (status == 200 && !error) {
		if (rename(part.buf, final.buf) < 0)
			unlink(part.buf);
	} else {
		unlink(part.buf);
		log_msgf(LOG_WARN, "GetArchive: LFS object %s not fetched: %s%ld", oid, error ? error : "status ",
			 error ? 0L : status);
	}
	strbuf_release(&part);
	strbuf_release(&final);
	if (x->rd.base.call)
		lfs_get_next(x);
	gitaly_call_drop(&x->rd.base);
}

static void lfs_get_next(struct archive *x)
{
	const Gitaly__Repository *repo = x->rd.repo;
	struct strbuf path = STRBUF_INIT, err = STRBUF_INIT;
	char *gl, *oid;
	if (x->lfs_next == x->lfs_oids.nr) {
		lfs_fetched(x);
		return;
	}
	strbuf_addf(&path, "%s/part-%s", x->lfs_dir.buf, x->lfs_oids.v[x->lfs_next]);
	x->lfs_fd = open(path.buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (x->lfs_fd < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "saving LFS object: %s", strerror(errno));
		goto out;
	}
	/* url.Values.Encode: keys sorted, values query-escaped */
	gl = curl_easy_escape(NULL, repo && repo->gl_repository ? repo->gl_repository : "", 0);
	oid = curl_easy_escape(NULL, x->lfs_oids.v[x->lfs_next], 0);
	strbuf_reset(&path);
	strbuf_addf(&path, "/lfs?gl_repository=%s&oid=%s", gl ? gl : "", oid ? oid : "");
	curl_free(gl);
	curl_free(oid);
	gitaly_call_hold(&x->rd.base);
	if (!(x->lfs_req = gitlab_get_file(x->rd.base.g, path.buf, x->lfs_fd, lfs_got, x, &err))) {
		x->rd.base.holds--;
		close(x->lfs_fd);
		x->lfs_fd = -1;
		rd_finish(&x->rd, GRPC_INTERNAL, "error loading LFS object: %s", err.buf);
	}
out:
	strbuf_release(&path);
	strbuf_release(&err);
}

/* `git cat-file --batch` of the small blobs: keep the pointers' oids. */
static void lfs_read(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct archive *x = arg;
	const char *p = out->buf, *end = out->buf + out->len;
	struct strbuf dir = STRBUF_INIT, msg = STRBUF_INIT;
	const struct gitaly_storage *st;
	(void)err;
	if (!x->rd.base.call)
		goto out;
	if (status != 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "reading LFS pointers: cat-file exited with %d", status);
		goto out;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *sp;
		unsigned long size;
		char oid[65];
		if (!nl || !(sp = memrchr(p, ' ', (size_t)(nl - p))))
			break;
		if (nl - sp - 1 == 7 && !memcmp(sp + 1, "missing", 7)) {
			p = nl + 1;   /* "<oid> missing": no data follows */
			continue;
		}
		size = strtoul(sp + 1, NULL, 10);
		p = nl + 1;
		if (size > (size_t)(end - p))
			break;
		if (lfs_pointer_oid(p, size, oid)) {
			int seen = 0;
			for (size_t i = 0; i < x->lfs_oids.nr && !seen; i++)
				seen = !strcmp(x->lfs_oids.v[i], oid);
			if (!seen)
				strvec_push(&x->lfs_oids, oid);
		}
		p += size + 1;
	}
	if (!x->lfs_oids.nr) {
		ar_run(x);
		goto out;
	}
	if (gitaly_storage(x->rd.base.g, x->rd.repo->storage_name, &st, &msg) != GRPC_OK ||
	    gitaly_tmp_dir(x->rd.base.g, st, &dir) < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "setting up smudge environment: no temporary directory");
		goto out;
	}
	strbuf_addf(&x->lfs_dir, "%s/archive-lfs-XXXXXX", dir.buf);
	if (!mkdtemp(x->lfs_dir.buf)) {
		strbuf_reset(&x->lfs_dir);
		rd_finish(&x->rd, GRPC_INTERNAL, "setting up smudge environment: %s", strerror(errno));
		goto out;
	}
	lfs_get_next(x);
out:
	strbuf_release(&dir);
	strbuf_release(&msg);
	gitaly_call_drop(&x->rd.base);
}

/* `git ls-tree -r -l -z` of what is archived: the blobs small enough to be pointers. */
static void lfs_listed(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const flags[] = { "--batch", NULL };
	struct archive *x = (struct archive *)rd;
	const char *p = out->buf, *end = out->buf + out->len;
	struct strbuf msg = STRBUF_INIT;
	struct git_call gc;
	(void)err;
	if (status != 0) {
		rd_finish(rd, GRPC_INTERNAL, "listing LFS pointers: ls-tree exited with %d", status);
		return;
	}
	strbuf_reset(&x->check_in);
	/* "<mode> SP <type> SP <oid> SP <size>\t<path>\0" */
	while (p < end) {
		const char *z = memchr(p, '\0', (size_t)(end - p)), *t1, *t2, *t3;
		if (!z)
			break;
		t1 = memchr(p, ' ', (size_t)(z - p));
		t2 = t1 ? memchr(t1 + 1, ' ', (size_t)(z - t1 - 1)) : NULL;
		t3 = t2 ? memchr(t2 + 1, ' ', (size_t)(z - t2 - 1)) : NULL;
		if (t3 && t2 - t1 - 1 == 4 && !memcmp(t1 + 1, "blob", 4)) {
			const char *sz = t3 + 1;
			while (*sz == ' ')
				sz++;
			if (strtoul(sz, NULL, 10) <= LFS_POINTER_MAX) {
				strbuf_add(&x->check_in, t2 + 1, (size_t)(t3 - t2 - 1));
				strbuf_addch(&x->check_in, '\n');
			}
		}
		p = z + 1;
	}
	if (!x->check_in.len) {
		ar_run(x);
		return;
	}
	rd_git_call(rd, &gc, "cat-file");
	gc.flags = flags;
	gitaly_call_hold(&rd->base);
	if (gitaly_git_capture(rd->base.g, &gc, x->check_in.buf, x->check_in.len, LFS_LISTING_MAX, lfs_read, x,
			       NULL, &msg) < 0) {
		rd->base.holds--;
		rd_finish(rd, GRPC_INTERNAL, "%s", msg.buf);
	}
	strbuf_release(&msg);
}

static void lfs_list(struct archive *x)
{
	static const char *const flags[] = { "-r", "-l", "-z", "--full-tree", NULL };
	Gitaly__GetArchiveRequest *req = x->rd.req;
	const char *args[2] = { req->commit_id, NULL };
	const char *paths[2] = { x->path.buf, NULL };
	struct git_call gc;
	rd_git_call(&x->rd, &gc, "ls-tree");
	gc.flags = flags;
	gc.args = args;
	gc.paths = paths;
	rd_capture(&x->rd, &gc, LFS_LISTING_MAX, lfs_listed);
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
	if (req->include_lfs_blobs && gitlab_configured(x->rd.base.g))
		lfs_list(x);
	else
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
	strbuf_init(&x->lfs_dir, 0);
	strvec_init(&x->lfs_oids);
	strbuf_init(&x->lfs_smudge, 0);
	x->lfs_fd = -1;
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
	ar_check(x);
out:
	strbuf_release(&msg);
	strbuf_release(&ex);
}

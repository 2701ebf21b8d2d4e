/*
 * RepositoryService: registration, the asynchronous-RPC plumbing shared by
 * the other repository/ files, and the small read-only RPCs (RepositoryExists, RepositorySize,
 * GetConfig, GetInfoAttributes).
 */
#include "repository/repository.h"
#include "base/pb.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

/* --- the life cycle of one asynchronous RPC --- */

void reposvc_init(struct gitaly_call *op, struct gitaly *g, struct grpc_call *call,
		  void (*release)(struct gitaly_call *op))
{
	gitaly_call_init(op, g, call, release);
	gitaly_call_hold(op);   /* the work, until reposvc_finish() */
}

void reposvc_finish(struct gitaly_call *op, enum grpc_code code, const char *msg)
{
	if (op->finished)
		return;
	if (op->call) {
		/*
		 * The work is over before the call closes, so that a close at
		 * once (inside the finish) releases the op without cancelling.
		 */
		op->holds--;
		gitaly_call_finish(op, code, msg, NULL);
		return;
	}
	gitaly_call_finish(op, code, msg, NULL);
	gitaly_call_drop(op);
}

void reposvc_finishf(struct gitaly_call *op, enum grpc_code code, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	reposvc_finish(op, code, sb.buf);
	strbuf_release(&sb);
}

void reposvc_reply(struct gitaly_call *op, const void *msg)
{
	if (op->call)
		msg_send(op->call, msg);
	reposvc_finish(op, GRPC_OK, NULL);
}

/* --- helpers --- */

void reposvc_kill(struct git_cmd *cmd)
{
	if (!cmd)
		return;
	git_cmd_stop(cmd);   /* SIGTERM first: git removes its locks (lib/git/cmd.h) */
	/* on_exit waits for EOF on stdout: keep reading even if we had paused it */
	git_cmd_resume_stdout(cmd);
	git_cmd_close_stdin(cmd);
}

static int fsync_path(const char *path, int dir)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | (dir ? O_DIRECTORY : O_NOFOLLOW));
	int rc = 0;
	if (fd < 0)
		return errno == ELOOP ? 0 : -errno; /* a symlink: nothing of ours to sync */
	if (fsync(fd) < 0 && errno != EINVAL)
		rc = -errno;
	close(fd);
	return rc;
}

int reposvc_fsync_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	struct strbuf sub = STRBUF_INIT;
	int rc = 0;

	if (!d)
		return -errno;
	while (rc == 0 && (de = readdir(d))) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		strbuf_reset(&sub);
		strbuf_addf(&sub, "%s/%s", path, de->d_name);
		if (lstat(sub.buf, &st) < 0) {
			rc = -errno;
			break;
		}
		if (S_ISDIR(st.st_mode))
			rc = reposvc_fsync_tree(sub.buf);
		else if (S_ISREG(st.st_mode))
			rc = fsync_path(sub.buf, 0);
	}
	closedir(d);
	strbuf_release(&sub);
	return rc ? rc : fsync_path(path, 1);
}

int reposvc_fsync_hierarchy(const char *root, const char *path)
{
	struct strbuf p = STRBUF_INIT;
	size_t rl = strlen(root);
	int rc = 0;

	strbuf_addstr(&p, path);
	for (;;) {
		char *slash;
		if ((rc = fsync_path(p.buf, 1)) < 0)
			break;
		if (p.len <= rl)
			break;
		slash = strrchr(p.buf, '/');
		if (!slash || (size_t)(slash - p.buf) < rl)
			break;
		strbuf_setlen(&p, (size_t)(slash - p.buf) > 0 ? (size_t)(slash - p.buf) : 1);
	}
	strbuf_release(&p);
	return rc;
}

int reposvc_check_refname(const char *name, size_t len, struct strbuf *msg)
{
	const char *p, *end = name + len;

	if (len == 4 && !memcmp(name, "HEAD", 4)) {
		strbuf_addstr(msg, "HEAD reference not allowed");
		return -1;
	}
	if (len < 5 || memcmp(name, "refs/", 5)) {
		strbuf_addstr(msg, "reference is not fully qualified");
		return -1;
	}
	p = name + 5;
	if (p == end) {
		strbuf_addstr(msg, "refs/ is not a valid reference");
		return -1;
	}
	if (end[-1] == '/') {
		strbuf_addstr(msg, "reference must not end with slash");
		return -1;
	}
	if (end[-1] == '.') {
		strbuf_addstr(msg, "reference must not end with dot");
		return -1;
	}
	for (const char *q = p; q < end; q++) {
		unsigned char c = (unsigned char)*q;
		if (c == '@' && q + 1 < end && q[1] == '{') {
			strbuf_addstr(msg, "reference must not contain @{");
			return -1;
		}
		if (c == '.' && q + 1 < end && q[1] == '.') {
			strbuf_addstr(msg, "reference must not contain double dots");
			return -1;
		}
	}
	for (const char *q = p; q < end; q++) {
		unsigned char c = (unsigned char)*q;
		if (c == ' ' || c == '\t' || c == '\n') {
			strbuf_addstr(msg, "reference must not contain space characters");
			return -1;
		}
		if (strchr(":?[\\^~*\177", c) && c) {
			strbuf_addstr(msg, "reference must not contain special characters");
			return -1;
		}
		if (c < 32) {
			strbuf_addstr(msg, "reference must not contain control characters");
			return -1;
		}
	}
	while (p < end) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		size_t n = slash ? (size_t)(slash - p) : (size_t)(end - p);
		if (n == 0) {
			strbuf_addstr(msg, "empty component is not allowed");
			return -1;
		}
		if (p[0] == '.') {
			strbuf_addstr(msg, "component must not start with dot");
			return -1;
		}
		if (n >= 5 && !memcmp(p + n - 5, ".lock", 5)) {
			strbuf_addstr(msg, "component must not end with .lock");
			return -1;
		}
		p += n + (slash ? 1 : 0);
	}
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int reposvc_list_dir(const char *path, char ***names, size_t *nr)
{
	DIR *d = opendir(path);
	struct dirent *de;
	size_t alloc = 0;

	*names = NULL;
	*nr = 0;
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		ALLOC_GROW(*names, *nr + 1, alloc);
		(*names)[(*nr)++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (*nr)
		qsort(*names, *nr, sizeof(**names), cmp_names);
	return 0;
}

void reposvc_free_names(char **names, size_t nr)
{
	for (size_t i = 0; i < nr; i++)
		free(names[i]);
	free(names);
}

int reposvc_hash_file(EVP_MD_CTX *ctx, const char *path)
{
	char buf[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			int e = errno;
			if (e == EINTR)
				continue;
			close(fd);
			return -e;
		}
		EVP_DigestUpdate(ctx, buf, (size_t)n);
	}
	close(fd);
	return 0;
}

void reposvc_hex(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

/* --- RepositoryExists --- */

static void repository_exists(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__RepositoryExistsRequest *req = msg_unpack(call, &gitaly__repository_exists_request__descriptor,
							 buf, len);
	Gitaly__RepositoryExistsResponse resp = GITALY__REPOSITORY_EXISTS_RESPONSE__INIT;
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	/* absent or not a repository: a plain "no", not an error, as upstream answers */
	if (code == GRPC_OK || (code == GRPC_NOT_FOUND && !strncmp(msg.buf, "repository not found", 20)) ||
	    (code == GRPC_FAILED_PRECONDITION && !strncmp(msg.buf, "repository not valid", 20))) {
		resp.exists = code == GRPC_OK;
		msg_reply(call, &resp);
	} else {
		grpc_call_finish(call, code, msg.buf, NULL);
	}
	strbuf_release(&path);
	strbuf_release(&msg);
	msg_free(req);
}

/* --- RepositorySize: a walk of the repository on the thread pool --- */

struct size_op {
	struct gitaly_call op;
	uv_work_t work;
	char *path;
	int64_t bytes;
	int err;
};

int reposvc_dir_size(const char *path, int64_t *total)
{
	DIR *d = opendir(path);
	struct dirent *de;
	struct strbuf sub = STRBUF_INIT;
	int rc = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno; /* removed while we walk: fine */
	while (rc == 0 && (de = readdir(d))) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		strbuf_reset(&sub);
		strbuf_addf(&sub, "%s/%s", path, de->d_name);
		if (lstat(sub.buf, &st) < 0) {
			if (errno != ENOENT)
				rc = -errno;
			continue;
		}
		if (S_ISDIR(st.st_mode))
			rc = reposvc_dir_size(sub.buf, total);
		else
			*total += st.st_size;
	}
	closedir(d);
	strbuf_release(&sub);
	return rc;
}

static void size_work(uv_work_t *w)
{
	struct size_op *s = w->data;
	s->err = reposvc_dir_size(s->path, &s->bytes);
}

static void size_after(uv_work_t *w, int status)
{
	struct size_op *s = w->data;
	Gitaly__RepositorySizeResponse resp = GITALY__REPOSITORY_SIZE_RESPONSE__INIT;
	if (s->err) {
		reposvc_finishf(&s->op, GRPC_INTERNAL, "calculating directory size: walking directory: %s",
				strerror(-s->err));
		return;
	}
	resp.size = s->bytes / 1024;
	reposvc_reply(&s->op, &resp);
}

static void size_release(struct gitaly_call *op)
{
	struct size_op *s = container_of(op, struct size_op, op);
	free(s->path);
	free(s);
}

static void repository_size(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__RepositorySizeRequest *req = msg_unpack(call, &gitaly__repository_size_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct size_op *s;
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	msg_free(req);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		strbuf_release(&path);
		strbuf_release(&msg);
		return;
	}
	s = xcalloc(1, sizeof(*s));
	reposvc_init(&s->op, g, call, size_release);
	s->path = strbuf_detach(&path, NULL);
	s->work.data = s;
	gitaly_call_watch(&s->op);
	if (uv_queue_work(g->loop, &s->work, size_work, size_after) < 0)
		reposvc_finish(&s->op, GRPC_INTERNAL, "cannot queue work");
	strbuf_release(&msg);
}

/* --- GetConfig / GetInfoAttributes: a file, streamed with backpressure --- */

struct file_stream {
	struct gitaly_call op;
	int fd;
	uint32_t field;
	char *chunk;              /* MSG_CHUNK bytes */
	struct strbuf msg;
};

static void file_stream_pump(struct file_stream *f)
{
	while (f->op.call && !grpc_call_send_full(f->op.call)) {
		ssize_t n = read(f->fd, f->chunk, MSG_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			reposvc_finishf(&f->op, GRPC_INTERNAL, "sending file: %s", strerror(errno));
			return;
		}
		if (n == 0) {
			reposvc_finish(&f->op, GRPC_OK, NULL);
			return;
		}
		strbuf_reset(&f->msg);
		pb_put_bytes(&f->msg, f->field, f->chunk, (size_t)n);
		grpc_call_send(f->op.call, f->msg.buf, f->msg.len);
	}
}

static void file_stream_writable(struct grpc_call *call)
{
	struct file_stream *f = grpc_call_user(call);
	if (!f->op.finished)
		file_stream_pump(f);
}

static void file_stream_close(struct grpc_call *call, enum grpc_code code)
{
	gitaly_call_closed(grpc_call_user(call));
}

/* Nothing runs between two pumps: a closed call just ends the work. */
static void file_stream_cancel(struct gitaly_call *op)
{
	reposvc_finish(op, GRPC_CANCELLED, "context canceled");
}

static const struct grpc_call_ops file_stream_ops = {
	.on_writable = file_stream_writable,
	.on_close = file_stream_close,
};

static void file_stream_release(struct gitaly_call *op)
{
	struct file_stream *f = container_of(op, struct file_stream, op);
	if (f->fd >= 0)
		close(f->fd);
	free(f->chunk);
	strbuf_release(&f->msg);
	free(f);
}

/* Validate, open <repo>/<name> and stream it; `missing` decides what an absent file means. */
static void stream_repo_file(struct grpc_call *call, struct gitaly *g, const Gitaly__Repository *repo,
			     const char *name, uint32_t field, int config)
{
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct file_stream *f;
	enum grpc_code code;
	int fd;

	code = gitaly_locate(g, repo, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	strbuf_addf(&path, "/%s", name);
	fd = open(path.buf, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (config)
			grpc_call_finishf(call, e == ENOENT ? GRPC_NOT_FOUND : GRPC_INTERNAL,
					  "opening gitconfig: open %s: %s", path.buf, strerror(e));
		else if (e == ENOENT) /* no attributes: one empty message */
			grpc_call_reply(call, "", 0);
		else
			grpc_call_finishf(call, GRPC_INTERNAL, "failure to read info attributes: open %s: %s",
					  path.buf, strerror(e));
		goto out;
	}
	f = xcalloc(1, sizeof(*f));
	reposvc_init(&f->op, g, call, file_stream_release);
	f->op.cancel = file_stream_cancel;
	f->fd = fd;
	f->field = field;
	f->chunk = xmalloc(MSG_CHUNK);
	strbuf_init(&f->msg, 0);
	grpc_call_set_ops(call, &file_stream_ops, f);
	file_stream_pump(f);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
}

static void get_config(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__GetConfigRequest *req = msg_unpack(call, &gitaly__get_config_request__descriptor, buf, len);
	if (!req)
		return;
	stream_repo_file(call, data, req->repository, "config", 1, 1);
	msg_free(req);
}

static void get_info_attributes(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__GetInfoAttributesRequest *req = msg_unpack(call, &gitaly__get_info_attributes_request__descriptor,
							  buf, len);
	if (!req)
		return;
	stream_repo_file(call, data, req->repository, "info/attributes", 1, 0);
	msg_free(req);
}

/* --- registration --- */

void gitaly_register_repository(struct gitaly *g, struct grpc_server *s)
{
	static const struct {
		const char *method;
		grpc_unary_fn fn;
	} methods[] = {
		{ "CreateRepository", reposvc_create_repository },
		{ "CreateRepositoryFromURL", reposvc_create_from_url },
		{ "RepositoryExists", repository_exists },
		{ "RemoveRepository", reposvc_remove_repository },
		{ "CalculateChecksum", reposvc_calculate_checksum },
		{ "GetSnapshot", reposvc_get_snapshot },
		{ "CreateRepositoryFromSnapshot", reposvc_create_from_snapshot },
		{ "GetConfig", get_config },
		{ "GetInfoAttributes", get_info_attributes },
		{ "GetCustomHooks", reposvc_get_custom_hooks },
		{ "BackupCustomHooks", reposvc_get_custom_hooks },
		{ "RepositorySize", repository_size },
		{ "WriteRef", reposvc_write_ref },
		{ "ReplicateRepository", reposvc_replicate_repository },
		{ "Fsck", reposvc_fsck },
		{ "GetArchive", reposvc_get_archive },
		{ "SearchFilesByName", reposvc_search_files_by_name },
		{ "SearchFilesByContent", reposvc_search_files_by_content },
		{ "GetFileAttributes", reposvc_get_file_attributes },
		{ "FullPath", reposvc_full_path },
		{ "SetFullPath", reposvc_set_full_path },
		{ "GetRawChanges", reposvc_get_raw_changes },
		{ "FindLicense", reposvc_find_license },
		{ "FetchRemote", reposvc_fetch_remote },
		{ "FetchSourceBranch", reposvc_fetch_source_branch },
		{ "CreateFork", reposvc_create_fork },
		{ "ApplyGitattributes", reposvc_apply_gitattributes },
	};
	for (size_t i = 0; i < ARRAY_SIZE(methods); i++) {
		struct strbuf path = STRBUF_INIT;
		strbuf_addf(&path, "/gitaly.RepositoryService/%s", methods[i].method);
		gitaly_add_unary(s, path.buf, methods[i].fn, g);
		strbuf_release(&path);
	}
	reposvc_register_info(g, s);
	reposvc_register_walk_repos(g, s);
	reposvc_register_replica_info(g, s);
	reposvc_register_set_custom_hooks(g, s);
	reposvc_register_housekeeping(g, s);
	reposvc_register_bundle(g, s);
	reposvc_register_backup(g, s);
}

/*
 * Custom hooks: GetCustomHooks / BackupCustomHooks, a tar of
 * <repo>/custom_hooks made by tar(1) as upstream does, and the transactional
 * replacement of that directory used by replication (the vote: docs/technical/gitaly-node.md, "Votes").
 */
#include "repository/repository.h"
#include "base/pb.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

/* --- the directory vote --- */

/* Go's os.FileMode bits for an lstat result. */
static uint32_t go_file_mode(mode_t m)
{
	uint32_t v = m & 0777;
	switch (m & S_IFMT) {
	case S_IFDIR: v |= 0x80000000u; break;
	case S_IFLNK: v |= 0x08000000u; break;
	case S_IFIFO: v |= 0x02000000u; break;
	case S_IFSOCK: v |= 0x01000000u; break;
	case S_IFBLK: v |= 0x04000000u; break;
	case S_IFCHR: v |= 0x04000000u | 0x00200000u; break;
	}
	if (m & S_ISUID)
		v |= 0x00800000u;
	if (m & S_ISGID)
		v |= 0x00400000u;
	if (m & S_ISVTX)
		v |= 0x00100000u;
	return v;
}

static int hash_entry(EVP_MD_CTX *ctx, const char *abs, const char *rel, const struct stat *st)
{
	uint32_t mode = go_file_mode(st->st_mode);
	uint8_t be[4] = { (uint8_t)(mode >> 24), (uint8_t)(mode >> 16), (uint8_t)(mode >> 8), (uint8_t)mode };

	EVP_DigestUpdate(ctx, rel, strlen(rel));
	EVP_DigestUpdate(ctx, be, sizeof(be));
	if (S_ISDIR(st->st_mode))
		return 0;
	return reposvc_hash_file(ctx, abs); /* follows symlinks, as upstream's walk does */
}

static int hash_dir(EVP_MD_CTX *ctx, const char *abs, const char *rel)
{
	char **names;
	size_t nr;
	struct strbuf sa = STRBUF_INIT, sr = STRBUF_INIT;
	int rc = reposvc_list_dir(abs, &names, &nr);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < nr && rc == 0; i++) {
		struct stat st;
		strbuf_reset(&sa);
		strbuf_reset(&sr);
		strbuf_addf(&sa, "%s/%s", abs, names[i]);
		if (*rel)
			strbuf_addf(&sr, "%s/", rel);
		strbuf_addstr(&sr, names[i]);
		if (lstat(sa.buf, &st) < 0) {
			rc = -errno;
			break;
		}
		rc = hash_entry(ctx, sa.buf, sr.buf, &st);
		if (rc == 0 && S_ISDIR(st.st_mode))
			rc = hash_dir(ctx, sa.buf, sr.buf);
	}
	reposvc_free_names(names, nr);
	strbuf_release(&sa);
	strbuf_release(&sr);
	return rc;
}

int reposvc_hooks_vote_hash(const char *dir, uint8_t out[20])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	struct stat st;
	int rc;

	EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
	if (lstat(dir, &st) < 0)
		rc = -errno;
	else if ((rc = hash_entry(ctx, dir, ".", &st)) == 0 && S_ISDIR(st.st_mode))
		rc = hash_dir(ctx, dir, "");
	EVP_DigestFinal_ex(ctx, out, &n);
	EVP_MD_CTX_free(ctx);
	return rc;
}

/* --- replacing custom_hooks transactionally --- */

struct hooks_install {
	struct gitaly_call *op;
	char *repo, *tmp, *lock;
	reposvc_hooks_installed_fn done;
	uint8_t vote[20];
};

static void install_end(struct hooks_install *h, enum grpc_code code, const char *msg)
{
	unlink(h->lock);
	h->done(h->op, code, msg);
	free(h->repo);
	free(h->tmp);
	free(h->lock);
	free(h);
}

static void committed_voted(void *arg, enum grpc_code code, const char *msg)
{
	struct hooks_install *h = arg;
	struct strbuf m = STRBUF_INIT;
	if (code != GRPC_OK)
		strbuf_addf(&m, "casting committed vote: vote failed: %s", msg);
	install_end(h, code == GRPC_OK ? GRPC_OK : code, m.buf);
	strbuf_release(&m);
}

static void prepared_voted(void *arg, enum grpc_code code, const char *msg)
{
	struct hooks_install *h = arg;
	struct strbuf from = STRBUF_INIT, to = STRBUF_INIT, m = STRBUF_INIT;
	int rc;

	if (code != GRPC_OK) {
		strbuf_addf(&m, "casting prepared vote: vote failed: %s", msg);
		install_end(h, code, m.buf);
		goto out;
	}
	if (gitaly_call_gone(h->op)) {
		install_end(h, GRPC_CANCELLED, "context canceled");
		goto out;
	}
	/* move the old hooks out of the way, the new ones in */
	strbuf_addf(&from, "%s/custom_hooks", h->repo);
	strbuf_addf(&to, "%s/previous_hooks", h->tmp);
	if (rename(from.buf, to.buf) < 0 && errno != ENOENT) {
		strbuf_addf(&m, "moving current hooks to temp: %s", strerror(errno));
		install_end(h, GRPC_INTERNAL, m.buf);
		goto out;
	}
	strbuf_reset(&to);
	strbuf_addf(&to, "%s/custom_hooks", h->tmp);
	if ((rc = reposvc_fsync_tree(to.buf)) < 0) {
		strbuf_addf(&m, "syncing extracted custom hooks: %s", strerror(-rc));
		install_end(h, GRPC_INTERNAL, m.buf);
		goto out;
	}
	if (rename(to.buf, from.buf) < 0) {
		strbuf_addf(&m, "moving new hooks to repo: %s", strerror(errno));
		install_end(h, GRPC_INTERNAL, m.buf);
		goto out;
	}
	reposvc_fsync_hierarchy(h->repo, h->repo);
	if ((rc = reposvc_hooks_vote_hash(from.buf, h->vote)) < 0) {
		strbuf_addf(&m, "generating committed vote: %s", strerror(-rc));
		install_end(h, GRPC_INTERNAL, m.buf);
		goto out;
	}
	vote_cast(h->op->g, h->op->call, VOTE_PHASE_COMMITTED, h->vote, committed_voted, h);
out:
	strbuf_release(&from);
	strbuf_release(&to);
	strbuf_release(&m);
}

int reposvc_hooks_install(struct gitaly_call *op, const char *repo_path, const char *tmp_dir,
			  reposvc_hooks_installed_fn done, struct strbuf *msg)
{
	struct hooks_install *h;
	struct strbuf p = STRBUF_INIT;
	int fd, rc;

	if (gitaly_call_gone(op)) {
		strbuf_addstr(msg, "context canceled");
		return -1;
	}
	strbuf_addf(&p, "%s/custom_hooks.lock", repo_path);
	fd = open(p.buf, O_CREAT | O_EXCL | O_RDONLY | O_CLOEXEC, 0400);
	if (fd < 0) {
		strbuf_addf(msg, "locking hooks: %s", errno == EEXIST ? "file already locked" : strerror(errno));
		strbuf_release(&p);
		return -1;
	}
	close(fd);
	h = xcalloc(1, sizeof(*h));
	h->op = op;
	h->repo = xstrdup(repo_path);
	h->tmp = xstrdup(tmp_dir);
	h->lock = strbuf_detach(&p, NULL);
	h->done = done;

	/* an empty archive means "no hooks": an empty directory replaces the old one */
	strbuf_addf(&p, "%s/custom_hooks", tmp_dir);
	if (mkdir(p.buf, 0755) < 0 && errno != EEXIST) {
		strbuf_addf(msg, "making temp hooks directory: %s", strerror(errno));
		goto fail;
	}
	if ((rc = reposvc_hooks_vote_hash(p.buf, h->vote)) < 0) {
		strbuf_addf(msg, "generating prepared vote: %s", strerror(-rc));
		goto fail;
	}
	strbuf_release(&p);
	vote_cast(op->g, op->call, VOTE_PHASE_PREPARED, h->vote, prepared_voted, h);
	return 0;
fail:
	unlink(h->lock);
	free(h->repo);
	free(h->tmp);
	free(h->lock);
	free(h);
	strbuf_release(&p);
	return -1;
}

/* --- GetCustomHooks / BackupCustomHooks --- */

struct hooks_stream {
	struct gitaly_call op;
	struct git_cmd *cmd;
	struct strbuf msg;
};

static void hooks_stream_release(struct gitaly_call *op)
{
	struct hooks_stream *h = container_of(op, struct hooks_stream, op);
	strbuf_release(&h->msg);
	free(h);
}

static void hooks_stream_cancel(struct gitaly_call *op)
{
	reposvc_kill(container_of(op, struct hooks_stream, op)->cmd);
}

static void tar_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct hooks_stream *h = git_cmd_user(cmd);
	if (!h->op.call)
		return;
	while (len) {
		size_t n = MIN(len, (size_t)MSG_CHUNK);
		strbuf_reset(&h->msg);
		pb_put_bytes(&h->msg, 1, buf, n);
		grpc_call_send(h->op.call, h->msg.buf, h->msg.len);
		buf += n;
		len -= n;
	}
	if (grpc_call_send_full(h->op.call))
		git_cmd_pause_stdout(cmd);
}

static void tar_exit(struct git_cmd *cmd, int status)
{
	struct hooks_stream *h = git_cmd_user(cmd);
	struct strbuf m = STRBUF_INIT;
	h->cmd = NULL;
	if (status == 0) {
		reposvc_finish(&h->op, GRPC_OK, NULL);
		return;
	}
	strbuf_addstr(&m, "reading custom hooks: archiving hooks: waiting for tar command completion: ");
	gitaly_describe_status(&m, status);
	reposvc_finish(&h->op, gitaly_call_gone(&h->op) ? GRPC_CANCELLED : GRPC_INTERNAL, m.buf);
	strbuf_release(&m);
}

static const struct git_cmd_ops tar_ops = {
	.on_stdout = tar_stdout,
	.on_exit = tar_exit,
};

static void hooks_writable(struct grpc_call *call)
{
	struct hooks_stream *h = grpc_call_user(call);
	if (h->cmd)
		git_cmd_resume_stdout(h->cmd);
}

static void hooks_close(struct grpc_call *call, enum grpc_code code)
{
	gitaly_call_closed(grpc_call_user(call));
}

static const struct grpc_call_ops hooks_call_ops = {
	.on_writable = hooks_writable,
	.on_close = hooks_close,
};

void reposvc_get_custom_hooks(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	/* GetCustomHooksRequest and BackupCustomHooksRequest: field 1 is the repository in both */
	Gitaly__GetCustomHooksRequest *req = msg_unpack(call, &gitaly__get_custom_hooks_request__descriptor,
						       buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT, hooks = STRBUF_INIT;
	struct git_cmd_spec spec = { 0 };
	struct hooks_stream *h;
	struct stat st;
	enum grpc_code code;
	int rc;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	strbuf_addf(&hooks, "%s/custom_hooks", path.buf);
	if (lstat(hooks.buf, &st) < 0 && errno == ENOENT) {
		grpc_call_finish(call, GRPC_OK, NULL, NULL); /* no hooks: no data at all */
		goto out;
	}
	{
		const char *argv[] = { "tar", "-c", "-f", "-", "-C", path.buf, "custom_hooks", NULL };
		spec.argv = argv;
		spec.env = g->base_env.v;
		spec.pipe_stdout = 1;
		h = xcalloc(1, sizeof(*h));
		reposvc_init(&h->op, g, call, hooks_stream_release);
		h->op.cancel = hooks_stream_cancel;
		strbuf_init(&h->msg, 0);
		rc = git_cmd_spawn(g->loop, &spec, &tar_ops, h, &h->cmd);
		if (rc < 0) {
			grpc_call_finishf(call, GRPC_INTERNAL, "reading custom hooks: archiving hooks: %s",
					  uv_strerror(rc));
			hooks_stream_release(&h->op);
			goto out;
		}
		grpc_call_set_ops(call, &hooks_call_ops, h);
	}
out:
	strbuf_release(&path);
	strbuf_release(&msg);
	strbuf_release(&hooks);
	msg_free(req);
}

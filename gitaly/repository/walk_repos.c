/*
 * InternalGitaly/WalkRepos: every repository of a storage, found by walking
 * its directories in byte order (Go's filepath.WalkDir), as praefect's
 * list-untracked-repositories uses it. A directory that is a repository
 * (objects/, refs/ and HEAD) is reported with its modification time and not
 * entered; +gitaly at the top is skipped. The walk advances only while the
 * call can take messages (backpressure), one directory level on the stack
 * at a time.
 */
#include "repository/repository.h"
#include "base/log.h"
#include "base/util.h"
#include "internal.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "base/banned.h"

struct walk_frame {
	char *rel;                /* relative to the storage, "" for its root */
	char **names;
	size_t nr, next;
};

struct walk_op {
	struct gitaly_call op;
	char *root;
	struct walk_frame *stack;
	size_t depth, alloc;
};

static void frame_release(struct walk_frame *f)
{
	free(f->rel);
	reposvc_free_names(f->names, f->nr);
}

static void walk_release(struct gitaly_call *op)
{
	struct walk_op *w = container_of(op, struct walk_op, op);
	for (size_t i = 0; i < w->depth; i++)
		frame_release(&w->stack[i]);
	free(w->stack);
	free(w->root);
	free(w);
}

static int is_repository(const char *path)
{
	static const char *const entries[] = { "objects", "refs", "HEAD" };
	struct strbuf e = STRBUF_INIT;
	struct stat st;
	int ok = 1;
	for (size_t i = 0; ok && i < ARRAY_SIZE(entries); i++) {
		strbuf_reset(&e);
		strbuf_addf(&e, "%s/%s", path, entries[i]);
		ok = stat(e.buf, &st) == 0;
	}
	strbuf_release(&e);
	return ok;
}

/* Enter directory `rel`; a directory that vanished meanwhile is skipped, as upstream does. */
static int walk_push(struct walk_op *w, char *rel, struct strbuf *msg)
{
	struct strbuf path = STRBUF_INIT;
	struct walk_frame *f;
	char **names;
	size_t nr;
	int r;

	strbuf_addf(&path, "%s%s%s", w->root, *rel ? "/" : "", rel);
	r = reposvc_list_dir(path.buf, &names, &nr);
	strbuf_release(&path);
	if (r == -ENOENT || r == -ENOTDIR) {
		free(rel);
		return 0;
	}
	if (r < 0) {
		strbuf_addf(msg, "open %s: %s", rel, strerror(-r));
		free(rel);
		return -1;
	}
	ALLOC_GROW(w->stack, w->depth + 1, w->alloc);
	f = &w->stack[w->depth++];
	f->rel = rel;
	f->names = names;
	f->nr = nr;
	f->next = 0;
	return 0;
}

static int send_repo(struct walk_op *w, const char *rel, const struct stat *st)
{
	Gitaly__WalkReposResponse resp = GITALY__WALK_REPOS_RESPONSE__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = st->st_mtim.tv_sec;
	ts.nanos = (int32_t)st->st_mtim.tv_nsec;
	resp.relative_path = (char *)rel;
	resp.modification_time = &ts;
	return gitaly_call_send(&w->op, &resp);
}

/* Advance until the call is full, gone, or the walk is over. */
static void walk_pump(struct walk_op *w)
{
	struct strbuf msg = STRBUF_INIT, path = STRBUF_INIT;

	while (w->op.call && !w->op.finished && !grpc_call_send_full(w->op.call)) {
		struct walk_frame *f;
		struct stat st;
		char *rel;

		if (!w->depth) {
			reposvc_finish(&w->op, GRPC_OK, NULL);
			break;
		}
		f = &w->stack[w->depth - 1];
		if (f->next == f->nr) {
			frame_release(f);
			w->depth--;
			continue;
		}
		strbuf_reset(&path);
		strbuf_addf(&path, "%s%s%s", f->rel, *f->rel ? "/" : "", f->names[f->next]);
		rel = strbuf_detach(&path, NULL);
		f->next++;
		/* Gitaly's own files (temporary directories, staged removals) are no repositories */
		if (!strcmp(rel, "+gitaly")) {
			free(rel);
			continue;
		}
		strbuf_reset(&path);
		strbuf_addf(&path, "%s/%s", w->root, rel);
		/* symlinks are not followed, as WalkDir does not */
		if (lstat(path.buf, &st) < 0 || !S_ISDIR(st.st_mode)) {
			free(rel);
			continue;
		}
		if (is_repository(path.buf)) {
			send_repo(w, rel, &st);
			free(rel);
			continue;
		}
		if (walk_push(w, rel, &msg) < 0) {
			reposvc_finish(&w->op, GRPC_INTERNAL, msg.buf);
			break;
		}
	}
	strbuf_release(&msg);
	strbuf_release(&path);
}

static void walk_writable(struct grpc_call *call)
{
	walk_pump(grpc_call_user(call));
}

static void walk_close(struct grpc_call *call, enum grpc_code code)
{
	gitaly_call_closed(grpc_call_user(call));
}

/* Nothing runs between two pumps: a closed call just ends the walk. */
static void walk_cancel(struct gitaly_call *op)
{
	reposvc_finish(op, GRPC_CANCELLED, "context canceled");
}

static const struct grpc_call_ops walk_ops = {
	.on_writable = walk_writable,
	.on_close = walk_close,
};

static void walk_repos(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct gitaly *g = data;
	Gitaly__WalkReposRequest *req = msg_unpack(call, &gitaly__walk_repos_request__descriptor, buf, len);
	const struct gitaly_storage *s = NULL;
	struct strbuf msg = STRBUF_INIT;
	struct walk_op *w;

	if (!req)
		return;
	if (gitaly_storage(g, req->storage_name, &s, &msg) != GRPC_OK) {
		grpc_call_finishf(call, GRPC_NOT_FOUND, "looking up storage: no such storage: \"%s\"",
				  req->storage_name ? req->storage_name : "");
		goto out;
	}
	w = xcalloc(1, sizeof(*w));
	reposvc_init(&w->op, g, call, walk_release);
	w->op.cancel = walk_cancel;
	w->root = xstrdup(s->path);
	grpc_call_set_ops(call, &walk_ops, w);
	if (walk_push(w, xstrdup(""), &msg) < 0)
		reposvc_finish(&w->op, GRPC_INTERNAL, msg.buf);
	else
		walk_pump(w);
out:
	strbuf_release(&msg);
	msg_free(req);
}

void reposvc_register_walk_repos(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.InternalGitaly/WalkRepos", walk_repos, g);
}

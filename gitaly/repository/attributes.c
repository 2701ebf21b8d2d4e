/*
 * RepositoryService/GetFileAttributes: the gitattributes of paths as a
 * revision's .gitattributes files (and info/attributes) define them.
 * Upstream runs `git check-attr --source=<rev>`, which needs git 2.40; the
 * same answer comes from `git check-attr --cached` against a throw-away
 * index holding the revision's tree, written by `git read-tree` into the
 * storage's temporary directory. docs/technical/gitaly-repository.md,
 * "File attributes".
 */
#include "repository/repository.h"
#include "read/read.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* check-attr prints three words per path and attribute; the answer is one message. */
#define ATTR_OUT_MAX (64u * 1024 * 1024)

struct file_attrs {
	struct rd rd;
	struct strbuf index;      /* the temporary index file */
	struct strbuf env;        /* GIT_INDEX_FILE=<index> */
	struct strbuf in;         /* paths, NUL-terminated */
	struct strvec argv;
};

static void fa_free(struct rd *rd)
{
	struct file_attrs *x = (struct file_attrs *)rd;
	if (x->index.len)
		unlink(x->index.buf);
	strbuf_release(&x->index);
	strbuf_release(&x->env);
	strbuf_release(&x->in);
	strvec_clear(&x->argv);
}

static void fa_git_call(struct file_attrs *x, struct git_call *gc, const char *subcmd, const char **env)
{
	rd_git_call(&x->rd, gc, subcmd);
	env[0] = x->env.buf;
	env[1] = NULL;
	gc->env = env;
}

static const char *next_word(const char **p, const char *end)
{
	const char *w = *p, *z = memchr(w, '\0', (size_t)(end - w));
	if (!z)
		return NULL;
	*p = z + 1;
	return w;
}

static void checked(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct file_attrs *x = arg;
	Gitaly__GetFileAttributesRequest *req = x->rd.req;
	Gitaly__GetFileAttributesResponse resp = GITALY__GET_FILE_ATTRIBUTES_RESPONSE__INIT;
	Gitaly__GetFileAttributesResponse__AttributeInfo *infos = NULL, **ptrs = NULL;
	const char *p = out->buf, *end = out->buf + out->len;
	size_t n = 0, want = req->n_paths * req->n_attributes;

	if (!x->rd.base.call)
		goto out;
	if (status != 0) {
		while (err->len && err->buf[err->len - 1] == '\n')
			strbuf_setlen(err, err->len - 1);
		rd_finish(&x->rd, status == -E2BIG ? GRPC_RESOURCE_EXHAUSTED : GRPC_UNKNOWN, "check attr: %s",
			  status == -E2BIG ? "too many attributes" : err->buf);
		goto out;
	}
	infos = xcalloc(want ? want : 1, sizeof(*infos));
	ptrs = xcalloc(want ? want : 1, sizeof(*ptrs));
	for (size_t i = 0; i < want; i++) {
		const char *path = next_word(&p, end), *name = path ? next_word(&p, end) : NULL,
			   *value = name ? next_word(&p, end) : NULL;
		if (!value) {
			rd_finish(&x->rd, GRPC_UNKNOWN, "check attr: read line: EOF");
			goto out;
		}
		if (strcmp(path, req->paths[i / req->n_attributes])) {
			rd_finish(&x->rd, GRPC_UNKNOWN, "check attr: wrong path name detected, expected %s, got %s",
				  req->paths[i / req->n_attributes], path);
			goto out;
		}
		if (!strcmp(value, "unspecified"))
			continue;
		gitaly__get_file_attributes_response__attribute_info__init(&infos[n]);
		infos[n].path = (char *)path;
		infos[n].attribute = (char *)name;
		infos[n].value = (char *)value;
		ptrs[n] = &infos[n];
		n++;
	}
	resp.attribute_infos = ptrs;
	resp.n_attribute_infos = n;
	rd_send(&x->rd, &resp);
	rd_ok(&x->rd);
out:
	free(infos);
	free(ptrs);
	gitaly_call_drop(&x->rd.base);
}

static void tree_read(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	struct file_attrs *x = (struct file_attrs *)rd;
	Gitaly__GetFileAttributesRequest *req = rd->req;
	struct strbuf msg = STRBUF_INIT;
	const char *env[2];
	struct git_call gc;
	(void)out;

	if (status != 0) {
		while (err->len && err->buf[err->len - 1] == '\n')
			strbuf_setlen(err, err->len - 1);
		rd_finish(rd, GRPC_UNKNOWN, "check attr: %s", err->buf);
		return;
	}
	strvec_push(&x->argv, "--cached");
	strvec_push(&x->argv, "--stdin");
	strvec_push(&x->argv, "-z");
	/* attribute names go before "--": a name is never taken for an option */
	for (size_t i = 0; i < req->n_attributes; i++)
		strvec_push(&x->argv, req->attributes[i]);
	strvec_push(&x->argv, "--");
	for (size_t i = 0; i < req->n_paths; i++)
		strbuf_add(&x->in, req->paths[i], strlen(req->paths[i]) + 1);
	fa_git_call(x, &gc, "check-attr", env);
	gc.flags = x->argv.v;
	gitaly_call_hold(&rd->base);
	if (gitaly_git_capture(rd->base.g, &gc, x->in.buf, x->in.len, ATTR_OUT_MAX, checked, x, NULL, &msg) < 0) {
		rd->base.holds--;
		rd_finish(rd, GRPC_INTERNAL, "%s", msg.buf);
	}
	strbuf_release(&msg);
}

void reposvc_get_file_attributes(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__GetFileAttributesRequest *req =
		msg_unpack(call, &gitaly__get_file_attributes_request__descriptor, buf, len);
	const struct gitaly_storage *st;
	struct strbuf msg = STRBUF_INIT;
	const char *args[2], *env[2];
	struct file_attrs *x;
	struct git_call gc;
	int fd;

	if (!req)
		return;
	if (!(x = (struct file_attrs *)rd_start(data, call, sizeof(*x), req, req->repository)))
		return;
	strbuf_init(&x->index, 0);
	strbuf_init(&x->env, 0);
	strbuf_init(&x->in, 0);
	strvec_init(&x->argv);
	x->rd.on_free = fa_free;
	if (!req->revision.len) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "revision is required");
		goto out;
	}
	if (!req->n_paths) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "file paths are required");
		goto out;
	}
	if (!req->n_attributes) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "attributes are required");
		goto out;
	}
	if (rd_has_nul(req->revision.data, req->revision.len) || req->revision.data[0] == '-') {
		rd_finish(&x->rd, GRPC_UNKNOWN, "check attr: invalid revision");
		goto out;
	}
	for (size_t i = 0; i < req->n_attributes; i++) {
		if (!req->attributes[i][0] || req->attributes[i][0] == '-') {
			rd_finish(&x->rd, GRPC_UNKNOWN, "check attr: %s: is not a valid attribute name",
				  req->attributes[i]);
			goto out;
		}
	}
	if (gitaly_storage(x->rd.base.g, req->repository->storage_name, &st, &msg) != GRPC_OK ||
	    gitaly_tmp_dir(x->rd.base.g, st, &x->index) < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "temporary directory: %s", msg.len ? msg.buf : "cannot create");
		strbuf_reset(&x->index);
		goto out;
	}
	strbuf_addstr(&x->index, "/attributes-index-XXXXXX");
	if ((fd = mkstemp(x->index.buf)) < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "temporary index: cannot create");
		strbuf_reset(&x->index);
		goto out;
	}
	close(fd);
	/* read-tree replaces the empty file; git wants an index, or none at all */
	unlink(x->index.buf);
	strbuf_addf(&x->env, "GIT_INDEX_FILE=%s", x->index.buf);
	strvec_pushf(&x->argv, "%.*s", (int)req->revision.len, (const char *)req->revision.data);
	args[0] = x->argv.v[0];
	args[1] = NULL;
	fa_git_call(x, &gc, "read-tree", env);
	gc.args = args;
	rd_capture(&x->rd, &gc, 4096, tree_read);
	/* check-attr's own arguments come next */
	strvec_clear(&x->argv);
	strvec_init(&x->argv);
out:
	strbuf_release(&msg);
}

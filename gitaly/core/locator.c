/* Repository and storage resolution with upstream's validation rules
 * (docs/technical/gitaly-node.md, "Repositories"). */
#include "core/gitaly.h"
#include "base/util.h"
#include "git/relpath.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum grpc_code gitaly_storage(struct gitaly *g, const char *name, const struct gitaly_storage **out,
			      struct strbuf *msg)
{
	const struct gitaly_storage *s;
	if (!name || !*name) {
		strbuf_addstr(msg, "storage name not set");
		return GRPC_INVALID_ARGUMENT;
	}
	s = gitaly_config_storage(&g->cfg, name, strlen(name));
	if (!s) {
		strbuf_addf(msg, "storage name not found: \"%s\"", name);
		return GRPC_INVALID_ARGUMENT;
	}
	*out = s;
	return GRPC_OK;
}

/* The deepest existing ancestor of `path` must resolve inside the storage. */
static int symlinks_stay_inside(const char *storage, const char *path)
{
	char real_storage[PATH_MAX], real[PATH_MAX];
	struct strbuf probe = STRBUF_INIT;
	int ok = 1;
	size_t sl;

	if (!realpath(storage, real_storage))
		return 1;
	strbuf_addstr(&probe, path);
	while (!realpath(probe.buf, real)) {
		char *slash = strrchr(probe.buf, '/');
		if (!slash || slash == probe.buf) {
			strbuf_release(&probe);
			return 1;
		}
		strbuf_setlen(&probe, (size_t)(slash - probe.buf));
	}
	sl = strlen(real_storage);
	if (strncmp(real, real_storage, sl) || (real[sl] != '/' && real[sl] != '\0'))
		ok = 0;
	strbuf_release(&probe);
	return ok;
}

enum grpc_code gitaly_locate(struct gitaly *g, const Gitaly__Repository *repo, unsigned flags,
			     struct strbuf *path, struct strbuf *msg)
{
	const struct gitaly_storage *s;
	enum grpc_code code;
	struct stat st;
	static const char *const entries[] = { "objects", "refs", "HEAD" };

	strbuf_reset(path);
	if (!repo || ((!repo->storage_name || !*repo->storage_name) &&
		      (!repo->relative_path || !*repo->relative_path))) {
		strbuf_addstr(msg, "repository not set");
		return GRPC_INVALID_ARGUMENT;
	}
	if (!repo->relative_path || !*repo->relative_path) {
		strbuf_addstr(msg, "repository path not set");
		return GRPC_INVALID_ARGUMENT;
	}
	code = gitaly_storage(g, repo->storage_name, &s, msg);
	if (code != GRPC_OK)
		return code;
	if (stat(s->path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		strbuf_addf(msg, "storage does not exist: \"%s\"", s->name);
		return GRPC_NOT_FOUND;
	}
	if (git_relpath_join(s->path, repo->relative_path, strlen(repo->relative_path), path) < 0 ||
	    !symlinks_stay_inside(s->path, path->buf)) {
		strbuf_reset(path);
		strbuf_addstr(msg, GIT_RELPATH_ESCAPES);
		return GRPC_INVALID_ARGUMENT;
	}
	if (flags & LOCATE_NO_EXIST_CHECK)
		return GRPC_OK;
	if (stat(path->buf, &st) < 0 || !S_ISDIR(st.st_mode)) {
		strbuf_addf(msg, "repository not found: \"%s\"", repo->relative_path);
		return GRPC_NOT_FOUND;
	}
	for (size_t i = 0; i < ARRAY_SIZE(entries); i++) {
		struct strbuf e = STRBUF_INIT;
		int missing;
		strbuf_addf(&e, "%s/%s", path->buf, entries[i]);
		missing = stat(e.buf, &st) < 0;
		strbuf_release(&e);
		if (missing) {
			strbuf_addf(msg, "repository not valid: \"%s\" does not exist", entries[i]);
			return GRPC_FAILED_PRECONDITION;
		}
	}
	return GRPC_OK;
}

int gitaly_tmp_dir(struct gitaly *g, const struct gitaly_storage *s, struct strbuf *out)
{
	strbuf_reset(out);
	strbuf_addf(out, "%s/+gitaly", s->path);
	if (mkdir(out->buf, 0770) < 0 && errno != EEXIST)
		return -errno;
	strbuf_addstr(out, "/tmp");
	if (mkdir(out->buf, 0770) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int gitaly_check_revision(const char *rev, size_t len, struct strbuf *msg)
{
	if (!len) {
		strbuf_addstr(msg, "empty revision");
		return -1;
	}
	if (rev[0] == '-') {
		strbuf_addstr(msg, "revision can't start with '-'");
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		switch (rev[i]) {
		case '\0':
			strbuf_addstr(msg, "revision can't contain NUL");
			return -1;
		case ' ': case '\t': case '\r': case '\n':
			strbuf_addstr(msg, "revision can't contain whitespace");
			return -1;
		case ':':
			strbuf_addstr(msg, "revision can't contain ':'");
			return -1;
		case '\\':
			strbuf_addstr(msg, "revision can't contain '\\'");
			return -1;
		}
	}
	return 0;
}

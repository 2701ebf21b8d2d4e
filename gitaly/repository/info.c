/*
 * RepositoryService reads a project page makes: RepositoryInfo,
 * GetObjectDirectorySize (directory walks on the thread pool), ObjectFormat,
 * HasLocalBranches and FindMergeBase (one small git command each);
 * docs/technical/gitaly-repository.md, "Repository information".
 */
#include "repository/repository.h"
#include "read/read.h"
#include "core/vote.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Loose objects older than this count as stale (upstream's grace period). */
#define STALE_OBJECT_SECONDS (10 * 24 * 3600)

/* --- walks on the thread pool --- */

struct walk {
	struct rd rd;
	uv_work_t work;
	int info;                 /* RepositoryInfo, else GetObjectDirectorySize */
	struct strbuf dir;        /* what GetObjectDirectorySize walks */
	int err;
	const char *err_what;
	int64_t size;
	uint64_t loose_refs, packed_refs;
	uint64_t loose_size, loose_stale, pack_size, cruft_size, keep_size;
};

static void walk_free(struct rd *rd)
{
	strbuf_release(&((struct walk *)rd)->dir);
}

static int count_files(const char *path, uint64_t *n)
{
	DIR *d = opendir(path);
	struct dirent *de;
	struct strbuf sub = STRBUF_INIT;
	int rc = 0;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
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
			rc = count_files(sub.buf, n);
		else
			(*n)++;
	}
	closedir(d);
	strbuf_release(&sub);
	return rc;
}

static int is_lower_hex(const char *s)
{
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

/* The 256 loose-object shards: size, and the part older than the grace period; garbage names skipped. */
static int loose_objects(struct walk *w, const char *repo)
{
	struct strbuf p = STRBUF_INIT;
	time_t cutoff = time(NULL) - STALE_OBJECT_SECONDS;
	int rc = 0;
	for (int i = 0; i <= 0xff && rc == 0; i++) {
		DIR *d;
		struct dirent *de;
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/objects/%02x", repo, i);
		if (!(d = opendir(p.buf))) {
			if (errno != ENOENT)
				rc = -errno;
			continue;
		}
		while ((de = readdir(d))) {
			struct strbuf f = STRBUF_INIT;
			struct stat st;
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			strbuf_addf(&f, "%s/%s", p.buf, de->d_name);
			if (lstat(f.buf, &st) == 0 && is_lower_hex(de->d_name)) {
				w->loose_size += (uint64_t)st.st_size;
				if (st.st_mtime < cutoff)
					w->loose_stale += (uint64_t)st.st_size;
			}
			strbuf_release(&f);
		}
		closedir(d);
	}
	strbuf_release(&p);
	return rc;
}

static int has_sibling(const char *dir, const char *pack, size_t stem, const char *ext)
{
	struct strbuf p = STRBUF_INIT;
	struct stat st;
	int yes;
	strbuf_addf(&p, "%s/%.*s%s", dir, (int)stem, pack, ext);
	yes = lstat(p.buf, &st) == 0;
	strbuf_release(&p);
	return yes;
}

/* pack-*.pack sizes; a .keep sibling makes a pack kept, else an .mtimes one makes it cruft. */
static int packfiles(struct walk *w, const char *repo)
{
	struct strbuf dir = STRBUF_INIT, f = STRBUF_INIT;
	struct dirent *de;
	DIR *d;
	int rc = 0;
	strbuf_addf(&dir, "%s/objects/pack", repo);
	if (!(d = opendir(dir.buf))) {
		rc = errno == ENOENT ? 0 : -errno;
		goto out;
	}
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		struct stat st;
		if (n < 10 || strncmp(de->d_name, "pack-", 5) || strcmp(de->d_name + n - 5, ".pack"))
			continue;
		strbuf_reset(&f);
		strbuf_addf(&f, "%s/%s", dir.buf, de->d_name);
		if (lstat(f.buf, &st) < 0)
			continue;
		w->pack_size += (uint64_t)st.st_size;
		if (has_sibling(dir.buf, de->d_name, n - 5, ".keep"))
			w->keep_size += (uint64_t)st.st_size;
		else if (has_sibling(dir.buf, de->d_name, n - 5, ".mtimes"))
			w->cruft_size += (uint64_t)st.st_size;
	}
	closedir(d);
out:
	strbuf_release(&dir);
	strbuf_release(&f);
	return rc;
}

static void walk_work(uv_work_t *req)
{
	struct walk *w = req->data;
	const char *repo = w->rd.path.buf;
	struct strbuf p = STRBUF_INIT;
	struct stat st;

	if (!w->info) {
		w->err_what = "calculating directory size: walking directory";
		w->err = reposvc_dir_size(w->dir.buf, &w->size);
		return;
	}
	w->err_what = "calculating repository size: walking directory";
	if ((w->err = reposvc_dir_size(repo, &w->size)) < 0)
		return;
	w->err_what = "deriving repository info: counting loose refs";
	strbuf_addf(&p, "%s/refs", repo);
	if ((w->err = count_files(p.buf, &w->loose_refs)) < 0)
		goto out;
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/packed-refs", repo);
	if (stat(p.buf, &st) == 0)
		w->packed_refs = (uint64_t)st.st_size;
	w->err_what = "deriving repository info: reading loose object shard";
	if ((w->err = loose_objects(w, repo)) < 0)
		goto out;
	w->err_what = "deriving repository info: packfiles";
	w->err = packfiles(w, repo);
out:
	strbuf_release(&p);
}

static void walk_after(uv_work_t *req, int status)
{
	struct walk *w = req->data;
	(void)status;
	if (w->rd.base.call) {
		if (w->err < 0) {
			rd_finish(&w->rd, GRPC_INTERNAL, "%s: %s", w->err_what, strerror(-w->err));
		} else if (w->info) {
			Gitaly__RepositoryInfoResponse resp = GITALY__REPOSITORY_INFO_RESPONSE__INIT;
			Gitaly__RepositoryInfoResponse__ReferencesInfo refs =
				GITALY__REPOSITORY_INFO_RESPONSE__REFERENCES_INFO__INIT;
			Gitaly__RepositoryInfoResponse__ObjectsInfo objs =
				GITALY__REPOSITORY_INFO_RESPONSE__OBJECTS_INFO__INIT;
			resp.size = (uint64_t)w->size;
			refs.loose_count = w->loose_refs;
			refs.packed_size = w->packed_refs;
			objs.size = w->loose_size + w->pack_size;
			/* stale loose objects and cruft packs are what "recent" leaves out */
			objs.recent_size = (w->loose_size - w->loose_stale) + (w->pack_size - w->cruft_size);
			objs.stale_size = w->loose_stale + w->cruft_size;
			objs.keep_size = w->keep_size;
			resp.references = &refs;
			resp.objects = &objs;
			rd_send(&w->rd, &resp);
			rd_ok(&w->rd);
		} else {
			Gitaly__GetObjectDirectorySizeResponse resp = GITALY__GET_OBJECT_DIRECTORY_SIZE_RESPONSE__INIT;
			resp.size = w->size / 1024;
			rd_send(&w->rd, &resp);
			rd_ok(&w->rd);
		}
	}
	gitaly_call_drop(&w->rd.base);
}

static void walk_start(struct walk *w)
{
	w->work.data = w;
	gitaly_call_hold(&w->rd.base);
	if (uv_queue_work(w->rd.base.g->loop, &w->work, walk_work, walk_after) < 0) {
		w->rd.base.holds--;
		rd_finish(&w->rd, GRPC_INTERNAL, "cannot queue work");
	}
}

static void repository_info(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__RepositoryInfoRequest *req = msg_unpack(call, &gitaly__repository_info_request__descriptor, buf, len);
	struct walk *w;
	if (!req)
		return;
	w = (struct walk *)rd_start(data, call, sizeof(*w), req, req->repository);
	if (!w)
		return;
	strbuf_init(&w->dir, 0);
	w->rd.on_free = walk_free;
	w->info = 1;
	walk_start(w);
}

/*
 * Outside the repository, an object directory may only be one of its
 * quarantines: <storage>/+gitaly/tmp/quarantine-<first 8 bytes of
 * sha1(relative path) in hex>-...
 */
static int is_own_quarantine(struct walk *w, const char *abs)
{
	const Gitaly__Repository *r = w->rd.repo;
	const struct gitaly_storage *s;
	struct strbuf tmp = STRBUF_INIT, prefix = STRBUF_INIT, msg = STRBUF_INIT;
	uint8_t h[20];
	int yes = 0;
	if (gitaly_storage(w->rd.base.g, r->storage_name, &s, &msg) == GRPC_OK && gitaly_tmp_dir(w->rd.base.g, s, &tmp) == 0) {
		gitaly_sha1(r->relative_path, strlen(r->relative_path), h);
		strbuf_addf(&prefix, "%s/quarantine-", tmp.buf);
		for (int i = 0; i < 8; i++)
			strbuf_addf(&prefix, "%02x", h[i]);
		strbuf_addch(&prefix, '-');
		yes = !strncmp(abs, prefix.buf, prefix.len);
	}
	strbuf_release(&tmp);
	strbuf_release(&prefix);
	strbuf_release(&msg);
	return yes;
}

static int is_under(const char *p, const char *root, size_t root_len)
{
	return !strncmp(p, root, root_len) && (p[root_len] == '\0' || p[root_len] == '/');
}

/*
 * The object directory the request names: inside the repository, or one of
 * its quarantines. 0, or -1 after finishing the call.
 */
static int object_dir(struct walk *w, const char *rel)
{
	struct strbuf clean = STRBUF_INIT;
	struct stat st;
	int rc = -1;
	if (!rel || !*rel) {
		rd_finish(&w->rd, GRPC_INVALID_ARGUMENT, "object directory path is not set");
		return -1;
	}
	go_path_clean(&clean, rel, strlen(rel));
	go_path_join(&w->dir, w->rd.path.buf, w->rd.path.len, clean.buf, clean.len);
	/* as Go's filepath.Join: a leading slash does not leave the repository, ".." may */
	if (!is_under(w->dir.buf, w->rd.path.buf, w->rd.path.len) && !is_own_quarantine(w, w->dir.buf)) {
		rd_finish(&w->rd, GRPC_INVALID_ARGUMENT,
			  "not a valid relative path: relative path escapes root directory");
		goto out;
	}
	if (stat(w->dir.buf, &st) < 0 && errno == ENOENT) {
		rd_finish(&w->rd, GRPC_NOT_FOUND, "object directory does not exist: \"%s\"", w->dir.buf);
		goto out;
	}
	rc = 0;
out:
	strbuf_release(&clean);
	return rc;
}

static void get_object_directory_size(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__GetObjectDirectorySizeRequest *req =
		msg_unpack(call, &gitaly__get_object_directory_size_request__descriptor, buf, len);
	struct walk *w;
	if (!req)
		return;
	w = (struct walk *)rd_start(data, call, sizeof(*w), req, req->repository);
	if (!w)
		return;
	strbuf_init(&w->dir, 0);
	w->rd.on_free = walk_free;
	if (object_dir(w, req->repository->git_object_directory) == 0)
		walk_start(w);
}

/* --- one small git command each --- */

static void format_done(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	Gitaly__ObjectFormatResponse resp = GITALY__OBJECT_FORMAT_RESPONSE__INIT;
	(void)err;
	if (status == 0 && out->len >= 6 && !memcmp(out->buf, "sha256", 6))
		resp.format = GITALY__OBJECT_FORMAT__OBJECT_FORMAT_SHA256;
	else if (status == 0 && out->len >= 4 && !memcmp(out->buf, "sha1", 4))
		resp.format = GITALY__OBJECT_FORMAT__OBJECT_FORMAT_SHA1;
	else {
		rd_finish(rd, GRPC_INTERNAL, "detecting object hash: unknown object format: %.*s",
			  (int)MIN(out->len, (size_t)100), out->buf);
		return;
	}
	rd_send(rd, &resp);
	rd_ok(rd);
}

static void object_format(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	static const char *const flags[] = { "--show-object-format", NULL };
	Gitaly__ObjectFormatRequest *req = msg_unpack(call, &gitaly__object_format_request__descriptor, buf, len);
	struct git_call gc;
	struct rd *rd;
	if (!req)
		return;
	if (!(rd = rd_start(data, call, sizeof(*rd), req, req->repository)))
		return;
	rd_git_call(rd, &gc, "rev-parse");
	gc.flags = flags;
	rd_capture(rd, &gc, 4096, format_done);
}

static void branches_done(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	Gitaly__HasLocalBranchesResponse resp = GITALY__HAS_LOCAL_BRANCHES_RESPONSE__INIT;
	if (status != 0) {
		rd_finish(rd, GRPC_INTERNAL, "for-each-ref: %.*s", (int)MIN(err->len, (size_t)500), err->buf);
		return;
	}
	resp.value = out->len > 0;
	rd_send(rd, &resp);
	rd_ok(rd);
}

static void has_local_branches(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	static const char *const flags[] = { "--count=1", "--format=%(refname)", NULL };
	static const char *const args[] = { "refs/heads/", NULL };
	Gitaly__HasLocalBranchesRequest *req =
		msg_unpack(call, &gitaly__has_local_branches_request__descriptor, buf, len);
	struct git_call gc;
	struct rd *rd;
	if (!req)
		return;
	if (!(rd = rd_start(data, call, sizeof(*rd), req, req->repository)))
		return;
	rd_git_call(rd, &gc, "for-each-ref");
	gc.flags = flags;
	gc.args = args;
	rd_capture(rd, &gc, 64 * 1024, branches_done);
}

static void merge_base_done(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	Gitaly__FindMergeBaseResponse resp = GITALY__FIND_MERGE_BASE_RESPONSE__INIT;
	(void)err;
	/* any failure (unknown revisions, no common ancestor) is an empty base */
	while (out->len && (out->buf[out->len - 1] == '\n' || out->buf[out->len - 1] == '\r'))
		strbuf_setlen(out, out->len - 1);
	resp.base = status == 0 ? out->buf : (char *)"";
	rd_send(rd, &resp);
	rd_ok(rd);
}

struct merge_base {
	struct rd rd;
	struct strvec args;
};

static void merge_base_free(struct rd *rd)
{
	strvec_clear(&((struct merge_base *)rd)->args);
}

static void find_merge_base(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindMergeBaseRequest *req = msg_unpack(call, &gitaly__find_merge_base_request__descriptor, buf, len);
	struct merge_base *x;
	struct git_call gc;
	if (!req)
		return;
	if (!(x = (struct merge_base *)rd_start(data, call, sizeof(*x), req, req->repository)))
		return;
	strvec_init(&x->args);
	x->rd.on_free = merge_base_free;
	if (req->n_revisions < 2) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "at least 2 revisions are required");
		return;
	}
	for (size_t i = 0; i < req->n_revisions; i++) {
		if (rd_has_nul(req->revisions[i].data, req->revisions[i].len)) {
			rd_finish(&x->rd, GRPC_INTERNAL, "cmd: revision contains NUL byte");
			return;
		}
		strvec_pushf(&x->args, "%.*s", (int)req->revisions[i].len, (const char *)req->revisions[i].data);
	}
	rd_git_call(&x->rd, &gc, "merge-base");
	gc.args = x->args.v;
	rd_capture(&x->rd, &gc, 4096, merge_base_done);
}

void reposvc_register_info(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.RepositoryService/RepositoryInfo", repository_info, g);
	gitaly_add_unary(s, "/gitaly.RepositoryService/GetObjectDirectorySize", get_object_directory_size, g);
	gitaly_add_unary(s, "/gitaly.RepositoryService/ObjectFormat", object_format, g);
	gitaly_add_unary(s, "/gitaly.RepositoryService/HasLocalBranches", has_local_branches, g);
	gitaly_add_unary(s, "/gitaly.RepositoryService/FindMergeBase", find_merge_base, g);
	reposvc_register_objects_size(g, s);
}

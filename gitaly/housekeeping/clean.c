/*
 * Stale files housekeeping removes, each kind after its own grace period
 * (docs/technical/housekeeping.md, "Stale files"). Thread pool only.
 */
#include "housekeeping/housekeeping.h"
#include "base/log.h"
#include "base/strbuf.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

#define MIN_S 60
#define HOUR_S (60 * MIN_S)
#define DAY_S (24 * HOUR_S)

#define LOCKFILE_GRACE_S (15 * MIN_S)
#define REF_LOCK_GRACE_S HOUR_S
#define PACKED_REFS_LOCK_GRACE_S HOUR_S
#define PACKED_REFS_NEW_GRACE_S (15 * MIN_S)
#define TEMP_OBJECT_GRACE_S DAY_S
#define BROKEN_REF_GRACE_S DAY_S
#define EMPTY_REF_DIR_GRACE_S DAY_S
#define PACK_KEEP_GRACE_S (7 * DAY_S)
#define MAX_DEPTH 64

/* Lock files git takes for a known set of files; we remove no other `*.lock` outside refs/. */
static const char *const lockfiles[] = {
	"config.lock",
	"HEAD.lock",
	"info/attributes.lock",
	"objects/info/alternates.lock",
	"objects/info/commit-graphs/commit-graph-chain.lock",
	"objects/pack/multi-pack-index.lock",
};

struct clean {
	time_t now;
	struct hk_clean_counts *c;
};

static void remove_file(struct clean *cl, const char *path, unsigned *counter)
{
	if (unlink(path) == 0) {
		(*counter)++;
	} else if (errno != ENOENT) {
		cl->c->failures++;
		log_msgf(LOG_WARN, "unable to remove stale file \"%s\": %s", path, strerror(errno));
	}
}

/* Remove `repo/rel` when it exists and was not modified for `grace` seconds. */
static void stale_file(struct clean *cl, const char *repo, const char *rel, time_t grace, unsigned *counter)
{
	struct strbuf p = STRBUF_INIT;
	struct stat st;
	strbuf_addf(&p, "%s/%s", repo, rel);
	if (lstat(p.buf, &st) == 0 && S_ISREG(st.st_mode) && cl->now - st.st_mtime >= grace)
		remove_file(cl, p.buf, counter);
	strbuf_release(&p);
}

static int has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !strcmp(s + n - m, suffix);
}

/* objects/: temporary files git leaves when killed ("tmp_*"), a day old. */
static void temp_objects(struct clean *cl, struct strbuf *dir, int depth)
{
	DIR *d = opendir(dir->buf);
	struct dirent *e;
	size_t len = dir->len;
	if (!d)
		return;
	while ((e = readdir(d))) {
		struct stat st;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		strbuf_setlen(dir, len);
		strbuf_addf(dir, "/%s", e->d_name);
		if (lstat(dir->buf, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (depth < MAX_DEPTH)
				temp_objects(cl, dir, depth + 1);
		} else if (!strncmp(e->d_name, "tmp_", 4) && cl->now - st.st_mtime > TEMP_OBJECT_GRACE_S) {
			remove_file(cl, dir->buf, &cl->c->objects);
		}
	}
	strbuf_setlen(dir, len);
	closedir(d);
}

/* refs/: reference locks an hour old; empty references (a crash mid-write) a day old. */
static void refs_files(struct clean *cl, struct strbuf *dir, int depth)
{
	DIR *d = opendir(dir->buf);
	struct dirent *e;
	size_t len = dir->len;
	if (!d)
		return;
	while ((e = readdir(d))) {
		struct stat st;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		strbuf_setlen(dir, len);
		strbuf_addf(dir, "/%s", e->d_name);
		if (lstat(dir->buf, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (depth < MAX_DEPTH)
				refs_files(cl, dir, depth + 1);
		} else if (has_suffix(e->d_name, ".lock")) {
			if (cl->now - st.st_mtime >= REF_LOCK_GRACE_S)
				remove_file(cl, dir->buf, &cl->c->reflocks);
		} else if (S_ISREG(st.st_mode) && st.st_size == 0 && cl->now - st.st_mtime >= BROKEN_REF_GRACE_S) {
			remove_file(cl, dir->buf, &cl->c->refs);
		}
	}
	strbuf_setlen(dir, len);
	closedir(d);
}

/*
 * Remove empty directories below `dir` (and `dir` itself) not modified for a
 * day. The mtime is taken before the children go, since removing them
 * changes it.
 */
static void empty_dirs(struct clean *cl, struct strbuf *dir, int depth)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	size_t len = dir->len;
	int entries = 0;

	if (lstat(dir->buf, &st) < 0 || !S_ISDIR(st.st_mode) || !(d = opendir(dir->buf)))
		return;
	while ((e = readdir(d))) {
		struct stat cst;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		strbuf_setlen(dir, len);
		strbuf_addf(dir, "/%s", e->d_name);
		if (depth < MAX_DEPTH && lstat(dir->buf, &cst) == 0 && S_ISDIR(cst.st_mode))
			empty_dirs(cl, dir, depth + 1);
	}
	strbuf_setlen(dir, len);
	closedir(d);
	if (cl->now - st.st_mtime < EMPTY_REF_DIR_GRACE_S)
		return;
	if (!(d = opendir(dir->buf)))
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			entries++;
	closedir(d);
	if (!entries && rmdir(dir->buf) == 0)
		cl->c->refsemptydir++;
}

/* objects/pack/pack-*.keep that receive-pack or fetch-pack left, a week old; an admin's .keep stays. */
static void pack_keeps(struct clean *cl, const char *repo)
{
	struct strbuf dir = STRBUF_INIT, f = STRBUF_INIT;
	DIR *d;
	struct dirent *e;
	strbuf_addf(&dir, "%s/objects/pack", repo);
	if (!(d = opendir(dir.buf)))
		goto out;
	while ((e = readdir(d))) {
		struct stat st;
		char head[16];
		ssize_t n;
		int fd;
		if (strncmp(e->d_name, "pack-", 5) || !has_suffix(e->d_name, ".keep"))
			continue;
		strbuf_reset(&f);
		strbuf_addf(&f, "%s/%s", dir.buf, e->d_name);
		if (lstat(f.buf, &st) < 0 || !S_ISREG(st.st_mode) || cl->now - st.st_mtime < PACK_KEEP_GRACE_S)
			continue;
		if ((fd = open(f.buf, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		n = read(fd, head, sizeof(head));
		close(fd);
		if ((n >= 13 && !memcmp(head, "receive-pack ", 13)) || (n >= 11 && !memcmp(head, "fetch-pack ", 11)))
			remove_file(cl, f.buf, &cl->c->packfilelocks);
	}
	closedir(d);
out:
	strbuf_release(&dir);
	strbuf_release(&f);
}

/* What git update-server-info writes (dumb HTTP only, which we never serve): no grace. */
static void server_info(struct clean *cl, const char *repo)
{
	static const struct { const char *dir, *base; } files[] = {
		{ "info", "refs" },
		{ "objects/info", "packs" },
	};
	struct strbuf dir = STRBUF_INIT, f = STRBUF_INIT;
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		size_t bl = strlen(files[i].base);
		DIR *d;
		struct dirent *e;
		strbuf_reset(&dir);
		strbuf_addf(&dir, "%s/%s", repo, files[i].dir);
		if (!(d = opendir(dir.buf)))
			continue;
		while ((e = readdir(d))) {
			struct stat st;
			if (strncmp(e->d_name, files[i].base, bl) || (e->d_name[bl] && e->d_name[bl] != '_'))
				continue;
			strbuf_reset(&f);
			strbuf_addf(&f, "%s/%s", dir.buf, e->d_name);
			if (lstat(f.buf, &st) == 0 && S_ISREG(st.st_mode))
				remove_file(cl, f.buf, &cl->c->serverinfo);
		}
		closedir(d);
	}
	strbuf_release(&dir);
	strbuf_release(&f);
}

int hk_clean_stale(const char *repo, time_t now, struct hk_clean_counts *out, struct strbuf *err)
{
	struct clean cl = { now, out };
	struct strbuf p = STRBUF_INIT;
	DIR *d;
	struct dirent *e;

	memset(out, 0, sizeof(*out));
	strbuf_addf(&p, "%s/objects", repo);
	temp_objects(&cl, &p, 0);
	for (size_t i = 0; i < ARRAY_SIZE(lockfiles); i++)
		stale_file(&cl, repo, lockfiles[i], LOCKFILE_GRACE_S, &out->locks);
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/refs", repo);
	refs_files(&cl, &p, 0);
	pack_keeps(&cl, repo);
	stale_file(&cl, repo, "packed-refs.lock", PACKED_REFS_LOCK_GRACE_S, &out->packedrefslock);
	stale_file(&cl, repo, "packed-refs.new", PACKED_REFS_NEW_GRACE_S, &out->packedrefsnew);
	server_info(&cl, repo);

	/* empty directories below refs/, never refs/ itself */
	if (!(d = opendir(p.buf))) {
		int rc = -errno;
		strbuf_addf(err, "reading \"%s\": %s", p.buf, strerror(errno));
		strbuf_release(&p);
		return rc == -ENOENT ? 0 : rc;
	}
	{
		char **names = NULL;
		size_t nr = 0, alloc = 0;
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			ALLOC_GROW(names, nr + 1, alloc);
			names[nr++] = xstrdup(e->d_name);
		}
		closedir(d);
		for (size_t i = 0; i < nr; i++) {
			size_t len = p.len;
			strbuf_addf(&p, "/%s", names[i]);
			empty_dirs(&cl, &p, 0);
			strbuf_setlen(&p, len);
			free(names[i]);
		}
		free(names);
	}
	strbuf_release(&p);
	return 0;
}

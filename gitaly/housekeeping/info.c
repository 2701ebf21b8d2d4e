/*
 * A repository's object and reference layout, read from disk without git
 * (docs/technical/housekeeping.md, "What we look at"). Thread pool only.
 */
#include "housekeeping/housekeeping.h"
#include "base/strbuf.h"
#include "base/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

static int is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return 0;
	return 1;
}

bool hk_is_pool_path(const char *s)
{
	size_t n = strlen(s), tail = 7 + 3 + 3 + 64 + 4;
	const char *p;
	if (n >= tail) {
		p = s + n - tail;
		if (!strncmp(p, "@pools/", 7) && is_hex(p + 7, 2) && p[9] == '/' && is_hex(p + 10, 2) &&
		    p[12] == '/' && is_hex(p + 13, 64) && !strcmp(p + 77, ".git") && !memcmp(p + 13, p + 7, 2) &&
		    !memcmp(p + 15, p + 10, 2))
			return true;
	}
	/* like upstream's pattern, anchored at the end only */
	for (p = strstr(s, "@cluster/pools/"); p; p = strstr(p + 1, "@cluster/pools/")) {
		const char *q = p + 15;
		size_t digits;
		if (strlen(q) > 6 && is_hex(q, 2) && q[2] == '/' && is_hex(q + 3, 2) && q[5] == '/') {
			digits = strspn(q + 6, "0123456789");
			if (digits && q[6 + digits] == '\0')
				return true;
		}
	}
	return false;
}

static int fail(struct strbuf *err, int rc, const char *what, const char *path)
{
	strbuf_addf(err, "%s \"%s\": %s", what, path, strerror(-rc));
	return rc;
}

static int loose_objects(const char *repo, time_t cutoff, struct hk_info *info, struct strbuf *err)
{
	struct strbuf dir = STRBUF_INIT, f = STRBUF_INIT;
	int rc = 0;
	for (int i = 0; i < 256 && !rc; i++) {
		DIR *d;
		struct dirent *e;
		strbuf_reset(&dir);
		strbuf_addf(&dir, "%s/objects/%02x", repo, i);
		if (!(d = opendir(dir.buf))) {
			if (errno != ENOENT)
				rc = fail(err, -errno, "reading loose object shard", dir.buf);
			continue;
		}
		while ((e = readdir(d))) {
			size_t n = strlen(e->d_name);
			struct stat st;
			/* 38 hex digits for SHA-1, 62 for SHA-256; anything else is garbage */
			if ((n != 38 && n != 62) || !is_hex(e->d_name, n))
				continue;
			strbuf_reset(&f);
			strbuf_addf(&f, "%s/%s", dir.buf, e->d_name);
			if (stat(f.buf, &st) < 0)
				continue;   /* packed or pruned meanwhile */
			info->loose_count++;
			if (st.st_mtime < cutoff)
				info->loose_stale_count++;
		}
		closedir(d);
	}
	strbuf_release(&dir);
	strbuf_release(&f);
	return rc;
}

static int has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !strcmp(s + n - m, suffix);
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Read exactly `len` bytes from the start of `path`: 0, -ENOENT, or another -errno / -EINVAL. */
static int read_head(const char *path, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len);
	close(fd);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EINVAL;
}

static int packfiles(const char *repo, struct hk_info *info, struct strbuf *err)
{
	struct strbuf dir = STRBUF_INIT, f = STRBUF_INIT;
	DIR *d;
	struct dirent *e;
	struct stat st;
	unsigned char midx[12];
	int rc = 0;

	strbuf_addf(&dir, "%s/objects/pack", repo);
	if (!(d = opendir(dir.buf))) {
		rc = errno == ENOENT ? 0 : fail(err, -errno, "reading packfiles", dir.buf);
		goto timestamp;
	}
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "pack-", 5))
			continue;
		strbuf_reset(&f);
		strbuf_addf(&f, "%s/%s", dir.buf, e->d_name);
		if (has_suffix(e->d_name, ".pack")) {
			if (stat(f.buf, &st) < 0)
				continue;
			info->pack_count++;
			info->pack_size += (uint64_t)st.st_size;
		} else if (has_suffix(e->d_name, ".mtimes")) {
			info->cruft_count++;
		} else if (has_suffix(e->d_name, ".keep")) {
			info->keep_count++;
		}
	}
	closedir(d);

	/* gitformat-pack(5): "MIDX", version 1, hash version, chunks, base files (0), packfile count */
	strbuf_reset(&f);
	strbuf_addf(&f, "%s/multi-pack-index", dir.buf);
	rc = read_head(f.buf, midx, sizeof(midx));
	if (rc == 0 && !memcmp(midx, "MIDX", 4) && midx[4] == 1 && midx[7] == 0) {
		info->midx_exists = true;
		info->midx_pack_count = (uint64_t)midx[8] << 24 | (uint64_t)midx[9] << 16 |
					(uint64_t)midx[10] << 8 | midx[11];
	}
	/* an unreadable or foreign index counts as none: the next repack writes a good one */
	rc = 0;
timestamp:
	strbuf_reset(&f);
	strbuf_addf(&f, "%s/%s", repo, HK_FULL_REPACK_TIMESTAMP);
	if (stat(f.buf, &st) == 0)
		info->last_full_repack = st.st_mtime;
	strbuf_release(&dir);
	strbuf_release(&f);
	return rc;
}

static void alternates(const char *repo, struct hk_info *info)
{
	struct strbuf f = STRBUF_INIT, line = STRBUF_INIT;
	struct stat st;
	FILE *fp;
	strbuf_addf(&f, "%s/objects/info/alternates", repo);
	if (stat(f.buf, &st) == 0 && (fp = fopen(f.buf, "re"))) {
		int c;
		info->alternates_exist = true;
		info->alternates_mtime = st.st_mtime;
		do {
			c = fgetc(fp);
			if (c == '\n' || c == EOF) {
				if (line.len && line.buf[0] != '#')
					info->nr_alternates++;
				strbuf_reset(&line);
			} else if (!isspace(c) || line.len) {
				strbuf_addch(&line, (char)c);
			}
		} while (c != EOF);
		fclose(fp);
	}
	strbuf_release(&f);
	strbuf_release(&line);
}

static void count_refs(struct strbuf *path, uint64_t *count, int depth)
{
	DIR *d = opendir(path->buf);
	struct dirent *e;
	size_t len = path->len;
	if (!d)
		return;
	while ((e = readdir(d))) {
		struct stat st;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		strbuf_setlen(path, len);
		strbuf_addf(path, "/%s", e->d_name);
		if (lstat(path->buf, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (depth < 64)
				count_refs(path, count, depth + 1);
		} else {
			(*count)++;
		}
	}
	strbuf_setlen(path, len);
	closedir(d);
}

/* The chunk ids of one commit-graph file (gitformat-commit-graph(5)). */
static void graph_chunks(const char *path, struct hk_info *info)
{
	unsigned char head[8], table[256 * 12];
	int bidx = 0, bdat = 0;
	size_t nr;
	if (read_head(path, head, sizeof(head)) < 0 || memcmp(head, "CGPH", 4) || head[4] != 1)
		return;
	nr = (size_t)head[6] + 1;
	{
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n;
		if (fd < 0)
			return;
		n = pread(fd, table, nr * 12, 8);
		close(fd);
		if (n != (ssize_t)(nr * 12))
			return;
	}
	for (size_t i = 0; i < nr; i++) {
		const unsigned char *id = table + i * 12;
		if (!memcmp(id, "BIDX", 4))
			bidx = 1;
		else if (!memcmp(id, "BDAT", 4))
			bdat = 1;
		else if (!memcmp(id, "GDA2", 4))
			info->commit_graph_generation = true;
	}
	if (bidx && bdat)
		info->commit_graph_bloom = true;
}

static void commit_graphs(const char *repo, struct hk_info *info)
{
	struct strbuf f = STRBUF_INIT, chain = STRBUF_INIT;
	FILE *fp;
	strbuf_addf(&f, "%s/objects/info/commit-graphs/commit-graph-chain", repo);
	if ((fp = fopen(f.buf, "re"))) {
		char line[256];
		info->commit_graph_exists = true;
		while (fgets(line, sizeof(line), fp)) {
			size_t n = strcspn(line, "\r\n");
			line[n] = '\0';
			if (!n)
				continue;
			info->commit_graph_chain++;
			strbuf_reset(&chain);
			strbuf_addf(&chain, "%s/objects/info/commit-graphs/graph-%s.graph", repo, line);
			graph_chunks(chain.buf, info);
		}
		fclose(fp);
	} else {
		strbuf_reset(&f);
		strbuf_addf(&f, "%s/objects/info/commit-graph", repo);
		if (exists(f.buf)) {
			info->commit_graph_exists = true;
			graph_chunks(f.buf, info);
		}
	}
	strbuf_release(&f);
	strbuf_release(&chain);
}

int hk_info_read(const char *repo, bool is_pool, time_t now, struct hk_info *info, struct strbuf *err)
{
	struct strbuf p = STRBUF_INIT;
	struct stat st;
	int rc;

	memset(info, 0, sizeof(*info));
	info->is_pool = is_pool;
	if ((rc = loose_objects(repo, now - HK_STALE_OBJECTS_GRACE_S, info, err)) < 0)
		return rc;
	if ((rc = packfiles(repo, info, err)) < 0)
		return rc;
	alternates(repo, info);
	strbuf_addf(&p, "%s/refs", repo);
	count_refs(&p, &info->loose_refs, 0);
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/packed-refs", repo);
	if (stat(p.buf, &st) == 0)
		info->packed_refs_size = (uint64_t)st.st_size;
	strbuf_release(&p);
	commit_graphs(repo, info);
	return 0;
}

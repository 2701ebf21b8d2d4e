/* Ref reading from loose files and packed-refs, for reads that need no git process. */
#include "git/refs.h"
#include "base/strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int name_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.' || c == '+';
}

int git_refs_name_ok(const char *name, size_t len)
{
	size_t i = 5, start;
	if (len == 4 && !memcmp(name, "HEAD", 4))
		return 0;
	if (len <= 5 || len > GIT_REFS_NAME_MAX || memcmp(name, "refs/", 5))
		return -1;
	while (i < len) {
		start = i;
		while (i < len && name[i] != '/') {
			if (!name_char_ok(name[i]))
				return -1;
			if (name[i] == '.' && i + 1 < len && name[i + 1] == '.')
				return -1;
			i++;
		}
		if (i == start || name[start] == '.')
			return -1;
		if (i - start >= 5 && !memcmp(name + i - 5, ".lock", 5))
			return -1;
		if (name[i - 1] == '.')
			return -1;
		if (i < len) {
			i++;
			if (i == len)
				return -1;   /* trailing slash */
		}
	}
	return 0;
}

/* Lowercase hex of exactly 40 or 64 digits at buf[0..n): its length, or 0. */
static size_t hex_len(const char *buf, size_t n)
{
	size_t i = 0;
	while (i < n && ((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f')))
		i++;
	return i == 40 || i == 64 ? i : 0;
}

int git_refs_parse_loose(const char *buf, size_t len, struct git_ref *out)
{
	size_t n;
	out->oid[0] = out->target[0] = out->peeled[0] = '\0';
	if (!len || buf[len - 1] != '\n')
		return GIT_REFS_UNSURE;
	len--;
	if (len > 5 && !memcmp(buf, "ref: ", 5)) {
		if (git_refs_name_ok(buf + 5, len - 5) < 0)
			return GIT_REFS_UNSURE;
		memcpy(out->target, buf + 5, len - 5);
		out->target[len - 5] = '\0';
		return GIT_REFS_FOUND;
	}
	n = hex_len(buf, len);
	if (!n || n != len)
		return GIT_REFS_UNSURE;
	memcpy(out->oid, buf, n);
	out->oid[n] = '\0';
	return GIT_REFS_FOUND;
}

int git_refs_packed_find(const char *buf, size_t len, const char *name, size_t nlen,
			 struct git_ref *out, int *children)
{
	const char *p = buf, *end = buf + len;
	int found = 0, last_was_match = 0, any_ref = 0;
	out->oid[0] = out->target[0] = out->peeled[0] = '\0';
	if (children)
		*children = 0;
	if (len && buf[len - 1] != '\n')
		return GIT_REFS_UNSURE;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = (size_t)(nl - p), h;
		if (*p == '#') {
			/* only the header, first, is a comment git writes */
			if (p != buf || l < 17 || memcmp(p, "# pack-refs with:", 17))
				return GIT_REFS_UNSURE;
		} else if (*p == '^') {
			h = hex_len(p + 1, l - 1);
			if (!any_ref || !h || h + 1 != l)
				return GIT_REFS_UNSURE;
			if (last_was_match) {
				memcpy(out->peeled, p + 1, h);
				out->peeled[h] = '\0';
			}
			last_was_match = 0;
		} else {
			h = hex_len(p, l);
			if (!h || h + 1 >= l || p[h] != ' ')
				return GIT_REFS_UNSURE;
			any_ref = 1;
			last_was_match = 0;
			if (l - h - 1 == nlen && !memcmp(p + h + 1, name, nlen)) {
				if (found)
					return GIT_REFS_UNSURE;   /* duplicate entry: git would refuse */
				found = 1;
				last_was_match = 1;
				memcpy(out->oid, p, h);
				out->oid[h] = '\0';
			} else if (children && l - h - 1 > nlen + 1 && !memcmp(p + h + 1, name, nlen) &&
				   p[h + 1 + nlen] == '/') {
				/* for-each-ref would judge the entry below: only plain ones are ours */
				if (git_refs_name_ok(p + h + 1, l - h - 1) < 0)
					return GIT_REFS_UNSURE;
				*children = 1;
			}
		}
		p = nl + 1;
	}
	return found ? GIT_REFS_FOUND : GIT_REFS_MISSING;
}

/* Read a whole small file: 0, 1 when it does not exist (or is not a file), or UNSURE. */
static int read_small(const char *path, size_t max, struct strbuf *out, int *is_dir)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t n;
	if (is_dir)
		*is_dir = 0;
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 1;
		return GIT_REFS_UNSURE;   /* ELOOP (a symlink) and the rest: ask git */
	}
	if (fstat(fd, &st) < 0) {
		close(fd);
		return GIT_REFS_UNSURE;
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		if (is_dir)
			*is_dir = 1;
		return 1;
	}
	if (!S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
		close(fd);
		return GIT_REFS_UNSURE;
	}
	strbuf_grow(out, (size_t)st.st_size + 1);
	for (;;) {
		if (out->len >= max) {
			close(fd);
			return GIT_REFS_UNSURE;
		}
		strbuf_grow(out, 4096);
		n = read(fd, out->buf + out->len, max - out->len < 4096 ? max - out->len : 4096);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return GIT_REFS_UNSURE;
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
		out->buf[out->len] = '\0';
	}
	close(fd);
	return 0;
}

static int exists(const char *dir, const char *name)
{
	struct strbuf p = STRBUF_INIT;
	struct stat st;
	int r;
	strbuf_addf(&p, "%s/%s", dir, name);
	r = lstat(p.buf, &st);
	strbuf_release(&p);
	if (r == 0)
		return 1;
	return errno == ENOENT ? 0 : -1;
}

int git_refs_read(const char *gitdir, const char *name, size_t nlen, struct git_ref *out, int *children)
{
	struct strbuf path = STRBUF_INIT, data = STRBUF_INIT;
	int r, is_dir = 0, packed_children = 0;

	out->oid[0] = out->target[0] = out->peeled[0] = '\0';
	if (children)
		*children = 0;
	if (git_refs_name_ok(name, nlen) < 0)
		return GIT_REFS_UNSURE;
	/* other ref backends and linked worktrees keep refs elsewhere */
	if (exists(gitdir, "reftable") != 0 || exists(gitdir, "commondir") != 0)
		return GIT_REFS_UNSURE;
	/* and a directory without HEAD is not a git dir we know how to read */
	if (exists(gitdir, "HEAD") != 1)
		return GIT_REFS_UNSURE;

	strbuf_addf(&path, "%s/%.*s", gitdir, (int)nlen, name);
	r = read_small(path.buf, 4096, &data, &is_dir);
	if (r == 0) {
		r = git_refs_parse_loose(data.buf, data.len, out);
		/* a loose file means no ref below it can exist as a loose file; packed ones might */
		if (r == GIT_REFS_FOUND && !children)
			goto done;
		if (r != GIT_REFS_FOUND)
			goto done;
	} else if (r < 0) {
		goto done;
	}
	if (is_dir) {
		/* refs/x/ as a directory: maybe refs below it; git prunes empty ones, we do not guess */
		if (children)
			*children = 1;
	}
	{
		struct git_ref packed;
		int loose_found = r == 0;
		strbuf_reset(&path);
		strbuf_addf(&path, "%s/packed-refs", gitdir);
		strbuf_reset(&data);
		r = read_small(path.buf, GIT_REFS_PACKED_MAX, &data, NULL);
		if (r < 0)
			goto done;
		if (r == 1) {
			r = loose_found ? GIT_REFS_FOUND : GIT_REFS_MISSING;
			goto done;
		}
		r = git_refs_packed_find(data.buf, data.len, name, nlen, &packed, &packed_children);
		if (r < 0)
			goto done;
		if (children && packed_children)
			*children = 1;
		if (loose_found) {
			r = GIT_REFS_FOUND;   /* the loose one wins */
		} else if (r == GIT_REFS_FOUND) {
			*out = packed;
		}
	}
done:
	strbuf_release(&path);
	strbuf_release(&data);
	return r;
}

int git_refs_resolve(const char *gitdir, const char *name, size_t nlen, struct git_ref *out)
{
	char cur[GIT_REFS_NAME_MAX + 1];
	size_t len = nlen;
	int r;
	if (nlen > GIT_REFS_NAME_MAX)
		return GIT_REFS_UNSURE;
	memcpy(cur, name, nlen);
	cur[nlen] = '\0';
	for (int depth = 0; depth <= GIT_REFS_MAX_DEPTH; depth++) {
		r = git_refs_read(gitdir, cur, len, out, NULL);
		if (r != GIT_REFS_FOUND)
			return r;
		if (!out->target[0]) {
			if (depth)
				memcpy(out->target, cur, len + 1);
			return GIT_REFS_FOUND;
		}
		len = strlen(out->target);
		memcpy(cur, out->target, len + 1);
	}
	return GIT_REFS_UNSURE;   /* too deep: git's answer, whatever it is */
}

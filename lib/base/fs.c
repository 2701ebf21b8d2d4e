/* mkdir -p, rm -rf, fsync of directories, atomic file writes. */
#define _XOPEN_SOURCE 700
#include "fs.h"
#include "strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_mkdir_p(const char *path, mode_t mode)
{
	struct strbuf sb = STRBUF_INIT;
	int rc = 0;
	strbuf_addstr(&sb, path);
	for (size_t i = 1; i <= sb.len && rc == 0; i++) {
		if (i == sb.len || sb.buf[i] == '/') {
			char c = sb.buf[i];
			sb.buf[i] = '\0';
			if (mkdir(sb.buf, mode) < 0 && errno != EEXIST)
				rc = -errno;
			sb.buf[i] = c;
		}
	}
	strbuf_release(&sb);
	return rc;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (flag == FTW_DP || flag == FTW_D)
		return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int fs_remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 ? -errno : 0;
	if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) < 0)
		return -errno;
	return 0;
}

int fs_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY);
	int rc = 0;
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	struct strbuf tmp = STRBUF_INIT;
	const char *p = data;
	int fd, rc = 0;

	strbuf_addf(&tmp, "%s.tmp.%d", path, (int)getpid());
	fd = open(tmp.buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = -errno;
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (!rc && rename(tmp.buf, path) < 0)
		rc = -errno;
	if (rc)
		unlink(tmp.buf);
out:
	strbuf_release(&tmp);
	return rc;
}

int fs_read_fd(int fd, size_t max, struct strbuf *out)
{
	char buf[65536];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (out->len + (size_t)n > max)
			return -EFBIG;
		strbuf_add(out, buf, (size_t)n);
	}
	return n < 0 ? -errno : 0;
}

int fs_read_file(const char *path, size_t max, struct strbuf *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;
	if (fd < 0)
		return -errno;
	rc = fs_read_fd(fd, max, out);
	close(fd);
	return rc;
}

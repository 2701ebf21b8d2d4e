/* File-system helpers for code that creates, replaces and removes repositories. */
#ifndef BASE_FS_H
#define BASE_FS_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p; 0 or -errno. */
int fs_mkdir_p(const char *path, mode_t mode);
/* rm -rf without a shell and without following symlinks; 0 or -errno. */
int fs_remove_tree(const char *path);
/* fsync a directory so a rename or create in it is durable. */
int fs_fsync_dir(const char *path);
/* Write `len` bytes to `path` via a temp file, fsync and rename; 0 or -errno. */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Read at most `max` bytes of a file into a strbuf; -EFBIG when larger. */
struct strbuf;
int fs_read_file(const char *path, size_t max, struct strbuf *out);
/* The same from an open descriptor, to its end (stdin of a command-line tool). */
int fs_read_fd(int fd, size_t max, struct strbuf *out);

#endif

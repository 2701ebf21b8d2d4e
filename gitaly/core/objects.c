/* Moving objects written into a quarantine into the repository (docs/technical/gitaly-node.md, "Write RPCs"). */
#include "core/gitaly.h"
#include "base/fs.h"
#include "base/util.h"
#include "git/objfiles.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

/* Link (or rename) quarantined objects into place; what exists already stays. */
int gitaly_migrate_objects(const char *src, const char *dst, struct strbuf *err)
{
	DIR *d = opendir(src);
	struct dirent *de;
	struct strvec names = STRVEC_INIT;
	int rc = 0;

	if (!d) {
		strbuf_addf(err, "reading directory: %s", strerror(errno));
		return -1;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			strvec_push(&names, de->d_name);
	closedir(d);
	if (names.nr)
		git_objfiles_sort(names.v, names.nr);
	for (size_t i = 0; i < names.nr && rc == 0; i++) {
		struct strbuf s = STRBUF_INIT, t = STRBUF_INIT;
		struct stat st;
		strbuf_addf(&s, "%s/%s", src, names.v[i]);
		strbuf_addf(&t, "%s/%s", dst, names.v[i]);
		if (lstat(s.buf, &st) < 0) {
			strbuf_addf(err, "stat %s: %s", s.buf, strerror(errno));
			rc = -1;
		} else if (S_ISDIR(st.st_mode)) {
			if (mkdir(t.buf, 0755) < 0 && errno != EEXIST) {
				strbuf_addf(err, "creating target directory \"%s\": %s", t.buf, strerror(errno));
				rc = -1;
			} else {
				rc = gitaly_migrate_objects(s.buf, t.buf, err);
				if (rc == 0)
					fs_fsync_dir(t.buf);
			}
		} else if (link(s.buf, t.buf) == 0 || errno == EEXIST) {
			unlink(s.buf);
		} else if (rename(s.buf, t.buf) < 0 && errno != EEXIST) {
			strbuf_addf(err, "migrating object file \"%s\": %s", s.buf, strerror(errno));
			rc = -1;
		}
		strbuf_release(&s);
		strbuf_release(&t);
	}
	strvec_clear(&names);
	if (rc == 0) {
		fs_fsync_dir(dst);
		if (rmdir(src) < 0) {
			strbuf_addf(err, "removing source directory: %s", strerror(errno));
			rc = -1;
		}
	}
	return rc;
}

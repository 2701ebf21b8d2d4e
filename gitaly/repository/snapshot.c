/*
 * GetSnapshot: a tar stream of the files that make up a
 * repository's refs and objects, written by us so the paths can be chosen
 * (alternate object directories are re-rooted under objects/). The tree is
 * walked lazily, one directory listing at a time, and file data is read only
 * as fast as the client takes it, so memory stays flat for any repository.
 */
#include "repository/repository.h"
#include "read/read.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/pb.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

/* --- tar headers (ustar, with a PAX header for long names and huge files) --- */

#define TAR_BLOCK 512
#define USTAR_MAX_SIZE 077777777777ULL

static void octal(char *field, size_t width, unsigned long long v)
{
	/* width includes the terminating NUL */
	char tmp[32];
	if (v >= (1ULL << (3 * (width - 1))))
		v = 0; /* does not fit: PAX carries it (sizes) or it does not matter (ids) */
	snprintf(tmp, sizeof(tmp), "%0*llo", (int)(width - 1), v);
	memcpy(field, tmp, width - 1);
	field[width - 1] = '\0';
}

static void pax_record(struct strbuf *sb, const char *key, const char *value)
{
	/* "<len> <key>=<value>\n" where <len> counts the whole record, itself included */
	size_t body = strlen(key) + strlen(value) + 3, n = body + 1;
	char digits[24];
	for (;;) {
		size_t d = (size_t)snprintf(digits, sizeof(digits), "%zu", n);
		if (body + d == n)
			break;
		n = body + d;
	}
	strbuf_addf(sb, "%zu %s=%s\n", n, key, value);
}

static void pad_block(struct strbuf *out)
{
	size_t rem = out->len % TAR_BLOCK;
	if (rem) {
		size_t n = TAR_BLOCK - rem;
		strbuf_grow(out, n);
		memset(out->buf + out->len, 0, n);
		strbuf_setlen(out, out->len + n);
	}
}

static void raw_header(struct strbuf *out, const char *name, unsigned mode, unsigned long long uid,
		       unsigned long long gid, unsigned long long size, long long mtime, char type)
{
	unsigned char h[TAR_BLOCK];
	unsigned sum = 0;
	size_t nl = strlen(name);

	memset(h, 0, sizeof(h));
	memcpy(h, name, nl > 100 ? 100 : nl);
	octal((char *)h + 100, 8, mode);
	octal((char *)h + 108, 8, uid);
	octal((char *)h + 116, 8, gid);
	octal((char *)h + 124, 12, size);
	octal((char *)h + 136, 12, mtime > 0 ? (unsigned long long)mtime : 0);
	memset(h + 148, ' ', 8);
	h[156] = (unsigned char)type;
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	for (size_t i = 0; i < sizeof(h); i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum & 0777777);
	h[155] = ' ';
	/* pad_block first: the header must start on a block boundary */
	pad_block(out);
	strbuf_add(out, h, sizeof(h));
}

/* Header(s) for one entry; data (if any) follows and is padded by the caller. */
static void tar_header(struct strbuf *out, const char *name, const struct stat *st)
{
	int dir = S_ISDIR(st->st_mode);
	unsigned long long size = dir ? 0 : (unsigned long long)st->st_size;

	if (strlen(name) > 100 || size > USTAR_MAX_SIZE) {
		struct strbuf pax = STRBUF_INIT;
		if (strlen(name) > 100)
			pax_record(&pax, "path", name);
		if (size > USTAR_MAX_SIZE) {
			char n[32];
			snprintf(n, sizeof(n), "%llu", size);
			pax_record(&pax, "size", n);
		}
		raw_header(out, "././@PaxHeader", 0644, 0, 0, pax.len, (long long)st->st_mtime, 'x');
		strbuf_add(out, pax.buf, pax.len);
		pad_block(out);
		strbuf_release(&pax);
	}
	raw_header(out, name, (unsigned)(st->st_mode & 07777), (unsigned long long)st->st_uid,
		   (unsigned long long)st->st_gid, size, (long long)st->st_mtime, dir ? '5' : '0');
}

/* --- what goes into a snapshot --- */

/* Loose objects (xx/<38|62 hex>) and packs (pack/pack-<40|64 hex>.pack|.idx). */
static int all_xdigit(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return 0;
	return 1;
}

static int is_object_file(const char *parent, const char *name)
{
	size_t pl = strlen(parent), nl = strlen(name);
	const char *dot;

	if (pl == 2 && all_xdigit(parent, 2) && (nl == 38 || nl == 62) && all_xdigit(name, nl))
		return 1;
	if (strcmp(parent, "pack") || strncmp(name, "pack-", 5))
		return 0;
	dot = strrchr(name, '.');
	if (!dot || (strcmp(dot, ".pack") && strcmp(dot, ".idx")))
		return 0;
	nl = (size_t)(dot - name) - 5;
	return (nl == 40 || nl == 64) && all_xdigit(name + 5, nl);
}

struct source {
	char *abs;          /* file or directory on disk */
	char *tar;          /* its name in the archive */
	int is_dir;
	int objects_only;   /* only object files, no directory entries */
};

struct frame {
	char *abs, *tar;
	char *base;         /* last component of abs (object file filter) */
	char **names;
	size_t nr, i;
};

struct snapshot {
	struct gitaly_call op;
	struct source *src;
	size_t nr_src, cur_src;
	struct frame *stack;
	size_t depth, alloc_stack;
	int fd;                 /* file whose data is being copied */
	unsigned long long left;
	struct strbuf out;      /* the next message's tar bytes */
	struct strbuf msg;
	int eof;
};

static void add_source(struct snapshot *s, size_t *alloc, const char *abs, const char *tar, int is_dir,
		       int objects_only)
{
	ALLOC_GROW(s->src, s->nr_src + 1, *alloc);
	s->src[s->nr_src].abs = xstrdup(abs);
	s->src[s->nr_src].tar = xstrdup(tar);
	s->src[s->nr_src].is_dir = is_dir;
	s->src[s->nr_src].objects_only = objects_only;
	s->nr_src++;
}

/*
 * Alternate object directories, recursively (git stops at depth 5), each
 * required to lie inside the storage: one outside makes upstream ignore all
 * of them, and so do we.
 */
static int alternates(const char *storage, const char *objdir, int depth, struct strvec *out)
{
	struct strbuf path = STRBUF_INIT, data = STRBUF_INIT;
	struct stat st;
	const char *p;
	int rc = 0;

	if (depth > 5 || stat(objdir, &st) < 0 || !S_ISDIR(st.st_mode))
		return 0;
	if (depth > 0)
		strvec_push(out, objdir);
	strbuf_addf(&path, "%s/info/alternates", objdir);
	if (fs_read_file(path.buf, 1024 * 1024, &data) < 0)
		goto out;
	for (p = data.buf; *p && rc == 0;) {
		size_t n = strcspn(p, "\n");
		if (n && p[0] != '#') {
			struct strbuf raw = STRBUF_INIT, dir = STRBUF_INIT;
			if (p[0] != '/')
				strbuf_addf(&raw, "%s/", objdir);
			strbuf_add(&raw, p, n);
			/* absolute, as objdir is; up to a NUL, as a C path would be */
			go_path_clean(&dir, raw.buf, strlen(raw.buf));
			if (strncmp(dir.buf, storage, strlen(storage)))
				rc = -1;
			else
				rc = alternates(storage, dir.buf, depth + 1, out);
			strbuf_release(&raw);
			strbuf_release(&dir);
		}
		p += n;
		if (*p)
			p++;
	}
out:
	strbuf_release(&path);
	strbuf_release(&data);
	return rc;
}

static void frame_free(struct frame *f)
{
	reposvc_free_names(f->names, f->nr);
	free(f->abs);
	free(f->tar);
	free(f->base);
}

/* Enter a directory: list it now, in byte order (the order a Go walk uses). */
static int push_dir(struct snapshot *s, const char *abs, const char *tar)
{
	struct frame f = { 0 };
	const char *slash = strrchr(abs, '/');
	int rc = reposvc_list_dir(abs, &f.names, &f.nr);

	if (rc < 0)
		return rc == -ENOENT ? 0 : rc;
	f.abs = xstrdup(abs);
	f.tar = xstrdup(tar);
	f.base = xstrdup(slash ? slash + 1 : abs);
	ALLOC_GROW(s->stack, s->depth + 1, s->alloc_stack);
	s->stack[s->depth++] = f;
	return 0;
}

/* Start copying a regular file: header now, data in later pumps. Vanished files are skipped. */
static int start_file(struct snapshot *s, const char *abs, const char *tar)
{
	struct stat st;
	int fd = open(abs, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ELOOP ? 0 : -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 0;
	}
	tar_header(&s->out, tar, &st);
	if (st.st_size > 0) {
		s->fd = fd;
		s->left = (unsigned long long)st.st_size;
	} else {
		close(fd);
	}
	return 0;
}

/* Produce the next entry's header into s->out. Returns 1 if one was made, 0 at the end, <0 on error. */
static int next_entry(struct snapshot *s)
{
	struct strbuf abs = STRBUF_INIT, tar = STRBUF_INIT;
	int rc = 0;

	while (rc == 0) {
		struct source *src;
		if (s->depth) {
			struct frame *f = &s->stack[s->depth - 1];
			struct stat st;
			const char *name;
			if (f->i == f->nr) {
				frame_free(f);
				s->depth--;
				continue;
			}
			name = f->names[f->i++];
			strbuf_reset(&abs);
			strbuf_reset(&tar);
			strbuf_addf(&abs, "%s/%s", f->abs, name);
			strbuf_addf(&tar, "%s/%s", f->tar, name);
			if (lstat(abs.buf, &st) < 0) {
				if (errno != ENOENT)
					rc = -errno;
				continue;
			}
			src = &s->src[s->cur_src - 1];
			if (S_ISDIR(st.st_mode)) {
				if (!src->objects_only) {
					strbuf_addch(&tar, '/');
					tar_header(&s->out, tar.buf, &st);
					strbuf_setlen(&tar, tar.len - 1);
					rc = push_dir(s, abs.buf, tar.buf);
					if (rc == 0)
						rc = 1;
					break;
				}
				rc = push_dir(s, abs.buf, tar.buf);
				continue;
			}
			if (!S_ISREG(st.st_mode) || (src->objects_only && !is_object_file(f->base, name)))
				continue;
			rc = start_file(s, abs.buf, tar.buf);
			if (rc == 0)
				rc = 1;
			break;
		}
		if (s->cur_src == s->nr_src)
			break;
		src = &s->src[s->cur_src++];
		if (src->is_dir) {
			struct stat st;
			if (lstat(src->abs, &st) < 0 || !S_ISDIR(st.st_mode))
				continue;
			if (!src->objects_only) {
				strbuf_reset(&tar);
				strbuf_addf(&tar, "%s/", src->tar);
				tar_header(&s->out, tar.buf, &st);
			}
			rc = push_dir(s, src->abs, src->tar);
			if (rc == 0 && !src->objects_only)
				rc = 1;
		} else {
			size_t before = s->out.len;
			rc = start_file(s, src->abs, src->tar);
			if (rc == 0 && s->out.len != before)
				rc = 1;
		}
	}
	strbuf_release(&abs);
	strbuf_release(&tar);
	return rc;
}

/* Fill s->out up to one message. 0, or -errno. */
static int produce(struct snapshot *s)
{
	while (s->out.len < MSG_CHUNK && !s->eof) {
		if (s->fd >= 0) {
			size_t want = MSG_CHUNK - s->out.len;
			ssize_t n;
			if (want > s->left)
				want = (size_t)s->left;
			strbuf_grow(&s->out, want);
			n = read(s->fd, s->out.buf + s->out.len, want);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) /* the file shrank under us: the header promised more */
				return n < 0 ? -errno : -EIO;
			strbuf_setlen(&s->out, s->out.len + (size_t)n);
			s->left -= (unsigned long long)n;
			if (!s->left) {
				close(s->fd);
				s->fd = -1;
				pad_block(&s->out);
			}
			continue;
		}
		{
			int rc = next_entry(s);
			if (rc < 0)
				return rc;
			if (rc == 0) {
				/* end of archive: two zero blocks */
				pad_block(&s->out);
				strbuf_grow(&s->out, 2 * TAR_BLOCK);
				memset(s->out.buf + s->out.len, 0, 2 * TAR_BLOCK);
				strbuf_setlen(&s->out, s->out.len + 2 * TAR_BLOCK);
				s->eof = 1;
			} else if (s->fd < 0) {
				pad_block(&s->out);
			}
		}
	}
	return 0;
}

static void pump(struct snapshot *s)
{
	while (s->op.call && !s->op.finished && !grpc_call_send_full(s->op.call)) {
		size_t n;
		int rc = produce(s);
		if (rc < 0) {
			reposvc_finishf(&s->op, GRPC_INTERNAL, "building snapshot failed: %s", strerror(-rc));
			return;
		}
		n = MIN(s->out.len, (size_t)MSG_CHUNK);
		if (n) {
			strbuf_reset(&s->msg);
			pb_put_bytes(&s->msg, 1, s->out.buf, n);
			grpc_call_send(s->op.call, s->msg.buf, s->msg.len);
			strbuf_remove_front(&s->out, n);
		}
		if (s->eof && !s->out.len) {
			reposvc_finish(&s->op, GRPC_OK, NULL);
			return;
		}
	}
}

static void snapshot_writable(struct grpc_call *call)
{
	pump(grpc_call_user(call));
}

static void snapshot_close(struct grpc_call *call, enum grpc_code code)
{
	gitaly_call_closed(grpc_call_user(call));
}

/* Nothing runs between two pumps: a closed call just ends the work. */
static void snapshot_cancel(struct gitaly_call *op)
{
	reposvc_finish(op, GRPC_CANCELLED, "context canceled");
}

static const struct grpc_call_ops snapshot_ops = {
	.on_writable = snapshot_writable,
	.on_close = snapshot_close,
};

static void snapshot_release(struct gitaly_call *op)
{
	struct snapshot *s = container_of(op, struct snapshot, op);
	for (size_t i = 0; i < s->nr_src; i++) {
		free(s->src[i].abs);
		free(s->src[i].tar);
	}
	free(s->src);
	while (s->depth)
		frame_free(&s->stack[--s->depth]);
	free(s->stack);
	if (s->fd >= 0)
		close(s->fd);
	strbuf_release(&s->out);
	strbuf_release(&s->msg);
	free(s);
}

void reposvc_get_snapshot(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	static const char *const files_before[] = { "HEAD", "packed-refs" };
	static const char *const dirs[] = { "refs", "branches" };
	struct gitaly *g = data;
	Gitaly__GetSnapshotRequest *req = msg_unpack(call, &gitaly__get_snapshot_request__descriptor, buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT, p = STRBUF_INIT;
	const struct gitaly_storage *st;
	struct strvec alts = STRVEC_INIT;
	struct snapshot *s;
	enum grpc_code code;
	size_t alloc = 0;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code == GRPC_OK)
		code = gitaly_storage(g, req->repository->storage_name, &st, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		goto out;
	}
	s = xcalloc(1, sizeof(*s));
	reposvc_init(&s->op, g, call, snapshot_release);
	s->op.cancel = snapshot_cancel;
	s->fd = -1;
	strbuf_init(&s->out, 0);
	strbuf_init(&s->msg, 0);

	/* HEAD, packed-refs, refs/, branches/, object files, shallow (upstream's order) */
	for (size_t i = 0; i < ARRAY_SIZE(files_before); i++) {
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/%s", path.buf, files_before[i]);
		add_source(s, &alloc, p.buf, files_before[i], 0, 0);
	}
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/%s", path.buf, dirs[i]);
		add_source(s, &alloc, p.buf, dirs[i], 1, 0);
	}
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/objects", path.buf);
	add_source(s, &alloc, p.buf, "objects", 1, 1);
	if (alternates(st->path, p.buf, 0, &alts) < 0) {
		log_msgf(LOG_WARN, "error getting alternate object directories of \"%s\": outside the storage",
			 path.buf);
		strvec_clear(&alts);
	}
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/shallow", path.buf);
	add_source(s, &alloc, p.buf, "shallow", 0, 0);
	for (size_t i = 0; i < alts.nr; i++)
		add_source(s, &alloc, alts.v[i], "objects", 1, 1);

	grpc_call_set_ops(call, &snapshot_ops, s);
	pump(s);
out:
	strvec_clear(&alts);
	strbuf_release(&path);
	strbuf_release(&msg);
	strbuf_release(&p);
	msg_free(req);
}

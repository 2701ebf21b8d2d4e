/*
 * RepositoryService/FindLicense: the license of HEAD's root tree. Files are
 * chosen as upstream's license detector chooses them (by name, a short file
 * naming another file is followed); their text is scored against the license
 * texts by repository/license_match.c. docs/technical/gitaly-repository.md,
 * "Licenses".
 */
#include "repository/repository.h"
#include "repository/license_match.h"
#include "read/read.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

/* A license text larger than this is not read (the root listing has its own cap). */
#define LICENSE_MAX (1024 * 1024)
#define LISTING_MAX (64u * 1024 * 1024)
/* A candidate shorter than this may name the real license file. */
#define POINTER_MAX 128

/* --- the call --- */

struct find_license {
	struct rd rd;
	char head[CATFILE_HEXSZ_MAX + 1];
	struct strvec candidates;      /* root blobs named like license files, in tree order */
	size_t next;
	const char *reading;           /* the file being read */
	int following;                 /* reading the file a short candidate named */
	struct strbuf pointer_text;    /* the file a short candidate names */
	struct strbuf short_text;      /* the short candidate's content */
	struct strbuf first_buf;       /* the first license file read ("Other" names it) */
	const struct lic_answer *best;
	double best_conf;
	struct strbuf best_path;
	regex_t name_re, readme_re;
	int have_re;
};

static void fl_free(struct rd *rd)
{
	struct find_license *x = (struct find_license *)rd;
	strvec_clear(&x->candidates);
	strbuf_release(&x->pointer_text);
	strbuf_release(&x->short_text);
	strbuf_release(&x->first_buf);
	strbuf_release(&x->best_path);
	if (x->have_re) {
		regfree(&x->name_re);
		regfree(&x->readme_re);
	}
}

static void fl_reply(struct find_license *x)
{
	Gitaly__FindLicenseResponse resp = GITALY__FIND_LICENSE_RESPONSE__INIT;
	if (x->best) {
		resp.license_short_name = (char *)x->best->id;
		resp.license_name = (char *)x->best->name;
		resp.license_url = (char *)x->best->url;
		resp.license_nickname = (char *)x->best->nickname;
		resp.license_path = x->best_path.buf;
	} else if (x->first_buf.len) {
		/* a license file no carried text is like */
		resp.license_short_name = (char *)"other";
		resp.license_name = (char *)"Other";
		resp.license_nickname = (char *)"LICENSE";
		resp.license_path = x->first_buf.buf;
	}
	rd_send(&x->rd, &resp);
	rd_ok(&x->rd);
}

static void fl_read_next(struct find_license *x);
static void fl_read(struct find_license *x, const char *path);

static void fl_consider(struct find_license *x, const char *path, const char *data, size_t len)
{
	double conf = 0;
	const struct lic_answer *l = lic_classify(data, len, &conf);
	/* upstream takes the most confident match, ties by name; a text we carry without its facts is "other" */
	if (l && l->id[0] && (!x->best || conf > x->best_conf || (conf == x->best_conf && strcmp(l->id, x->best->id) < 0))) {
		x->best = l;
		x->best_conf = conf;
		strbuf_reset(&x->best_path);
		strbuf_addstr(&x->best_path, path);
	}
}

static void fl_object(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct find_license *x = arg;
	int ok = status == 0 && info && info->type == CATFILE_BLOB;
	if (!x->rd.base.call)
		goto out;
	if (x->following) {
		/* the named file when it exists, else the short text itself */
		x->following = 0;
		if (ok)
			fl_consider(x, x->pointer_text.buf, data->buf, data->len);
		else
			fl_consider(x, x->reading, x->short_text.buf, x->short_text.len);
	} else if (ok) {
		const char *s = data->buf, *e = data->buf + data->len;
		if (!x->first_buf.len)
			strbuf_addstr(&x->first_buf, x->reading);
		while (s < e && isspace((unsigned char)*s))
			s++;
		while (e > s && isspace((unsigned char)e[-1]))
			e--;
		if (data->len < POINTER_MAX && e > s && !memchr(s, '\n', (size_t)(e - s)) &&
		    !memchr(s, '\0', (size_t)(e - s))) {
			strbuf_reset(&x->short_text);
			strbuf_add(&x->short_text, data->buf, data->len);
			strbuf_reset(&x->pointer_text);
			strbuf_add(&x->pointer_text, s, (size_t)(e - s));
			x->following = 1;
			fl_read(x, x->pointer_text.buf);
			goto out;
		}
		fl_consider(x, x->reading, data->buf, data->len);
	} else if (status == -EFBIG && info && info->type == CATFILE_BLOB && !x->first_buf.len) {
		/* larger than any license text: a license file all the same, named by nothing */
		strbuf_addstr(&x->first_buf, x->reading);
	}
	x->next++;
	fl_read_next(x);
out:
	gitaly_call_drop(&x->rd.base);
}

static void fl_read(struct find_license *x, const char *path)
{
	struct strbuf rev = STRBUF_INIT;
	strbuf_addf(&rev, "%s:%s", x->head, path);
	gitaly_call_hold(&x->rd.base);
	if (catfile_read(x->rd.cf, rev.buf, rev.len, LICENSE_MAX, fl_object, x) < 0) {
		x->rd.base.holds--;
		rd_finish(&x->rd, GRPC_INTERNAL, "detect licenses: object reader is gone");
	}
	strbuf_release(&rev);
}

static void fl_read_next(struct find_license *x)
{
	if (!x->rd.base.call)
		return;
	if (x->next >= x->candidates.nr) {
		fl_reply(x);
		return;
	}
	x->reading = x->candidates.v[x->next];
	fl_read(x, x->reading);
}

static void fl_leased(struct rd *rd)
{
	fl_read_next((struct find_license *)rd);
}

/* "<mode> <type> <oid>\t<name>" entries of the root tree, NUL-terminated. */
static void listed(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	struct find_license *x = (struct find_license *)rd;
	size_t off = 0;
	if (status != 0) {
		rd_finish(rd, GRPC_INTERNAL, "detect licenses: ls-tree failed: exit status %d, stderr: %.*s", status,
			  (int)MIN(err->len, (size_t)500), err->buf);
		return;
	}
	while (off < out->len) {
		char *e = out->buf + off, *z = memchr(e, '\0', out->len - off), *tab, *name, *lower;
		if (!z)
			break;
		off = (size_t)(z - out->buf) + 1;
		if (!(tab = memchr(e, '\t', (size_t)(z - e))) || strncmp(strchr(e, ' ') ? strchr(e, ' ') + 1 : "", "blob ", 5))
			continue;
		name = tab + 1;
		lower = xstrdup(name);
		for (char *p = lower; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		/* README-like files are for upstream's NLP plan B, which it skips */
		if (regexec(&x->readme_re, lower, 0, NULL, 0) != 0 && regexec(&x->name_re, lower, 0, NULL, 0) == 0)
			strvec_push(&x->candidates, name);
		free(lower);
	}
	if (!x->candidates.nr) {
		fl_reply(x);
		return;
	}
	rd_lease(rd, fl_leased);
}

static void head_resolved(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const flags[] = { "-z", NULL };
	struct find_license *x = (struct find_license *)rd;
	const char *args[2];
	struct git_call gc;
	(void)err;
	if (status != 0) {
		/* no HEAD commit (an empty repository): no license */
		fl_reply(x);
		return;
	}
	while (out->len && (out->buf[out->len - 1] == '\n'))
		strbuf_setlen(out, out->len - 1);
	if (out->len > CATFILE_HEXSZ_MAX) {
		rd_finish(rd, GRPC_INTERNAL, "cannot find HEAD revision: bad object id");
		return;
	}
	memcpy(x->head, out->buf, out->len + 1);
	args[0] = x->head;
	args[1] = NULL;
	rd_git_call(rd, &gc, "ls-tree");
	gc.flags = flags;
	gc.args = args;
	rd_capture(rd, &gc, LISTING_MAX, listed);
}

void reposvc_find_license(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	static const char *const flags[] = { "--verify", "--quiet", NULL };
	static const char *const args[] = { "HEAD^{commit}", NULL };
	Gitaly__FindLicenseRequest *req = msg_unpack(call, &gitaly__find_license_request__descriptor, buf, len);
	struct find_license *x;
	struct git_call gc;
	if (!req)
		return;
	if (!(x = (struct find_license *)rd_start(data, call, sizeof(*x), req, req->repository)))
		return;
	strvec_init(&x->candidates);
	strbuf_init(&x->pointer_text, 0);
	strbuf_init(&x->short_text, 0);
	strbuf_init(&x->first_buf, 0);
	strbuf_init(&x->best_path, 0);
	x->rd.on_free = fl_free;
	/* upstream's detector: license-like base names, and its README names */
	if (regcomp(&x->name_re,
		    "^(|.*[-_. ])(li[cs]en[cs]e(s?)|legal|copy(left|right|ing)|unlicense|l?gpl([-_ v]?)([0-9]\\.?[0-9])?|bsd|mit|apache)(|[-_. ].*)$",
		    REG_EXTENDED | REG_NOSUB) != 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "detect licenses: bad pattern");
		return;
	}
	if (regcomp(&x->readme_re, "(readme|guidelines)(\\.md|\\.rst|\\.html|\\.txt)?$", REG_EXTENDED | REG_NOSUB) != 0) {
		regfree(&x->name_re);
		rd_finish(&x->rd, GRPC_INTERNAL, "detect licenses: bad pattern");
		return;
	}
	x->have_re = 1;
	rd_git_call(&x->rd, &gc, "rev-parse");
	gc.flags = flags;
	gc.args = args;
	rd_capture(&x->rd, &gc, 4096, head_resolved);
}

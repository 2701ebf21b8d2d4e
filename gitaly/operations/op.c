/* OperationService plumbing: call contexts, git steps, objects, quarantine, signatures, error details. */
#include "operations/operations.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/pb.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Commits, tags and short command outputs; a larger answer is not one of those. */
#define OP_MAX_OBJECT (16 * 1024 * 1024)

static const char zero_sha1[] = "0000000000000000000000000000000000000000";
static const char zero_sha256[] = "0000000000000000000000000000000000000000000000000000000000000000";

const char *op_zero_oid(const struct op *op)
{
	return op->hexlen == 64 ? zero_sha256 : zero_sha1;
}

/* --- lifecycle --- */

static void op_release(struct gitaly_call *c)
{
	struct op *op = container_of(c, struct op, base);
	if (op->qdir.len)
		fs_remove_tree(op->qdir.buf);
	strbuf_release(&op->qdir);
	strbuf_release(&op->path);
	if (op->qrepo)
		protobuf_c_message_free_unpacked(&op->qrepo->base, NULL);
	op->free_ctx(op);
}

/* The call closed while a step is in flight: an update stops its hooks and git. */
static void op_cancel(struct gitaly_call *c)
{
	struct op *op = container_of(c, struct op, base);
	if (op->upd)
		op_update_cancel(op);
}

void op_closed(struct op *op)
{
	gitaly_call_closed(&op->base);
}

void op_init(struct op *op, struct gitaly *g, struct grpc_call *call, void (*free_ctx)(struct op *op),
	     int unary)
{
	gitaly_call_init(&op->base, g, call, op_release);
	op->base.cancel = op_cancel;
	op->free_ctx = free_ctx;
	op->hexlen = 40;
	strbuf_init(&op->path, 0);
	strbuf_init(&op->qdir, 0);
	if (unary)
		gitaly_call_watch(&op->base);
}

enum grpc_code op_locate(struct op *op, const Gitaly__Repository *repo)
{
	struct strbuf msg = STRBUF_INIT;
	enum grpc_code code = gitaly_locate(op->base.g, repo, 0, &op->path, &msg);
	op->repo = repo;
	if (code != GRPC_OK)
		op_fail(op, code, "%s", msg.buf);
	strbuf_release(&msg);
	return code;
}

void op_fail(struct op *op, enum grpc_code code, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	gitaly_call_finish(&op->base, code, sb.buf, NULL);
	strbuf_release(&sb);
}

void op_fail_detail(struct op *op, enum grpc_code code, const char *msg, const ProtobufCMessage *detail)
{
	gitaly_call_finish_detail(&op->base, code, msg, detail);
}

/* --- git steps --- */

void op_git_call(struct op *op, struct git_call *gc, const char *subcmd)
{
	memset(gc, 0, sizeof(*gc));
	gc->git_dir = op->path.buf;
	/* through the quarantine until its objects moved into the repository */
	gc->repo = op->qrepo && op->qdir.len ? op->qrepo : op->repo;
	gc->subcmd = subcmd;
	gc->rpc = op->base.call;
}

int op_step_end(struct op *op)
{
	return gitaly_call_drop(&op->base);
}

static void op_git_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct op *op = arg;
	op_git_fn fn = op->pending;
	op->pending = NULL;
	if (!op_step_end(op))
		fn(op, status, out, err);
}

void op_git(struct op *op, const struct git_call *gc, const void *in, size_t inlen, size_t max_out,
	    op_git_fn fn)
{
	struct strbuf msg = STRBUF_INIT;
	gitaly_call_hold(&op->base);
	op->pending = fn;
	if (gitaly_git_capture(op->base.g, gc, in ? in : "", inlen, max_out, op_git_done, op, NULL, &msg) < 0) {
		op->base.holds--;   /* nothing started: undo the hold without a release */
		op->pending = NULL;
		op_fail(op, GRPC_INTERNAL, "%s", msg.buf);
	}
	strbuf_release(&msg);
}

static void on_object_format(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	op_git_fn next = op->next;
	op->next = NULL;
	if (status != 0) {
		op_fail(op, GRPC_INTERNAL, "detecting object hash: %s", err->buf);
		return;
	}
	op->hexlen = !strncmp(out->buf, "sha256", 6) ? 64 : 40;
	next(op, 0, out, err);
}

void op_detect_hash(struct op *op, op_git_fn fn)
{
	static const char *const flags[] = { "--show-object-format", NULL };
	struct git_call gc;
	op_git_call(op, &gc, "rev-parse");
	gc.flags = flags;
	op->next = fn;
	op_git(op, &gc, NULL, 0, 4096, on_object_format);
}

void op_rev_parse(struct op *op, const char *rev, op_git_fn fn)
{
	static const char *const flags[] = { "--verify", NULL };
	const char *args[] = { rev, NULL };
	struct git_call gc;
	op_git_call(op, &gc, "rev-parse");
	gc.flags = flags;
	gc.args = args;
	op_git(op, &gc, NULL, 0, 4096, fn);
}

void op_object_info(struct op *op, const char *rev, op_git_fn fn)
{
	static const char *const flags[] = { "--batch-check", NULL };
	struct git_call gc;
	struct strbuf in = STRBUF_INIT;
	op_git_call(op, &gc, "cat-file");
	gc.flags = flags;
	strbuf_addf(&in, "%s\n", strchr(rev, '\n') ? "" : rev);
	op_git(op, &gc, in.buf, in.len, 4096, fn);
	strbuf_release(&in);
}

void op_read_object(struct op *op, const char *rev, op_git_fn fn)
{
	static const char *const flags[] = { "--batch", NULL };
	struct git_call gc;
	struct strbuf in = STRBUF_INIT;
	op_git_call(op, &gc, "cat-file");
	gc.flags = flags;
	if (strchr(rev, '\n')) {
		/* one line is one request: a newline would ask for something else */
		rev = "";
	}
	strbuf_addf(&in, "%s\n", rev);
	op_git(op, &gc, in.buf, in.len, OP_MAX_OBJECT, fn);
	strbuf_release(&in);
}

void op_chomp(struct strbuf *sb)
{
	while (sb->len && (sb->buf[sb->len - 1] == '\n' || sb->buf[sb->len - 1] == '\r'))
		strbuf_setlen(sb, sb->len - 1);
}

int op_check_expected_old(struct op *op, const char *oid)
{
	struct strbuf err = STRBUF_INIT;
	if (hooks_validate_hex(oid, op->hexlen, &err) < 0) {
		op_fail(op, GRPC_INVALID_ARGUMENT, "invalid expected old object ID: %s", err.buf);
		strbuf_release(&err);
		return -1;
	}
	return 0;
}

int op_parse_batch(const struct strbuf *out, const char **oid, size_t *oidlen, const char **type,
		   size_t *typelen, const char **data, size_t *len)
{
	const char *nl = memchr(out->buf, '\n', out->len);
	const char *sp1, *sp2;
	char *end;
	unsigned long long size;
	if (!nl)
		return -1;
	sp1 = memchr(out->buf, ' ', (size_t)(nl - out->buf));
	if (!sp1)
		return -1;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(nl - sp1 - 1));
	if (!sp2)
		return -1;   /* "<rev> missing" */
	size = strtoull(sp2 + 1, &end, 10);
	if (end != nl || (size_t)(out->buf + out->len - (nl + 1)) < size)
		return -1;
	*oid = out->buf;
	*oidlen = (size_t)(sp1 - out->buf);
	*type = sp1 + 1;
	*typelen = (size_t)(sp2 - sp1 - 1);
	*data = nl + 1;
	*len = (size_t)size;
	return 0;
}

/* --- commits (docs/technical/gitaly-node.md, "Commits and tags") --- */

#define MAX_BODY 10240
#define FALLBACK_SECONDS 9223371974719179007LL

static ProtobufCBinaryData bin_dup(const char *s, size_t len)
{
	ProtobufCBinaryData b = { len, NULL };
	if (len)
		b.data = xmemdup(s, len);
	return b;
}

static Gitaly__CommitAuthor *parse_author(const char *v, size_t len)
{
	Gitaly__CommitAuthor *a = xmalloc(sizeof(*a));
	const char *lt = memchr(v, '<', len), *gt, *p, *end = v + len;
	gitaly__commit_author__init(a);
	if (!lt) {
		size_t n = len;
		if (n && v[n - 1] == ' ')
			n--;
		a->name = bin_dup(v, n);
		return a;
	}
	a->name = bin_dup(v, (size_t)(lt - v) - (lt > v && lt[-1] == ' ' ? 1 : 0));
	gt = memchr(lt + 1, '>', (size_t)(end - lt - 1));
	if (!gt)
		return a;
	a->email = bin_dup(lt + 1, (size_t)(gt - lt - 1));
	{
		/* whitespace separated: seconds and (when exactly two fields) the zone */
		const char *f[3];
		size_t fl[3], nf = 0;
		p = gt + 1;
		while (p < end) {
			while (p < end && strchr(" \t\n\r\v\f", *p))
				p++;
			if (p >= end)
				break;
			if (nf < 3) {
				f[nf] = p;
				fl[nf] = 0;
			}
			while (p < end && !strchr(" \t\n\r\v\f", *p)) {
				if (nf < 3)
					fl[nf]++;
				p++;
			}
			nf++;
		}
		if (nf >= 1) {
			char buf[32], *e;
			long long sec;
			int ok = fl[0] < sizeof(buf);
			if (ok) {
				memcpy(buf, f[0], fl[0]);
				buf[fl[0]] = '\0';
				errno = 0;
				sec = strtoll(buf, &e, 10);
				ok = !errno && *e == '\0' && fl[0] && sec >= 0 && sec <= (1LL << 53);
			}
			a->date = xmalloc(sizeof(*a->date));
			google__protobuf__timestamp__init(a->date);
			a->date->seconds = ok ? sec : FALLBACK_SECONDS;
			if (nf == 2)
				a->timezone = bin_dup(f[1], fl[1]);
		}
	}
	return a;
}

static Gitaly__SignatureType signature_type(const char *v, size_t len)
{
	static const struct { const char *s; Gitaly__SignatureType t; } k[] = {
		{ "-----BEGIN SIGNED MESSAGE-----", GITALY__SIGNATURE_TYPE__X509 },
		{ "-----BEGIN PGP MESSAGE-----", GITALY__SIGNATURE_TYPE__PGP },
		{ "-----BEGIN PGP SIGNATURE-----", GITALY__SIGNATURE_TYPE__PGP },
		{ "-----BEGIN SSH SIGNATURE-----", GITALY__SIGNATURE_TYPE__SSH },
	};
	for (size_t i = 0; i < ARRAY_SIZE(k); i++)
		if (strlen(k[i].s) == len && !memcmp(k[i].s, v, len))
			return k[i].t;
	return GITALY__SIGNATURE_TYPE__NONE;
}

Gitaly__GitCommit *op_parse_commit(const char *oid, size_t oidlen, const char *data, size_t len)
{
	Gitaly__GitCommit *c = xmalloc(sizeof(*c));
	const char *p = data, *end = data + len;
	size_t nparents = 0, alloc = 0;

	gitaly__git_commit__init(c);
	c->id = xstrndup(oid, oidlen);
	c->tree_id = xstrdup("");
	c->encoding = xstrdup("");
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end, *sp;
		size_t kl;
		if (le == p && nl) {
			p = nl + 1;
			goto body;
		}
		if (*p != ' ' && (sp = memchr(p, ' ', (size_t)(le - p)))) {
			const char *v = sp + 1;
			size_t vl = (size_t)(le - v);
			kl = (size_t)(sp - p);
			if (kl == 6 && !memcmp(p, "parent", 6)) {
				ALLOC_GROW(c->parent_ids, nparents + 1, alloc);
				c->parent_ids[nparents++] = xstrndup(v, vl);
			} else if (kl == 6 && !memcmp(p, "author", 6)) {
				if (c->author)
					protobuf_c_message_free_unpacked(&c->author->base, NULL);
				c->author = parse_author(v, vl);
			} else if (kl == 9 && !memcmp(p, "committer", 9)) {
				if (c->committer)
					protobuf_c_message_free_unpacked(&c->committer->base, NULL);
				c->committer = parse_author(v, vl);
			} else if ((kl == 6 && !memcmp(p, "gpgsig", 6)) || (kl == 13 && !memcmp(p, "gpgsig-sha256", 13))) {
				c->signature_type = signature_type(v, vl);
			} else if (kl == 4 && !memcmp(p, "tree", 4)) {
				free(c->tree_id);
				c->tree_id = xstrndup(v, vl);
			} else if (kl == 8 && !memcmp(p, "encoding", 8)) {
				free(c->encoding);
				c->encoding = xstrndup(v, vl);
			}
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	c->n_parent_ids = nparents;
	return c;
body:
	c->n_parent_ids = nparents;
	if (end > p) {
		size_t bl = (size_t)(end - p), sl;
		const char *snl = memchr(p, '\n', bl);
		sl = snl ? (size_t)(snl - p) : bl;
		while (sl && (p[sl - 1] == '\r' || p[sl - 1] == '\n'))
			sl--;
		c->subject = bin_dup(p, sl);
		c->body_size = (int64_t)bl;
		c->body = bin_dup(p, MIN(bl, (size_t)MAX_BODY));
	}
	return c;
}

/* --- quarantine --- */

int op_quarantine(struct op *op)
{
	const struct gitaly_storage *s;
	struct strbuf tmp = STRBUF_INIT, msg = STRBUF_INIT, rel = STRBUF_INIT;
	const Gitaly__Repository *r = op->repo;
	uint8_t h[20];
	size_t n;
	uint8_t *buf;
	const char *objdir = r->git_object_directory && *r->git_object_directory ? r->git_object_directory
										    : "objects";

	if (gitaly_storage(op->base.g, r->storage_name, &s, &msg) != GRPC_OK || gitaly_tmp_dir(op->base.g, s, &tmp) < 0) {
		op_fail(op, GRPC_INTERNAL, "creating object quarantine: %s", msg.len ? msg.buf : strerror(errno));
		goto fail;
	}
	gitaly_sha1(r->relative_path, strlen(r->relative_path), h);
	strbuf_addf(&tmp, "/quarantine-%02x%02x%02x%02x%02x%02x%02x%02x-XXXXXX", h[0], h[1], h[2], h[3], h[4],
		    h[5], h[6], h[7]);
	if (!mkdtemp(tmp.buf)) {
		op_fail(op, GRPC_INTERNAL, "creating object quarantine: %s", strerror(errno));
		goto fail;
	}
	strbuf_reset(&op->qdir);
	strbuf_add(&op->qdir, tmp.buf, tmp.len);
	hooks_rel_path(op->path.buf, op->qdir.buf, &rel);

	/* a copy of the repository message whose objects go to the quarantine */
	n = protobuf_c_message_get_packed_size(&r->base);
	buf = xmalloc(n ? n : 1);
	protobuf_c_message_pack(&r->base, buf);
	op->qrepo = gitaly__repository__unpack(NULL, n, buf);
	free(buf);
	if (!op->qrepo) {
		op_fail(op, GRPC_INTERNAL, "creating object quarantine: cannot copy repository");
		goto fail;
	}
	/* absent strings point at protobuf-c's shared empty string */
	if (op->qrepo->git_object_directory != protobuf_c_empty_string)
		free(op->qrepo->git_object_directory);
	op->qrepo->git_object_directory = strbuf_detach(&rel, NULL);
	{
		size_t na = r->n_git_alternate_object_directories + 1;
		char **alts = xcalloc(na, sizeof(char *));
		alts[0] = xstrdup(objdir);
		for (size_t i = 1; i < na; i++)
			alts[i] = xstrdup(r->git_alternate_object_directories[i - 1]);
		for (size_t i = 0; i < op->qrepo->n_git_alternate_object_directories; i++)
			free(op->qrepo->git_alternate_object_directories[i]);
		free(op->qrepo->git_alternate_object_directories);
		op->qrepo->git_alternate_object_directories = alts;
		op->qrepo->n_git_alternate_object_directories = na;
	}
	strbuf_release(&tmp);
	strbuf_release(&msg);
	return 0;
fail:
	strbuf_release(&tmp);
	strbuf_release(&msg);
	strbuf_release(&rel);
	return -1;
}

/* --- signatures --- */

/* Go's signature sanitiser drops newlines and angle brackets. */
static void sanitize(struct strbuf *out, const ProtobufCBinaryData *b)
{
	for (size_t i = 0; i < b->len; i++) {
		char c = (char)b->data[i];
		if (c != '\n' && c != '<' && c != '>')
			strbuf_addch(out, c);
	}
}

/* UTC offset of zone `tz` at `when`, as Go's time.LoadLocation would find it. */
static int tz_offset(const char *tz, int64_t when, int *minutes, struct strbuf *err)
{
	struct strbuf file = STRBUF_INIT;
	char *saved = NULL;
	const char *old;
	struct tm tm;
	time_t t = (time_t)when;
	int ok;

	*minutes = 0;
	if (!tz || !*tz || !strcmp(tz, "UTC"))
		return 0;
	if (tz[0] == '/' || tz[0] == '\\' || strstr(tz, "..")) {
		strbuf_addstr(err, "time: invalid location name");
		return -1;
	}
	if (strcmp(tz, "Local")) {
		const char *dir = getenv("ZONEINFO");
		strbuf_addf(&file, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", tz);
		ok = access(file.buf, R_OK) == 0;
		strbuf_release(&file);
		if (!ok) {
			strbuf_addf(err, "unknown time zone %s", tz);
			return -1;
		}
	}
	/* glibc only converts through TZ; the loop is single-threaded, so swap it briefly */
	old = getenv("TZ");
	if (old)
		saved = xstrdup(old);
	if (strcmp(tz, "Local"))
		setenv("TZ", tz, 1);
	tzset();
	ok = localtime_r(&t, &tm) != NULL;
	if (saved) {
		setenv("TZ", saved, 1);
		free(saved);
	} else {
		unsetenv("TZ");
	}
	tzset();
	if (ok)
		*minutes = (int)(tm.tm_gmtoff / 60);
	return 0;
}

int op_signature(const Gitaly__User *user, const Google__Protobuf__Timestamp *ts, struct op_signature *sig,
		 struct strbuf *err)
{
	strbuf_init(&sig->name, 0);
	strbuf_init(&sig->email, 0);
	sig->when = ts ? ts->seconds : (int64_t)time(NULL);
	sig->tz_minutes = 0;
	if (user) {
		sanitize(&sig->name, &user->name);
		sanitize(&sig->email, &user->email);
		if (tz_offset(user->timezone, sig->when, &sig->tz_minutes, err) < 0)
			return -1;
	}
	return 0;
}

void op_signature_release(struct op_signature *sig)
{
	strbuf_release(&sig->name);
	strbuf_release(&sig->email);
}

void op_signature_date(const struct op_signature *sig, struct strbuf *out)
{
	int m = sig->tz_minutes < 0 ? -sig->tz_minutes : sig->tz_minutes;
	strbuf_addf(out, "%lld %c%02d%02d", (long long)sig->when, sig->tz_minutes < 0 ? '-' : '+', m / 60, m % 60);
}

int op_quarantine_migrate(struct op *op, struct strbuf *err)
{
	struct strbuf target = STRBUF_INIT;
	const Gitaly__Repository *r = op->repo;
	int rc;
	strbuf_addf(&target, "%s/%s", op->path.buf,
		    r->git_object_directory && *r->git_object_directory ? r->git_object_directory : "objects");
	rc = gitaly_migrate_objects(op->qdir.buf, target.buf, err);
	strbuf_release(&target);
	if (rc == 0)
		strbuf_reset(&op->qdir);   /* gone: nothing left to remove */
	return rc;
}

/*
 * CommitService/CommitLanguages: bytes per language in the tree of a
 * revision (the default branch when none is given), as linguist counts
 * them (docs/technical/languages.md).
 *
 * Sizes come from one `git ls-tree -r -l -z` of the commit: no blob is
 * read, so classification is by path alone (file name, extension, the
 * vendored/documentation/generated path rules of read/languages.def);
 * linguist's content heuristics (shebangs, binary sniffing, classifier)
 * are not applied. When the tree or the repository has attributes, one
 * `git check-attr --cached` over a throw-away index of the commit's tree
 * answers the linguist-* attributes of every listed path. Upstream's
 * incremental cache file is not kept: every call recomputes.
 */
#include "read/read.h"
#include "read/ref.h"
#include "read/languages.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Listing and attribute output held by one call. */
#define LANGS_OUT_MAX MAX_TREE_SIZE

static const char *const lang_attrs[] = {
	"linguist-documentation", "linguist-detectable", "linguist-generated", "linguist-vendored",
	"linguist-language",
};
enum { A_DOC, A_DETECT, A_GEN, A_VENDOR, A_LANG, A_N };

struct ent {
	size_t path;          /* offset into paths */
	uint64_t size;
	size_t attr[A_N];     /* offsets of values into attrs.buf, or SIZE_MAX: unspecified */
};

struct tally {
	char *name;
	uint64_t bytes;
};

struct langs {
	struct ref_ctx ref;
	Gitaly__CommitLanguagesRequest *req;
	char oid[CATFILE_HEXSZ_MAX + 1];
	struct strbuf paths;   /* NUL-terminated paths */
	struct ent *ents;
	size_t nr, alloc;
	int has_attrs, failed, retried;
	size_t rev_len;
	struct strbuf attrs;   /* check-attr output */
	struct strbuf index, env, in;
	struct strvec argv;
};

static void langs_free(struct rd *rd)
{
	struct langs *x = (struct langs *)rd;
	if (x->index.len)
		unlink(x->index.buf);
	strbuf_release(&x->paths);
	strbuf_release(&x->attrs);
	strbuf_release(&x->index);
	strbuf_release(&x->env);
	strbuf_release(&x->in);
	strvec_clear(&x->argv);
	free(x->ents);
	ref_ctx_release(rd);
}

static void chomp(struct strbuf *sb)
{
	while (sb->len && sb->buf[sb->len - 1] == '\n')
		strbuf_setlen(sb, sb->len - 1);
}

/* attribute state: NULL unspecified, else "set", "unset" or a value */
static const char *attr(const struct langs *x, const struct ent *e, int a)
{
	return e->attr[a] == SIZE_MAX ? NULL : x->attrs.buf + e->attr[a];
}

static int attr_is(const struct langs *x, const struct ent *e, int a, const char *state)
{
	const char *v = attr(x, e, a);
	return v && !strcmp(v, state);
}

/* set wins, unset loses, else the path rule decides */
static int attr_or(const struct langs *x, const struct ent *e, int a, int (*rule)(const char *), const char *p)
{
	if (attr_is(x, e, a, "unset"))
		return 0;
	if (attr_is(x, e, a, "set"))
		return 1;
	return rule(p);
}

static int tally_cmp(const void *a, const void *b)
{
	const struct tally *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? 1 : -1;
	return strcmp(x->name, y->name);
}

static void answer(struct langs *x)
{
	Gitaly__CommitLanguagesResponse resp = GITALY__COMMIT_LANGUAGES_RESPONSE__INIT;
	Gitaly__CommitLanguagesResponse__Language *lv = NULL, **lp = NULL;
	struct tally *t = NULL;
	char (*colors)[8] = NULL;
	size_t nt = 0;
	uint64_t total = 0;

	t = xcalloc(x->nr ? x->nr : 1, sizeof(*t));
	for (size_t i = 0; i < x->nr; i++) {
		const struct ent *e = &x->ents[i];
		const char *p = x->paths.buf + e->path, *lang, *v;
		enum lang_type ty;
		size_t j;
		if (attr_or(x, e, A_DOC, lang_is_documentation, p) || attr_or(x, e, A_VENDOR, lang_is_vendored, p) ||
		    attr_or(x, e, A_GEN, lang_is_generated, p))
			continue;
		v = attr(x, e, A_LANG);
		lang = v ? v : lang_by_path(p, strlen(p));
		if (!lang)
			lang = "";
		/* detectable overrides the type rule: only programming and markup count otherwise */
		if (attr_is(x, e, A_DETECT, "unset"))
			continue;
		ty = lang_type(lang);
		if (!attr_is(x, e, A_DETECT, "set") && ty != LANG_PROGRAMMING && ty != LANG_MARKUP)
			continue;
		if (!*lang)
			continue;
		for (j = 0; j < nt && strcmp(t[j].name, lang); j++)
			;
		if (j == nt)
			t[nt++].name = (char *)lang;
		t[j].bytes += e->size;
		total += e->size;
	}
	if (nt && !total) {
		rd_finish(&x->ref.rd, GRPC_INTERNAL, "linguist stats added up to zero");
		goto out;
	}
	qsort(t, nt, sizeof(*t), tally_cmp);
	lv = xcalloc(nt ? nt : 1, sizeof(*lv));
	lp = xcalloc(nt ? nt : 1, sizeof(*lp));
	colors = xcalloc(nt ? nt : 1, sizeof(*colors));
	for (size_t i = 0; i < nt; i++) {
		gitaly__commit_languages_response__language__init(&lv[i]);
		lv[i].name = t[i].name;
		/* float32(100*count) / float32(total), as upstream */
		lv[i].share = (float)(100 * t[i].bytes) / (float)total;
		lang_color(t[i].name, colors[i]);
		lv[i].color = colors[i];
		lv[i].bytes = t[i].bytes;
		lp[i] = &lv[i];
	}
	resp.languages = lp;
	resp.n_languages = nt;
	rd_send(&x->ref.rd, &resp);
	rd_ok(&x->ref.rd);
out:
	free(t);
	free(lv);
	free(lp);
	free(colors);
}

static void checked(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct langs *x = arg;
	const char *p, *end;
	if (!x->ref.rd.base.call)
		goto out;
	if (status != 0) {
		chomp(err);
		rd_finish(&x->ref.rd, GRPC_INTERNAL, "language stats: check attr: %s",
			  status == -E2BIG ? "output too large" : err->buf);
		goto out;
	}
	{
		struct strbuf tmp = x->attrs;
		x->attrs = *out;
		*out = tmp;
	}
	p = x->attrs.buf;
	end = p + x->attrs.len;
	/* "<path> NUL <attribute> NUL <value> NUL", every attribute of every path in order */
	for (size_t i = 0; i < x->nr; i++) {
		for (int a = 0; a < A_N; a++) {
			const char *w[3];
			for (int k = 0; k < 3; k++) {
				const char *z = p < end ? memchr(p, '\0', (size_t)(end - p)) : NULL;
				if (!z) {
					rd_finish(&x->ref.rd, GRPC_INTERNAL, "language stats: check attr: short output");
					goto out;
				}
				w[k] = p;
				p = z + 1;
			}
			if (strcmp(w[0], x->paths.buf + x->ents[i].path) || strcmp(w[1], lang_attrs[a])) {
				rd_finish(&x->ref.rd, GRPC_INTERNAL, "language stats: check attr: unexpected path %s", w[0]);
				goto out;
			}
			if (strcmp(w[2], "unspecified"))
				x->ents[i].attr[a] = (size_t)(w[2] - x->attrs.buf);
		}
	}
	answer(x);
out:
	gitaly_call_drop(&x->ref.rd.base);
}

static void tree_read(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	struct langs *x = (struct langs *)rd;
	struct strbuf msg = STRBUF_INIT;
	const char *env[2];
	struct git_call gc;
	(void)out;
	if (status != 0) {
		chomp(err);
		rd_finish(rd, GRPC_INTERNAL, "language stats: read tree: %s", err->buf);
		return;
	}
	strvec_clear(&x->argv);
	strvec_init(&x->argv);
	strvec_push(&x->argv, "--cached");
	strvec_push(&x->argv, "--stdin");
	strvec_push(&x->argv, "-z");
	for (int a = 0; a < A_N; a++)
		strvec_push(&x->argv, lang_attrs[a]);
	strvec_push(&x->argv, "--");
	for (size_t i = 0; i < x->nr; i++) {
		const char *p = x->paths.buf + x->ents[i].path;
		strbuf_add(&x->in, p, strlen(p) + 1);
	}
	rd_git_call(rd, &gc, "check-attr");
	env[0] = x->env.buf;
	env[1] = NULL;
	gc.env = env;
	gc.flags = x->argv.v;
	gitaly_call_hold(&rd->base);
	if (gitaly_git_capture(rd->base.g, &gc, x->in.buf, x->in.len, LANGS_OUT_MAX, checked, x, NULL, &msg) < 0) {
		rd->base.holds--;
		rd_finish(rd, GRPC_INTERNAL, "%s", msg.buf);
	}
	strbuf_release(&msg);
}

/* Attributes of every path from a throw-away index of the commit's tree (as GetFileAttributes does). */
static void read_attributes(struct langs *x)
{
	struct rd *rd = &x->ref.rd;
	const struct gitaly_storage *st;
	struct strbuf msg = STRBUF_INIT;
	const char *args[2], *env[2];
	struct git_call gc;
	int fd;
	if (gitaly_storage(rd->base.g, x->req->repository->storage_name, &st, &msg) != GRPC_OK ||
	    gitaly_tmp_dir(rd->base.g, st, &x->index) < 0) {
		rd_finish(rd, GRPC_INTERNAL, "temporary directory: %s", msg.len ? msg.buf : "cannot create");
		strbuf_reset(&x->index);
		goto out;
	}
	strbuf_addstr(&x->index, "/languages-index-XXXXXX");
	if ((fd = mkstemp(x->index.buf)) < 0) {
		rd_finish(rd, GRPC_INTERNAL, "temporary index: cannot create");
		strbuf_reset(&x->index);
		goto out;
	}
	close(fd);
	unlink(x->index.buf);
	strbuf_addf(&x->env, "GIT_INDEX_FILE=%s", x->index.buf);
	args[0] = x->oid;
	args[1] = NULL;
	rd_git_call(rd, &gc, "read-tree");
	env[0] = x->env.buf;
	env[1] = NULL;
	gc.env = env;
	gc.args = args;
	rd_capture(rd, &gc, 4096, tree_read);
out:
	strbuf_release(&msg);
}

/* "<mode> SP <type> SP <oid> SP+ <size> TAB <path>" */
static void tree_line(struct rd *rd, char *line, size_t len)
{
	struct langs *x = (struct langs *)rd;
	char *tab = memchr(line, '\t', len), *sp, *end;
	const char *path, *base;
	unsigned long long size;
	struct ent *e;
	if (x->failed)
		return;
	if (!tab || len < 12) {
		x->failed = 1;
		rd_finish(rd, GRPC_INTERNAL, "language stats: invalid ls-tree line");
		return;
	}
	if (memcmp(line + 7, "blob ", 5) && memcmp(line + 6, "blob ", 5))
		return;   /* submodules (commit) entries have no size */
	*tab = '\0';
	sp = memrchr(line, ' ', (size_t)(tab - line));
	size = sp ? strtoull(sp + 1, &end, 10) : 0;
	if (!sp || end != tab) {
		x->failed = 1;
		rd_finish(rd, GRPC_INTERNAL, "language stats: invalid ls-tree line");
		return;
	}
	path = tab + 1;
	if (x->paths.len + (len - (size_t)(path - line)) > LANGS_OUT_MAX) {
		x->failed = 1;
		rd_finish(rd, GRPC_RESOURCE_EXHAUSTED, "language stats: tree too large");
		rd_lines_stop(rd);
		return;
	}
	base = strrchr(path, '/');
	if (!strcmp(base ? base + 1 : path, ".gitattributes"))
		x->has_attrs = 1;
	if (x->nr == x->alloc) {
		x->alloc = x->alloc ? 2 * x->alloc : 256;
		x->ents = xrealloc(x->ents, x->alloc * sizeof(*x->ents));
	}
	e = &x->ents[x->nr++];
	e->path = x->paths.len;
	e->size = size;
	for (int a = 0; a < A_N; a++)
		e->attr[a] = SIZE_MAX;
	strbuf_add(&x->paths, path, len - (size_t)(path - line));
	strbuf_addch(&x->paths, '\0');
}

static void tree_end(struct rd *rd, int status, const struct strbuf *err)
{
	struct langs *x = (struct langs *)rd;
	struct strbuf sb = STRBUF_INIT;
	if (!rd->base.call || x->failed)
		return;
	if (status != 0) {
		strbuf_addstr(&sb, err->buf);
		chomp(&sb);
		rd_finish(rd, GRPC_INTERNAL, "language stats: ls-tree: %s", sb.buf);
		strbuf_release(&sb);
		return;
	}
	strbuf_addf(&sb, "%s/info/attributes", rd->path.buf);
	if (!x->has_attrs && access(sb.buf, F_OK) == 0)
		x->has_attrs = 1;
	strbuf_release(&sb);
	if (x->has_attrs && x->nr)
		read_attributes(x);
	else
		answer(x);
}

static void rev_parse(struct langs *x, const char *fmt, const char *rev, size_t len);

static void resolved(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	struct langs *x = (struct langs *)rd;
	static const char *const flags[] = { "-r", "-l", "-z", NULL };
	struct strbuf sb = STRBUF_INIT;
	const char *args[2];
	struct git_call gc;
	char *nl;
	if (status != 0) {
		/* upstream: "looking up revision: exit status N: <first line of stderr>" */
		gitaly_describe_status(&sb, status);
		nl = memchr(err->buf, '\n', err->len);
		rd_finish(rd, GRPC_INTERNAL, "looking up revision: %s: %.*s", sb.buf,
			  (int)(nl ? (size_t)(nl - err->buf) : err->len), err->buf);
		strbuf_release(&sb);
		return;
	}
	/* a name both a branch and something else: the branch wins, as upstream */
	if (!x->retried && x->rev_len) {
		const char *rev = x->argv.v[x->argv.nr - 1];
		strbuf_addf(&sb, "warning: refname '%s' is ambiguous.\n", rev);
		if (err->len >= sb.len && !memcmp(err->buf + err->len - sb.len, sb.buf, sb.len)) {
			x->retried = 1;
			strbuf_reset(&sb);
			strbuf_addstr(&sb, rev);   /* argv may move while it grows */
			rev_parse(x, "refs/heads/%.*s", sb.buf, sb.len);
			strbuf_release(&sb);
			return;
		}
		strbuf_release(&sb);
	}
	chomp(out);
	if (!out->len || out->len > CATFILE_HEXSZ_MAX || strchr(out->buf, '\n')) {
		rd_finish(rd, GRPC_INTERNAL, "looking up revision: unexpected rev-parse output");
		return;
	}
	memcpy(x->oid, out->buf, out->len + 1);
	args[0] = x->oid;
	args[1] = NULL;
	rd_git_call(rd, &gc, "ls-tree");
	gc.flags = flags;
	gc.args = args;
	rd_lines_start(rd, &gc, '\0', tree_line, tree_end);
}

static void rev_parse(struct langs *x, const char *fmt, const char *rev, size_t len)
{
	const char *args[2];
	struct git_call gc;
	strvec_pushf(&x->argv, fmt, (int)len, rev);
	args[0] = x->argv.v[x->argv.nr - 1];
	args[1] = NULL;
	rd_git_call(&x->ref.rd, &gc, "rev-parse");
	gc.args = args;
	rd_capture(&x->ref.rd, &gc, 4096, resolved);
}

static void resolve(struct ref_ctx *r, const char *rev, size_t len)
{
	struct langs *x = (struct langs *)r;
	x->rev_len = len;
	rev_parse(x, "%.*s", rev, len);
}

static void commit_languages(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__CommitLanguagesRequest *req =
		msg_unpack(call, &gitaly__commit_languages_request__descriptor, buf, len);
	struct strbuf msg = STRBUF_INIT;
	struct langs *x;
	if (!req)
		return;
	x = (struct langs *)ref_start_size(data, call, sizeof(*x), req, req->repository, REF_KIND_OTHER);
	if (!x)
		return;
	x->req = req;
	strbuf_init(&x->paths, 0);
	strbuf_init(&x->attrs, 0);
	strbuf_init(&x->index, 0);
	strbuf_init(&x->env, 0);
	strbuf_init(&x->in, 0);
	strvec_init(&x->argv);
	x->ref.rd.on_free = langs_free;
	if (!req->revision.len)
		ref_default_branch(&x->ref, 0, resolve);
	else if (gitaly_check_revision((const char *)req->revision.data, req->revision.len, &msg) < 0)
		rd_finish(&x->ref.rd, GRPC_INVALID_ARGUMENT, "%s", msg.buf);
	else
		resolve(&x->ref, (const char *)req->revision.data, req->revision.len);
	strbuf_release(&msg);
}

void gitaly_register_commit_languages(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.CommitService/CommitLanguages", commit_languages, g);
}

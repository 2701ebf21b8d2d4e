/* Raw commit, tag and tree objects into Gitaly messages, field by field as upstream fills them
 * (docs/technical/gitaly-node.md, "Commits and tags"). */
#include "read/read.h"
#include "base/util.h"
#include "google/protobuf/timestamp.pb-c.h"

#include <stdlib.h>
#include <string.h>

/* Seconds that do not parse, are negative or exceed 2^53 become Go's maximum time. */
#define MAX_COMMIT_DATE (1LL << 53)
#define FALLBACK_DATE 9223371974719179007LL
#define MAX_TRAILERS 64
#define MAX_TRAILER_KEY 128
#define MAX_TRAILER_VALUE 512

static ProtobufCBinaryData bin_dup(const char *p, size_t len)
{
	ProtobufCBinaryData b;
	b.len = len;
	b.data = xmalloc(len ? len : 1);
	if (len)
		memcpy(b.data, p, len);
	return b;
}

static void bin_free(ProtobufCBinaryData *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
}

static char *str_dup_n(const char *p, size_t len)
{
	return xstrndup(p, len);
}

static int is_go_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* strconv.ParseInt(s, 10, 64) */
static int parse_int64(const char *s, size_t len, long long *out)
{
	unsigned long long v = 0, lim;
	int neg = 0;
	size_t i = 0;
	if (len && (s[0] == '+' || s[0] == '-')) {
		neg = s[0] == '-';
		i = 1;
	}
	if (i == len)
		return -1;
	lim = neg ? (unsigned long long)9223372036854775807LL + 1 : 9223372036854775807ULL;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (lim - (unsigned)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = neg ? (long long)(0 - v) : (long long)v;
	return 0;
}

Gitaly__CommitAuthor *gitaly_author_parse(const char *v, size_t len)
{
	Gitaly__CommitAuthor *a = xcalloc(1, sizeof(*a));
	const char *end = v + len, *lt, *gt, *f[3];
	size_t flen[3], nf = 0;
	long long sec;

	gitaly__commit_author__init(a);
	lt = memchr(v, '<', len);
	{
		/* the name loses one trailing space */
		const char *ne = lt ? lt : end;
		if (ne > v && ne[-1] == ' ')
			ne--;
		a->name = bin_dup(v, (size_t)(ne - v));
	}
	if (!lt)
		return a;
	gt = memchr(lt + 1, '>', (size_t)(end - lt - 1));
	if (!gt)
		return a;
	a->email = bin_dup(lt + 1, (size_t)(gt - lt - 1));
	/* strings.Fields of the rest: we only need to know about the first three */
	for (const char *p = gt + 1; p < end && nf < 3;) {
		const char *s;
		while (p < end && is_go_space(*p))
			p++;
		if (p == end)
			break;
		s = p;
		while (p < end && !is_go_space(*p))
			p++;
		f[nf] = s;
		flen[nf++] = (size_t)(p - s);
	}
	if (!nf)
		return a;
	if (parse_int64(f[0], flen[0], &sec) < 0 || sec > MAX_COMMIT_DATE || sec < 0)
		sec = FALLBACK_DATE;
	a->date = xcalloc(1, sizeof(*a->date));
	google__protobuf__timestamp__init(a->date);
	a->date->seconds = sec;
	if (nf == 2)
		a->timezone = bin_dup(f[1], flen[1]);
	return a;
}

static void author_free(Gitaly__CommitAuthor *a)
{
	if (!a)
		return;
	bin_free(&a->name);
	bin_free(&a->email);
	bin_free(&a->timezone);
	free(a->date);
	free(a);
}

static Gitaly__SignatureType signature_type(const char *v, size_t len)
{
	static const struct { const char *s; Gitaly__SignatureType t; } sigs[] = {
		{ "-----BEGIN SIGNED MESSAGE-----", GITALY__SIGNATURE_TYPE__X509 },
		{ "-----BEGIN PGP MESSAGE-----", GITALY__SIGNATURE_TYPE__PGP },
		{ "-----BEGIN PGP SIGNATURE-----", GITALY__SIGNATURE_TYPE__PGP },
		{ "-----BEGIN SSH SIGNATURE-----", GITALY__SIGNATURE_TYPE__SSH },
	};
	if (len && v[len - 1] == '\n')
		len--;
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		if (strlen(sigs[i].s) == len && !memcmp(sigs[i].s, v, len))
			return sigs[i].t;
	return GITALY__SIGNATURE_TYPE__NONE;
}

/* One "key value" header line of a raw commit or tag. */
struct header {
	const char *key, *val;
	size_t klen, vlen;
};

/*
 * The next header line in [*p, end): 1 with `h` set, or 0 at the end of the
 * headers, that is the blank line (*body then points past it) or the end of
 * the data. Lines with no key (continuations of multi-line headers such as
 * signatures, lines without a space) are passed over.
 */
static int next_header(const char **p, const char *end, struct header *h, const char **body)
{
	while (*p < end) {
		const char *line = *p, *nl = memchr(line, '\n', (size_t)(end - line));
		const char *le = nl ? nl : end, *sp;
		size_t n = (size_t)(le - line);

		*p = nl ? nl + 1 : end;
		if (n == 0 && nl) {
			*body = *p;
			return 0;
		}
		sp = n ? memchr(line, ' ', n) : NULL;
		if (sp && sp > line) {
			h->key = line;
			h->klen = (size_t)(sp - line);
			h->val = sp + 1;
			h->vlen = (size_t)(le - h->val);
			return 1;
		}
	}
	return 0;
}

static int key_is(const struct header *h, const char *word)
{
	return strlen(word) == h->klen && !memcmp(h->key, word, h->klen);
}

Gitaly__GitCommit *gitaly_commit_parse(const char *oid, const char *data, size_t len)
{
	Gitaly__GitCommit *c = xcalloc(1, sizeof(*c));
	const char *p = data, *end = data + len, *body = NULL;
	size_t alloc_parents = 0;
	struct header h;

	gitaly__git_commit__init(c);
	c->id = xstrdup(oid);
	c->tree_id = xstrdup("");
	c->encoding = xstrdup("");
	while (next_header(&p, end, &h, &body)) {
		const char *v = h.val;
		size_t vlen = h.vlen;
		if (key_is(&h, "parent")) {
			ALLOC_GROW(c->parent_ids, c->n_parent_ids + 1, alloc_parents);
			c->parent_ids[c->n_parent_ids++] = str_dup_n(v, vlen);
		} else if (key_is(&h, "author")) {
			author_free(c->author);
			c->author = gitaly_author_parse(v, vlen);
		} else if (key_is(&h, "committer")) {
			author_free(c->committer);
			c->committer = gitaly_author_parse(v, vlen);
		} else if (key_is(&h, "gpgsig") || key_is(&h, "gpgsig-sha256")) {
			c->signature_type = signature_type(v, vlen);
		} else if (key_is(&h, "tree")) {
			free(c->tree_id);
			c->tree_id = str_dup_n(v, vlen);
		} else if (key_is(&h, "encoding")) {
			free(c->encoding);
			c->encoding = str_dup_n(v, vlen);
		}
	}
	if (body && body < end) {
		size_t blen = (size_t)(end - body);
		const char *snl = memchr(body, '\n', blen);
		size_t slen = snl ? (size_t)(snl - body) : blen;
		while (slen && (body[slen - 1] == '\r' || body[slen - 1] == '\n'))
			slen--;
		c->subject = bin_dup(body, slen);
		c->body_size = (int64_t)blen;
		c->body = bin_dup(body, MIN(blen, (size_t)MAX_MESSAGE_SIZE));
	}
	return c;
}

void gitaly_commit_set_trailers(Gitaly__GitCommit *c, const char *out, size_t len)
{
	const char *nl = memchr(out, '\n', len);
	size_t pos = 0, max, alloc = 0;

	/* one line of output (bufio.Scanner drops a trailing \r) */
	if (nl)
		len = (size_t)(nl - out);
	if (len && out[len - 1] == '\r')
		len--;
	max = len;
	while (pos < max && c->n_trailers < MAX_TRAILERS) {
		const char *seg = out + pos, *nul = memchr(seg, '\0', max - pos), *colon;
		size_t end = nul ? (size_t)(nul - out) : max;
		colon = memchr(seg, ':', end - pos);
		if (colon && colon > seg) {
			const char *k = seg, *v = colon + 1, *ve = out + end;
			size_t klen = (size_t)(colon - seg);
			Gitaly__CommitTrailer *t;
			while (v < ve && is_go_space(*v))
				v++;
			while (ve > v && is_go_space(ve[-1]))
				ve--;
			if (klen > MAX_TRAILER_KEY || (size_t)(ve - v) > MAX_TRAILER_VALUE)
				break;
			t = xcalloc(1, sizeof(*t));
			gitaly__commit_trailer__init(t);
			t->key = bin_dup(k, klen);
			t->value = bin_dup(v, (size_t)(ve - v));
			ALLOC_GROW(c->trailers, c->n_trailers + 1, alloc);
			c->trailers[c->n_trailers++] = t;
		}
		pos = end + 1;
	}
}

void gitaly_commit_free(Gitaly__GitCommit *c)
{
	if (!c)
		return;
	free(c->id);
	bin_free(&c->subject);
	bin_free(&c->body);
	author_free(c->author);
	author_free(c->committer);
	for (size_t i = 0; i < c->n_parent_ids; i++)
		free(c->parent_ids[i]);
	free(c->parent_ids);
	free(c->tree_id);
	for (size_t i = 0; i < c->n_trailers; i++) {
		bin_free(&c->trailers[i]->key);
		bin_free(&c->trailers[i]->value);
		free(c->trailers[i]);
	}
	free(c->trailers);
	/* set by FindCommits (read/commit_history.c) */
	for (size_t i = 0; i < c->n_referenced_by; i++)
		bin_free(&c->referenced_by[i]);
	free(c->referenced_by);
	free(c->short_stats);
	free(c->encoding);
	free(c);
}

/* --- tags --- */

Gitaly__Tag *gitaly_tag_parse(const char *oid, const char *data, size_t len, const char *name,
			      size_t name_len, struct gitaly_tagged *tagged)
{
	Gitaly__Tag *t = xcalloc(1, sizeof(*t));
	const char *p = data, *end = data + len, *msg = NULL;
	int have_name = name && name_len;
	struct header h;

	gitaly__tag__init(t);
	memset(tagged, 0, sizeof(*tagged));
	t->id = xstrdup(oid);
	if (have_name)
		t->name = bin_dup(name, name_len);
	while (next_header(&p, end, &h, &msg)) {
		const char *v = h.val;
		size_t vlen = h.vlen;
		if (key_is(&h, "object")) {
			size_t k = MIN(vlen, sizeof(tagged->oid) - 1);
			memcpy(tagged->oid, v, k);
			tagged->oid[k] = '\0';
		} else if (key_is(&h, "type")) {
			size_t k = MIN(vlen, sizeof(tagged->type) - 1);
			memcpy(tagged->type, v, k);
			tagged->type[k] = '\0';
		} else if (key_is(&h, "tag")) {
			if (!t->name.len) {
				bin_free(&t->name);
				t->name = bin_dup(v, vlen);
			}
		} else if (key_is(&h, "tagger")) {
			author_free(t->tagger);
			t->tagger = gitaly_author_parse(v, vlen);
		}
	}
	if (msg) {
		size_t mlen = (size_t)(end - msg);
		t->message = bin_dup(msg, mlen);
		t->message_size = (int64_t)mlen;
		/*
		 * The signature starts at the first "-----BEGIN" unless that is
		 * the very start; its first line (final newline aside) names it.
		 */
		for (size_t i = 0; i + 10 <= mlen; i++) {
			if (!memcmp(msg + i, "-----BEGIN", 10)) {
				const char *s = msg + i, *snl;
				size_t slen = mlen - i;
				if (!i)
					break;
				if (s[slen - 1] == '\n')
					slen--;
				snl = memchr(s, '\n', slen);
				if (snl && snl > s)
					t->signature_type = signature_type(s, (size_t)(snl - s));
				break;
			}
		}
	}
	return t;
}

void gitaly_tag_trim_message(Gitaly__Tag *t)
{
	while (t->message.len && t->message.data[t->message.len - 1] == '\n')
		t->message.len--;
	t->message_size = (int64_t)t->message.len;
	if (t->message.len > MAX_MESSAGE_SIZE)
		t->message.len = MAX_MESSAGE_SIZE;
}

void gitaly_tag_free(Gitaly__Tag *t)
{
	if (!t)
		return;
	bin_free(&t->name);
	free(t->id);
	gitaly_commit_free(t->target_commit);
	bin_free(&t->message);
	author_free(t->tagger);
	free(t);
}

/* --- Go path semantics --- */

void go_path_clean(struct strbuf *out, const char *p, size_t n)
{
	size_t r = 0, dotdot = 0, base = out->len;
	int rooted = n && p[0] == '/';

	if (!n) {
		strbuf_addch(out, '.');
		return;
	}
	if (rooted) {
		strbuf_addch(out, '/');
		r = 1;
		dotdot = 1;
	}
	while (r < n) {
		size_t w = out->len - base;
		if (p[r] == '/') {
			r++;
		} else if (p[r] == '.' && (r + 1 == n || p[r + 1] == '/')) {
			r++;
		} else if (p[r] == '.' && p[r + 1] == '.' && (r + 2 == n || p[r + 2] == '/')) {
			r += 2;
			if (w > dotdot) {
				w--;
				while (w > dotdot && out->buf[base + w] != '/')
					w--;
				strbuf_setlen(out, base + w);
			} else if (!rooted) {
				if (w > 0)
					strbuf_addch(out, '/');
				strbuf_addstr(out, "..");
				dotdot = out->len - base;
			}
		} else {
			if ((rooted && w != 1) || (!rooted && w != 0))
				strbuf_addch(out, '/');
			for (; r < n && p[r] != '/'; r++)
				strbuf_addch(out, p[r]);
		}
	}
	if (out->len == base)
		strbuf_addch(out, '.');
}

void go_path_join(struct strbuf *out, const char *a, size_t alen, const char *b, size_t blen)
{
	struct strbuf tmp = STRBUF_INIT;
	if (!alen && !blen)
		return;
	strbuf_add(&tmp, a, alen);
	if (alen && blen)
		strbuf_addch(&tmp, '/');
	strbuf_add(&tmp, b, blen);
	go_path_clean(out, tmp.buf, tmp.len);
	strbuf_release(&tmp);
}

void go_path_dir(struct strbuf *out, const char *p, size_t len)
{
	size_t i = len;
	while (i > 0 && p[i - 1] != '/')
		i--;
	go_path_clean(out, p, i);
}

/* --- trees --- */

int tree_type_from_mode(int32_t mode)
{
	switch (mode & 0xf000) {
	case 0160000: return GITALY__TREE_ENTRY__ENTRY_TYPE__COMMIT;
	case 040000: return GITALY__TREE_ENTRY__ENTRY_TYPE__TREE;
	default: return GITALY__TREE_ENTRY__ENTRY_TYPE__BLOB;
	}
}

void tree_ents_free(struct tree_ent *e, size_t nr)
{
	for (size_t i = 0; i < nr; i++)
		free(e[i].path);
	free(e);
}

int tree_parse(const char *data, size_t len, size_t oid_hexsz, const char *root, size_t root_len,
	       struct tree_ent **out, size_t *nr)
{
	static const char hex[] = "0123456789abcdef";
	const char *p = data, *end = data + len;
	struct tree_ent *e = NULL;
	size_t n = 0, alloc = 0, rawsz = oid_hexsz / 2;
	struct strbuf path = STRBUF_INIT;

	while (p < end) {
		const char *sp = memchr(p, ' ', (size_t)(end - p)), *nul;
		long long mode = 0;
		if (!sp)
			break; /* as upstream: a trailing fragment without a mode ends the listing */
		if (sp - p < 1 || sp - p > 11)
			goto bad;
		for (const char *m = p; m < sp; m++) {
			if (*m < '0' || *m > '7')
				goto bad;
			mode = mode * 8 + (*m - '0');
		}
		if (mode > 0x7fffffff)
			goto bad;
		nul = memchr(sp + 1, '\0', (size_t)(end - sp - 1));
		if (!nul || nul == sp + 1 || (size_t)(end - nul - 1) < rawsz)
			goto bad;
		ALLOC_GROW(e, n + 1, alloc);
		memset(&e[n], 0, sizeof(e[n]));
		strbuf_reset(&path);
		go_path_join(&path, root, root_len, sp + 1, (size_t)(nul - sp - 1));
		e[n].path_len = path.len;
		e[n].path = strbuf_detach(&path, NULL);
		for (size_t i = 0; i < rawsz; i++) {
			unsigned char c = (unsigned char)nul[1 + i];
			e[n].oid[2 * i] = hex[c >> 4];
			e[n].oid[2 * i + 1] = hex[c & 15];
		}
		e[n].oid[2 * rawsz] = '\0';
		e[n].mode = (int32_t)mode;
		e[n].type = tree_type_from_mode((int32_t)mode);
		n++;
		p = nul + 1 + rawsz;
	}
	strbuf_release(&path);
	*out = e;
	*nr = n;
	return 0;
bad:
	strbuf_release(&path);
	tree_ents_free(e, n);
	return -1;
}

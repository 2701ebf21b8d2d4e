/* Finding and rewriting the repository or storage of a raw protobuf request. */
#include "rpc/registry.h"

#include "base/strbuf.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

/* Protobuf wire types. */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

#define FIELD_NUMBER_MAX ((1u << 29) - 1)
/* Nesting of (deprecated) groups we skip over; real requests have none. */
#define GROUP_DEPTH_MAX 32

/* gitaly.Repository fields we read and replace. */
#define REPO_STORAGE_NAME 2
#define REPO_RELATIVE_PATH 3

/* One field of an encoded message. */
struct field {
	uint32_t num;
	unsigned wt;
	const uint8_t *start;   /* first byte of the tag */
	const uint8_t *tag_end; /* first byte after the tag */
	const uint8_t *val;     /* WT_LEN only: the payload */
	size_t val_len;
	const uint8_t *end;     /* first byte after the field */
};

/* --- reading the wire format -------------------------------------------- */

static int get_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
	const uint8_t *p = *pp;
	uint64_t v = 0;

	for (unsigned i = 0; i < 10; i++) {
		uint8_t b;

		if (p == end)
			return -EINVAL;
		b = *p++;
		/* The tenth byte holds bit 63 only: anything more overflows. */
		if (i == 9 && b > 1)
			return -EINVAL;
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*pp = p;
			*out = v;
			return 0;
		}
	}
	return -EINVAL;
}

static int get_tag(const uint8_t **pp, const uint8_t *end, uint32_t *num, unsigned *wt)
{
	uint64_t key;

	if (get_varint(pp, end, &key) < 0)
		return -EINVAL;
	if ((key >> 3) == 0 || (key >> 3) > FIELD_NUMBER_MAX)
		return -EINVAL;
	*num = (uint32_t)(key >> 3);
	*wt = (unsigned)(key & 7);
	return 0;
}

/* Skip the value of a field that is not a group; sets the payload for WT_LEN. */
static int skip_value(const uint8_t **pp, const uint8_t *end, unsigned wt,
		      const uint8_t **val, size_t *val_len)
{
	uint64_t n;

	switch (wt) {
	case WT_VARINT:
		return get_varint(pp, end, &n);
	case WT_I64:
		if (end - *pp < 8)
			return -EINVAL;
		*pp += 8;
		return 0;
	case WT_I32:
		if (end - *pp < 4)
			return -EINVAL;
		*pp += 4;
		return 0;
	case WT_LEN:
		if (get_varint(pp, end, &n) < 0 || n > (uint64_t)(end - *pp))
			return -EINVAL;
		*val = *pp;
		*val_len = (size_t)n;
		*pp += n;
		return 0;
	}
	return -EINVAL;
}

/*
 * Skip a group whose start tag has been read. Iterative, so hostile nesting
 * costs a bounded stack.
 */
static int skip_group(const uint8_t **pp, const uint8_t *end, uint32_t num)
{
	uint32_t open[GROUP_DEPTH_MAX];
	unsigned depth = 0;

	open[depth++] = num;
	while (depth) {
		const uint8_t *val;
		size_t val_len;
		unsigned wt;

		if (get_tag(pp, end, &num, &wt) < 0)
			return -EINVAL;
		if (wt == WT_SGROUP) {
			if (depth == GROUP_DEPTH_MAX)
				return -EINVAL;
			open[depth++] = num;
		} else if (wt == WT_EGROUP) {
			if (open[--depth] != num)
				return -EINVAL;
		} else if (skip_value(pp, end, wt, &val, &val_len) < 0) {
			return -EINVAL;
		}
	}
	return 0;
}

/* Read the field at *pp: 1 with `f` filled, 0 at the end, -EINVAL if malformed. */
static int next_field(const uint8_t **pp, const uint8_t *end, struct field *f)
{
	const uint8_t *p = *pp;
	int ret;

	if (p == end)
		return 0;
	f->start = p;
	if (get_tag(&p, end, &f->num, &f->wt) < 0)
		return -EINVAL;
	f->tag_end = p;
	f->val = NULL;
	f->val_len = 0;
	if (f->wt == WT_SGROUP)
		ret = skip_group(&p, end, f->num);
	else
		ret = skip_value(&p, end, f->wt, &f->val, &f->val_len);
	if (ret < 0)
		return ret;
	f->end = p;
	*pp = p;
	return 1;
}

/* Strict UTF-8, as protobuf requires of proto3 strings. */
static bool utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		uint32_t cp, min;
		size_t need;

		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			need = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			need = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			need = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i - 1 < need)
			return false;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

static bool in_oneof(const struct rpc_step *s, uint32_t num)
{
	for (uint32_t i = 0; i < s->oneof_nr; i++)
		if (s->oneof[i] == num)
			return true;
	return false;
}

/* --- finding ------------------------------------------------------------ */

/*
 * The state of one path while its message is read front to back. Protobuf
 * merges repeated occurrences of a singular message field, lets the last
 * scalar win, and clears a oneof member when a sibling arrives. Reading in
 * wire order and forgetting what lies below a step when a sibling of that
 * step shows up gives exactly the merged view, without storing occurrences.
 */
struct walk {
	const struct rpc_path *path;
	bool is_repo;                 /* the path ends at a Repository, not a string */
	bool seen[RPC_PATH_MAX];      /* step i is set in the merged message */
	const uint8_t *last;          /* last Repository occurrence, or string value */
	size_t last_len;
	const uint8_t *storage, *relpath;
	size_t storage_len, relpath_len;
};

static void walk_reset(struct walk *w, unsigned depth)
{
	for (unsigned i = depth; i < RPC_PATH_MAX; i++)
		w->seen[i] = false;
	w->last = w->storage = w->relpath = NULL;
	w->last_len = w->storage_len = w->relpath_len = 0;
}

static int walk_repo(struct walk *w, const struct field *repo)
{
	const uint8_t *p = repo->val, *end = repo->val + repo->val_len;
	struct field f;
	int ret;

	w->last = repo->val;
	w->last_len = repo->val_len;
	while ((ret = next_field(&p, end, &f)) > 0) {
		if (f.wt != WT_LEN ||
		    (f.num != REPO_STORAGE_NAME && f.num != REPO_RELATIVE_PATH))
			continue;
		if (!utf8_valid(f.val, f.val_len))
			return -EINVAL;
		if (f.num == REPO_STORAGE_NAME) {
			w->storage = f.val;
			w->storage_len = f.val_len;
		} else {
			w->relpath = f.val;
			w->relpath_len = f.val_len;
		}
	}
	return ret;
}

static int walk_level(struct walk *w, const uint8_t *p, const uint8_t *end, unsigned depth)
{
	const struct rpc_step *s = &w->path->steps[depth];
	struct field f;
	int ret;

	while ((ret = next_field(&p, end, &f)) > 0) {
		if (f.num == s->field && f.wt == WT_LEN) {
			/*
			 * A mismatched wire type makes the field unknown to a
			 * protobuf decoder, so only WT_LEN counts.
			 */
			w->seen[depth] = true;
			if (depth + 1u < w->path->steps_nr) {
				ret = walk_level(w, f.val, f.val + f.val_len, depth + 1);
			} else if (w->is_repo) {
				ret = walk_repo(w, &f);
			} else if (!utf8_valid(f.val, f.val_len)) {
				ret = -EINVAL;
			} else {
				w->last = f.val;
				w->last_len = f.val_len;
			}
			if (ret < 0)
				return ret;
		} else if (in_oneof(s, f.num)) {
			walk_reset(w, depth);
		}
	}
	return ret;
}

static bool walk_marked(const struct walk *w)
{
	if (!w->is_repo)
		return w->last_len > 0; /* proto3 strings: empty is unset */
	return w->seen[w->path->mark_len - 1];
}

/* Walk every path of `paths`; exactly one may be set. */
static int find(const struct rpc_paths *paths, bool is_repo,
		const uint8_t *msg, size_t len, struct walk *hit)
{
	size_t found = 0;

	for (size_t i = 0; i < paths->nr; i++) {
		struct walk w = { .path = &paths->v[i], .is_repo = is_repo };
		int ret;

		if (!w.path->steps_nr || w.path->steps_nr > RPC_PATH_MAX ||
		    !w.path->mark_len || w.path->mark_len > w.path->steps_nr)
			return -EINVAL; /* cannot happen with a generated table */
		ret = walk_level(&w, msg, msg + len, 0);
		if (ret < 0)
			return ret;
		if (walk_marked(&w)) {
			found++;
			*hit = w;
		}
	}
	if (!found)
		return -ENOENT;
	if (found > 1)
		return -ENOTUNIQ;
	/* An ObjectPool without its repository. */
	if (is_repo && !hit->seen[hit->path->steps_nr - 1])
		return -ENOENT;
	return 0;
}

int rpc_find_repo(const struct rpc_method *m, enum rpc_repo_kind kind,
		  const uint8_t *msg, size_t len, struct rpc_repo *out)
{
	const struct rpc_paths *paths = kind == RPC_REPO_TARGET ? &m->target : &m->additional;
	struct walk w;
	int ret = find(paths, true, msg, len, &w);

	if (ret < 0)
		return ret;
	out->msg = w.last;
	out->len = w.last_len;
	out->storage = w.storage_len ? (const char *)w.storage : "";
	out->storage_len = w.storage_len;
	out->relative_path = w.relpath_len ? (const char *)w.relpath : "";
	out->relative_path_len = w.relpath_len;
	out->path = w.path;
	return 0;
}

int rpc_find_storage(const struct rpc_method *m, const uint8_t *msg, size_t len,
		     const char **storage, size_t *storage_len)
{
	struct walk w;
	int ret = find(&m->storage, false, msg, len, &w);

	if (ret < 0)
		return ret;
	*storage = (const char *)w.last;
	*storage_len = w.last_len;
	return 0;
}

/* --- rewriting ---------------------------------------------------------- */

/*
 * Only the last occurrence of the Repository (or storage string) carries the
 * new values; earlier occurrences lose theirs. Merging then yields the new
 * values, and the output is never more than a few bytes longer than the input
 * plus the new strings, however many occurrences a hostile request holds.
 */
struct rewrite {
	const struct rpc_path *path;
	bool is_repo;
	const uint8_t *last;    /* payload of the occurrence receiving the values */
	const char *storage;
	size_t storage_len;
	const char *relpath;
	size_t relpath_len;
};

static size_t varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static void put_varint(struct strbuf *out, uint64_t v)
{
	uint8_t buf[10];
	size_t n = 0;

	while (v >= 0x80) {
		buf[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	buf[n++] = (uint8_t)v;
	strbuf_add(out, buf, n);
}

/* A string field; empty strings are left out as a proto3 encoder would. */
static size_t put_string(struct strbuf *out, uint32_t num, const char *s, size_t len)
{
	uint64_t key = (uint64_t)num << 3 | WT_LEN;

	if (!len)
		return 0;
	if (out) {
		put_varint(out, key);
		put_varint(out, len);
		strbuf_add(out, s, len);
	}
	return varint_len(key) + varint_len(len) + len;
}

/* The body of one Repository occurrence; `out` NULL only measures. */
static int rewrite_repo(const struct rewrite *rw, const struct field *repo,
			struct strbuf *out, size_t *size)
{
	const uint8_t *p = repo->val, *end = repo->val + repo->val_len;
	struct field f;
	size_t total = 0;
	int ret;

	if (repo->val == rw->last) {
		total += put_string(out, REPO_STORAGE_NAME, rw->storage, rw->storage_len);
		total += put_string(out, REPO_RELATIVE_PATH, rw->relpath, rw->relpath_len);
	}
	while ((ret = next_field(&p, end, &f)) > 0) {
		if (f.wt == WT_LEN &&
		    (f.num == REPO_STORAGE_NAME || f.num == REPO_RELATIVE_PATH))
			continue;
		if (out)
			strbuf_add(out, f.start, (size_t)(f.end - f.start));
		total += (size_t)(f.end - f.start);
	}
	*size = total;
	return ret;
}

/* Copy the message at `depth`, rewriting along the path; `out` NULL only measures. */
static int rewrite_level(const struct rewrite *rw, const uint8_t *p, const uint8_t *end,
			 unsigned depth, struct strbuf *out, size_t *size)
{
	const struct rpc_step *s = &rw->path->steps[depth];
	bool last_step = depth + 1u == rw->path->steps_nr;
	size_t total = 0;
	struct field f;
	int ret;

	while ((ret = next_field(&p, end, &f)) > 0) {
		size_t inner;

		if (f.num != s->field || f.wt != WT_LEN) {
			if (out)
				strbuf_add(out, f.start, (size_t)(f.end - f.start));
			total += (size_t)(f.end - f.start);
			continue;
		}
		if (last_step && !rw->is_repo) {
			if (f.val == rw->last)
				total += put_string(out, s->field, rw->storage, rw->storage_len);
			continue; /* earlier occurrences are dropped */
		}
		if (last_step)
			ret = rewrite_repo(rw, &f, NULL, &inner);
		else
			ret = rewrite_level(rw, f.val, f.val + f.val_len, depth + 1, NULL, &inner);
		if (ret < 0)
			return ret;
		/* Keep the tag bytes as they were; only the length changes. */
		total += (size_t)(f.tag_end - f.start) + varint_len(inner) + inner;
		if (!out)
			continue;
		strbuf_add(out, f.start, (size_t)(f.tag_end - f.start));
		put_varint(out, inner);
		if (last_step)
			ret = rewrite_repo(rw, &f, out, &inner);
		else
			ret = rewrite_level(rw, f.val, f.val + f.val_len, depth + 1, out, &inner);
		if (ret < 0)
			return ret;
	}
	*size = total;
	return ret;
}

static int rewrite(const struct rewrite *rw, const uint8_t *msg, size_t len,
		   struct strbuf *out)
{
	size_t oldlen = out->len, size;
	int ret = rewrite_level(rw, msg, msg + len, 0, out, &size);

	if (ret < 0)
		strbuf_setlen(out, oldlen);
	return ret;
}

int rpc_rewrite_repo(const struct rpc_method *m, enum rpc_repo_kind kind,
		     const uint8_t *msg, size_t len,
		     const char *storage, size_t storage_len,
		     const char *relpath, size_t relpath_len,
		     struct strbuf *out)
{
	const struct rpc_paths *paths = kind == RPC_REPO_TARGET ? &m->target : &m->additional;
	struct rewrite rw = {
		.is_repo = true,
		.storage = storage, .storage_len = storage_len,
		.relpath = relpath, .relpath_len = relpath_len,
	};
	struct walk w;
	int ret = find(paths, true, msg, len, &w);

	if (ret < 0)
		return ret;
	rw.path = w.path;
	rw.last = w.last;
	return rewrite(&rw, msg, len, out);
}

int rpc_rewrite_storage(const struct rpc_method *m, const uint8_t *msg, size_t len,
			const char *storage, size_t storage_len, struct strbuf *out)
{
	struct rewrite rw = {
		.is_repo = false,
		.storage = storage, .storage_len = storage_len,
	};
	struct walk w;
	int ret = find(&m->storage, false, msg, len, &w);

	if (ret < 0)
		return ret;
	rw.path = w.path;
	rw.last = w.last;
	return rewrite(&rw, msg, len, out);
}

/* The TOML tree: tables with a hash index, lookups that record reads, dump, free. */
#include "toml_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "base/util.h"
#include "base/banned.h"

/*
 * Small tables (nearly all of a config) are searched linearly; past this many
 * keys an index keeps a generated or hostile file with 100k keys from making
 * the duplicate check quadratic.
 */
#define INDEX_MIN_KEYS 16

struct toml_table *toml__table_new(unsigned depth, unsigned flags)
{
	struct toml_table *t = xcalloc(1, sizeof(*t));
	t->depth = depth;
	t->flags = flags;
	return t;
}

struct toml_array *toml__array_new(unsigned depth, unsigned flags)
{
	struct toml_array *a = xcalloc(1, sizeof(*a));
	a->depth = depth;
	a->flags = flags;
	return a;
}

static uint32_t hash_key(const char *key, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 16777619u;
	}
	return h;
}

static bool key_eq(const struct toml_keyval *kv, const char *key, size_t len)
{
	return kv->key_len == len && !memcmp(kv->key, key, len);
}

/* Slots hold kv position + 1; 0 is empty. The capacity is a power of two. */
static void index_insert(struct toml_table *t, size_t pos)
{
	const struct toml_keyval *kv = &t->kv[pos];
	size_t mask = t->index_cap - 1;
	size_t i = hash_key(kv->key, kv->key_len) & mask;
	while (t->index[i])
		i = (i + 1) & mask;
	t->index[i] = (uint32_t)(pos + 1);
}

static void index_rebuild(struct toml_table *t, size_t want)
{
	size_t cap = 64;
	while (cap < want * 2)
		cap *= 2;
	free(t->index);
	t->index = xcalloc(cap, sizeof(*t->index));
	t->index_cap = cap;
	for (size_t i = 0; i < t->nr; i++)
		index_insert(t, i);
}

struct toml_keyval *toml__table_find(const struct toml_table *t, const char *key, size_t len)
{
	if (!t->index) {
		for (size_t i = 0; i < t->nr; i++)
			if (key_eq(&t->kv[i], key, len))
				return &t->kv[i];
		return NULL;
	}
	size_t mask = t->index_cap - 1;
	for (size_t i = hash_key(key, len) & mask; t->index[i]; i = (i + 1) & mask) {
		struct toml_keyval *kv = &t->kv[t->index[i] - 1];
		if (key_eq(kv, key, len))
			return kv;
	}
	return NULL;
}

struct toml_keyval *toml__table_add(struct toml_table *t, char *key, size_t len,
				     unsigned line, unsigned col)
{
	struct toml_keyval *kv;

	ALLOC_GROW(t->kv, t->nr + 1, t->alloc);
	kv = &t->kv[t->nr++];
	memset(kv, 0, sizeof(*kv));
	kv->key = key;
	kv->key_len = len;
	kv->line = line;
	kv->col = col;
	if (t->nr >= INDEX_MIN_KEYS) {
		/* The input cap keeps nr far below UINT32_MAX; the index stores uint32. */
		if (t->nr * 2 > t->index_cap)
			index_rebuild(t, t->nr);
		else
			index_insert(t, t->nr - 1);
	}
	return kv;
}

struct toml_value *toml__array_push(struct toml_array *a)
{
	struct toml_value *v;
	ALLOC_GROW(a->v, a->nr + 1, a->alloc);
	v = &a->v[a->nr++];
	memset(v, 0, sizeof(*v));
	return v;
}

static void array_free(struct toml_array *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->nr; i++)
		toml__value_release(&a->v[i]);
	free(a->v);
	free(a);
}

void toml__value_release(struct toml_value *v)
{
	switch (v->type) {
	case TOML_STRING:
	case TOML_DATETIME:
		free(v->u.str.ptr);
		break;
	case TOML_ARRAY:
		array_free(v->u.arr);
		break;
	case TOML_TABLE:
		toml_free(v->u.tab);
		break;
	default:
		break;
	}
	v->type = 0;
}

void toml_free(struct toml_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nr; i++) {
		free(t->kv[i].key);
		toml__value_release(&t->kv[i].val);
	}
	free(t->kv);
	free(t->index);
	free(t);
}

/* --- lookup ------------------------------------------------------------- */

struct toml_value *toml_getn(struct toml_table *t, const char *key, size_t len)
{
	struct toml_keyval *kv;
	if (!t)
		return NULL;
	kv = toml__table_find(t, key, len);
	if (!kv)
		return NULL;
	kv->read = true;
	return &kv->val;
}

struct toml_value *toml_get(struct toml_table *t, const char *key)
{
	return toml_getn(t, key, strlen(key));
}

struct toml_keyval *toml_table_at(struct toml_table *t, size_t i)
{
	if (i >= t->nr)
		return NULL;
	t->kv[i].read = true;
	return &t->kv[i];
}

struct toml_table *toml_array_table(struct toml_array *a, size_t i)
{
	if (i >= a->nr || a->v[i].type != TOML_TABLE)
		return NULL;
	return a->v[i].u.tab;
}

int toml_value_string(const struct toml_value *v, const char **s, size_t *len)
{
	if (v->type != TOML_STRING)
		return -EINVAL;
	if (!len && memchr(v->u.str.ptr, '\0', v->u.str.len))
		return -EINVAL;
	*s = v->u.str.ptr;
	if (len)
		*len = v->u.str.len;
	return 0;
}

int toml_value_int(const struct toml_value *v, int64_t *out)
{
	if (v->type != TOML_INTEGER)
		return -EINVAL;
	*out = v->u.i;
	return 0;
}

int toml_value_float(const struct toml_value *v, double *out)
{
	if (v->type == TOML_FLOAT)
		*out = v->u.f;
	else if (v->type == TOML_INTEGER)
		*out = (double)v->u.i;
	else
		return -EINVAL;
	return 0;
}

int toml_value_bool(const struct toml_value *v, bool *out)
{
	if (v->type != TOML_BOOL)
		return -EINVAL;
	*out = v->u.b;
	return 0;
}

int toml_get_string(struct toml_table *t, const char *key, const char **s, size_t *len)
{
	const struct toml_value *v = toml_get(t, key);
	return v ? toml_value_string(v, s, len) : -ENOENT;
}

int toml_get_int(struct toml_table *t, const char *key, int64_t *out)
{
	const struct toml_value *v = toml_get(t, key);
	return v ? toml_value_int(v, out) : -ENOENT;
}

int toml_get_float(struct toml_table *t, const char *key, double *out)
{
	const struct toml_value *v = toml_get(t, key);
	return v ? toml_value_float(v, out) : -ENOENT;
}

int toml_get_bool(struct toml_table *t, const char *key, bool *out)
{
	const struct toml_value *v = toml_get(t, key);
	return v ? toml_value_bool(v, out) : -ENOENT;
}

int toml_get_datetime(struct toml_table *t, const char *key, const char **s,
		      enum toml_datetime_kind *kind)
{
	const struct toml_value *v = toml_get(t, key);
	if (!v)
		return -ENOENT;
	if (v->type != TOML_DATETIME)
		return -EINVAL;
	*s = v->u.str.ptr;
	if (kind)
		*kind = v->datetime_kind;
	return 0;
}

int toml_get_table(struct toml_table *t, const char *key, struct toml_table **out)
{
	const struct toml_value *v = toml_get(t, key);
	if (!v)
		return -ENOENT;
	if (v->type != TOML_TABLE)
		return -EINVAL;
	*out = v->u.tab;
	return 0;
}

int toml_get_array(struct toml_table *t, const char *key, struct toml_array **out)
{
	const struct toml_value *v = toml_get(t, key);
	if (!v)
		return -ENOENT;
	if (v->type != TOML_ARRAY)
		return -EINVAL;
	*out = v->u.arr;
	return 0;
}

int toml_get_tables(struct toml_table *t, const char *key, struct toml_array **out)
{
	struct toml_array *a;
	int ret = toml_get_array(t, key, &a);
	if (ret)
		return ret;
	for (size_t i = 0; i < a->nr; i++)
		if (a->v[i].type != TOML_TABLE)
			return -EINVAL;
	*out = a;
	return 0;
}

const char *toml_type_name(enum toml_type type)
{
	switch (type) {
	case TOML_STRING: return "string";
	case TOML_INTEGER: return "integer";
	case TOML_FLOAT: return "float";
	case TOML_BOOL: return "boolean";
	case TOML_DATETIME: return "date-time";
	case TOML_ARRAY: return "array";
	case TOML_TABLE: return "table";
	}
	return "unknown";
}

/* --- paths -------------------------------------------------------------- */

static bool is_bare_key(const char *key, size_t len)
{
	if (!len)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static bool is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/*
 * Keys that need quoting are shown as 'literal' when they can be, because
 * paths usually end up inside "double quotes" in a message.
 */
void toml__path_add_key(struct strbuf *sb, const char *key, size_t len)
{
	bool literal = true;

	if (sb->len)
		strbuf_addch(sb, '.');
	if (is_bare_key(key, len)) {
		strbuf_add(sb, key, len);
		return;
	}
	for (size_t i = 0; i < len; i++)
		if (key[i] == '\'' || is_control((unsigned char)key[i]))
			literal = false;
	if (literal) {
		strbuf_addch(sb, '\'');
		strbuf_add(sb, key, len);
		strbuf_addch(sb, '\'');
		return;
	}
	strbuf_addch(sb, '"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c == '"' || c == '\\')
			strbuf_addf(sb, "\\%c", c);
		else if (is_control(c))
			strbuf_addf(sb, "\\u%04X", c);
		else
			strbuf_addch(sb, c);
	}
	strbuf_addch(sb, '"');
}

/* --- unread keys -------------------------------------------------------- */

static void unread_table(struct toml_table *t, struct strbuf *path,
			 toml_unread_fn *fn, void *data);

static void unread_value(struct toml_value *v, struct strbuf *path,
			 toml_unread_fn *fn, void *data)
{
	if (v->type == TOML_TABLE) {
		unread_table(v->u.tab, path, fn, data);
	} else if (v->type == TOML_ARRAY) {
		size_t base = path->len;
		for (size_t i = 0; i < v->u.arr->nr; i++) {
			strbuf_addf(path, "[%zu]", i);
			unread_value(&v->u.arr->v[i], path, fn, data);
			strbuf_setlen(path, base);
		}
	}
}

static void unread_table(struct toml_table *t, struct strbuf *path,
			 toml_unread_fn *fn, void *data)
{
	size_t base = path->len;
	for (size_t i = 0; i < t->nr; i++) {
		struct toml_keyval *kv = &t->kv[i];
		toml__path_add_key(path, kv->key, kv->key_len);
		if (!kv->read)
			fn(path->buf, kv->line, kv->col, data);
		else
			unread_value(&kv->val, path, fn, data);
		strbuf_setlen(path, base);
	}
}

void toml_for_each_unread(struct toml_table *t, toml_unread_fn *fn, void *data)
{
	struct strbuf path = STRBUF_INIT;
	if (t)
		unread_table(t, &path, fn, data);
	strbuf_release(&path);
}

/* --- dump --------------------------------------------------------------- */

static void dump_table(const struct toml_table *t, struct strbuf *out);

static void dump_scalar(struct strbuf *out, const char *type, const char *s, size_t len)
{
	strbuf_addf(out, "{\"type\":\"%s\",\"value\":", type);
	strbuf_add_json_string(out, s, len);
	strbuf_addch(out, '}');
}

static void dump_value(const struct toml_value *v, struct strbuf *out)
{
	static const char *const dt_names[] = {
		[TOML_OFFSET_DATETIME] = "datetime",
		[TOML_LOCAL_DATETIME] = "datetime-local",
		[TOML_LOCAL_DATE] = "date-local",
		[TOML_LOCAL_TIME] = "time-local",
	};
	char num[64];

	switch (v->type) {
	case TOML_STRING:
		dump_scalar(out, "string", v->u.str.ptr, v->u.str.len);
		break;
	case TOML_DATETIME:
		dump_scalar(out, dt_names[v->datetime_kind], v->u.str.ptr, v->u.str.len);
		break;
	case TOML_INTEGER:
		snprintf(num, sizeof(num), "%" PRId64, v->u.i);
		dump_scalar(out, "integer", num, strlen(num));
		break;
	case TOML_FLOAT:
		if (isnan(v->u.f))
			snprintf(num, sizeof(num), "nan");
		else if (isinf(v->u.f))
			snprintf(num, sizeof(num), "%sinf", v->u.f < 0 ? "-" : "+");
		else
			snprintf(num, sizeof(num), "%.17g", v->u.f);
		dump_scalar(out, "float", num, strlen(num));
		break;
	case TOML_BOOL:
		dump_scalar(out, "bool", v->u.b ? "true" : "false", v->u.b ? 4 : 5);
		break;
	case TOML_ARRAY:
		strbuf_addch(out, '[');
		for (size_t i = 0; i < v->u.arr->nr; i++) {
			if (i)
				strbuf_addch(out, ',');
			dump_value(&v->u.arr->v[i], out);
		}
		strbuf_addch(out, ']');
		break;
	case TOML_TABLE:
		dump_table(v->u.tab, out);
		break;
	}
}

static void dump_table(const struct toml_table *t, struct strbuf *out)
{
	strbuf_addch(out, '{');
	for (size_t i = 0; i < t->nr; i++) {
		if (i)
			strbuf_addch(out, ',');
		strbuf_add_json_string(out, t->kv[i].key, t->kv[i].key_len);
		strbuf_addch(out, ':');
		dump_value(&t->kv[i].val, out);
	}
	strbuf_addch(out, '}');
}

void toml_dump_json(const struct toml_table *t, struct strbuf *out)
{
	dump_table(t, out);
}

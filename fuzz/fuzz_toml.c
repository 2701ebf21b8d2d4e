/* libFuzzer target for lib/config/toml: parse any bytes, then walk and query the tree. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/strbuf.h"
#include "config/toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk_value(struct toml_value *v);

/* Every lookup path a config loader uses, on every key of the table. */
static void walk_table(struct toml_table *t)
{
	for (size_t i = 0; i < toml_table_len(t); i++) {
		struct toml_keyval *kv = &t->kv[i];
		const char *s;
		size_t len;
		int64_t n;
		double f;
		bool b;
		struct toml_table *sub;
		struct toml_array *arr;
		enum toml_datetime_kind kind;

		/* Keys may hold NUL; the NUL-terminated lookup must then miss or hit the prefix. */
		if (toml_getn(t, kv->key, kv->key_len) != &kv->val)
			__builtin_trap();
		(void)toml_get(t, kv->key);
		(void)toml_get_string(t, kv->key, &s, &len);
		(void)toml_get_string(t, kv->key, &s, NULL);
		(void)toml_get_int(t, kv->key, &n);
		(void)toml_get_float(t, kv->key, &f);
		(void)toml_get_bool(t, kv->key, &b);
		(void)toml_get_datetime(t, kv->key, &s, &kind);
		(void)toml_get_table(t, kv->key, &sub);
		(void)toml_get_array(t, kv->key, &arr);
		(void)toml_get_tables(t, kv->key, &arr);
		walk_value(&kv->val);
	}
}

static void walk_value(struct toml_value *v)
{
	if (v->type == TOML_TABLE) {
		walk_table(v->u.tab);
	} else if (v->type == TOML_ARRAY) {
		for (size_t i = 0; i < toml_array_len(v->u.arr); i++) {
			struct toml_value *e = toml_array_at(v->u.arr, i);
			const char *s;
			size_t len;
			int64_t n;
			double f;
			bool b;
			(void)toml_value_string(e, &s, &len);
			(void)toml_value_int(e, &n);
			(void)toml_value_float(e, &f);
			(void)toml_value_bool(e, &b);
			(void)toml_array_table(v->u.arr, i);
			walk_value(e);
		}
	} else if (v->type == TOML_STRING || v->type == TOML_DATETIME) {
		if (v->u.str.ptr[v->u.str.len] != '\0')
			__builtin_trap();
	}
}

static void count_unread(const char *path, unsigned line, unsigned col, void *data)
{
	size_t *n = data;
	if (!path || !line || !col)
		__builtin_trap();
	(*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf err = STRBUF_INIT, out = STRBUF_INIT;
	struct toml_table *t = NULL;
	size_t unread = 0;
	int ret;

	ret = toml_parse((const char *)data, size, "fuzz.toml", &t, &err);
	if (ret) {
		/* Exactly one message, prefixed with the file name. */
		if (t || err.len < 10 || memcmp(err.buf, "fuzz.toml:", 10) || memchr(err.buf, '\n', err.len))
			__builtin_trap();
		strbuf_release(&err);
		return 0;
	}
	if (!t || err.len)
		__builtin_trap();

	/* Listing unread keys before and after every key has been read. */
	toml_for_each_unread(t, count_unread, &unread);
	if (toml_table_len(t) && !unread)
		__builtin_trap();
	toml_dump_json(t, &out);
	walk_table(t);
	unread = 0;
	toml_for_each_unread(t, count_unread, &unread);
	if (unread)
		__builtin_trap();

	strbuf_release(&out);
	strbuf_release(&err);
	toml_free(t);
	return 0;
}

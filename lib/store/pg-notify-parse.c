/*
 * The payload of upstream's repository change notifications: a JSON array of
 * {"virtual_storage": "<name>", "relative_paths": ["<path>", ...]}
 * (docs/technical/multi-praefect.md, "The listener"). Stands alone (lib/base
 * and jansson) so that fuzz/fuzz_pg_notify.c builds it directly.
 */
#include "pg-notify.h"

#include <jansson.h>
#include <string.h>

#include "base/util.h"
#include "base/banned.h"

/* a JSON string without NUL bytes, copied; NULL otherwise */
static char *dup_string(json_t *v)
{
	const char *s;
	size_t len;
	if (!json_is_string(v))
		return NULL;
	s = json_string_value(v);
	len = json_string_length(v);
	if (memchr(s, '\0', len))
		return NULL;
	return xstrndup(s, len);
}

void pg_notify_entries_free(struct pg_notify_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(e[i].virtual_storage);
		for (size_t j = 0; j < e[i].nr_paths; j++)
			free(e[i].relative_paths[j]);
		free(e[i].relative_paths);
	}
	free(e);
}

static int parse_entry(json_t *o, size_t index, struct pg_notify_entry *e, struct strbuf *err)
{
	json_t *paths;
	if (!json_is_object(o)) {
		strbuf_addf(err, "entry %zu is not an object", index);
		return -1;
	}
	e->virtual_storage = dup_string(json_object_get(o, "virtual_storage"));
	if (!e->virtual_storage) {
		strbuf_addf(err, "entry %zu: \"virtual_storage\" is not a string", index);
		return -1;
	}
	paths = json_object_get(o, "relative_paths");
	if (!json_is_array(paths)) {
		strbuf_addf(err, "entry %zu: \"relative_paths\" is not an array", index);
		return -1;
	}
	e->relative_paths = xcalloc(json_array_size(paths) + 1, sizeof(*e->relative_paths));
	for (size_t j = 0; j < json_array_size(paths); j++) {
		char *p = dup_string(json_array_get(paths, j));
		if (!p) {
			strbuf_addf(err, "entry %zu: relative path %zu is not a string", index, j);
			return -1;
		}
		e->relative_paths[e->nr_paths++] = p;
	}
	return 0;
}

int pg_notify_parse(const char *payload, size_t len, struct pg_notify_entry **out, size_t *n, struct strbuf *err)
{
	json_error_t jerr;
	json_t *root = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &jerr);
	struct pg_notify_entry *e;
	size_t nr;

	*out = NULL;
	*n = 0;
	if (!root) {
		strbuf_addf(err, "not JSON: %s", jerr.text);
		return -1;
	}
	if (!json_is_array(root)) {
		strbuf_addstr(err, "not a JSON array");
		json_decref(root);
		return -1;
	}
	nr = json_array_size(root);
	e = xcalloc(nr + 1, sizeof(*e));
	for (size_t i = 0; i < nr; i++)
		if (parse_entry(json_array_get(root, i), i, &e[i], err) < 0) {
			pg_notify_entries_free(e, i + 1);
			json_decref(root);
			return -1;
		}
	json_decref(root);
	*out = e;
	*n = nr;
	return 0;
}

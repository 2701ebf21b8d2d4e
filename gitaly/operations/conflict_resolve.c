/* Parsing conflict resolutions and applying them to a conflicted blob (conflict_resolve.h). */
#include "operations/conflict_resolve.h"
#include "base/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static char *dup_str(json_t *v, size_t *len)
{
	const char *s = json_string_value(v);
	size_t n = s ? json_string_length(v) : 0;
	char *d = xmalloc(n + 1);
	if (n)
		memcpy(d, s, n);
	d[n] = '\0';
	if (len)
		*len = n;
	return d;
}

/* A string field, or null/absent; anything else is refused as Go's decoder refuses it. */
static int str_field(json_t *o, const char *key, char **out, size_t *len, struct strbuf *err)
{
	json_t *v = json_object_get(o, key);
	if (v && !json_is_string(v) && !json_is_null(v)) {
		strbuf_addf(err, "json: cannot unmarshal value into Go struct field Resolution.%s of type string", key);
		return -1;
	}
	*out = dup_str(v && json_is_string(v) ? v : NULL, len);
	return 0;
}

enum conflict_parse_err conflict_resolutions_parse(const char *json, size_t len, struct conflict_resolutions *out,
						   struct strbuf *err)
{
	json_error_t je;
	json_t *root = json_loadb(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	enum conflict_parse_err rc = CR_OK;
	size_t i;
	json_t *el;

	memset(out, 0, sizeof(*out));
	if (!root) {
		strbuf_addf(err, "invalid JSON: %s", je.text);
		return CR_BAD_JSON;
	}
	if (!json_is_array(root)) {
		strbuf_addstr(err, "json: cannot unmarshal value into Go value of type []map[string]interface {}");
		json_decref(root);
		return CR_BAD_JSON;
	}
	/* first the shape of every element, as upstream checks it before decoding */
	json_array_foreach(root, i, el) {
		if (!json_is_object(el) && !json_is_null(el)) {
			strbuf_addstr(err, "json: cannot unmarshal value into Go value of type map[string]interface {}");
			json_decref(root);
			return CR_BAD_JSON;
		}
	}
	json_array_foreach(root, i, el) {
		if (!json_object_get(el, "sections") && !json_object_get(el, "content")) {
			strbuf_addstr(err, "missing sections or content for a resolution");
			json_decref(root);
			return CR_NO_RESOLUTION;
		}
	}
	out->v = xcalloc(json_array_size(root) ? json_array_size(root) : 1, sizeof(*out->v));
	json_array_foreach(root, i, el) {
		struct conflict_resolution *r = &out->v[out->nr++];
		json_t *secs = json_object_get(el, "sections"), *val;
		const char *key;
		if (str_field(el, "old_path", &r->old_path, NULL, err) < 0 ||
		    str_field(el, "new_path", &r->new_path, NULL, err) < 0 ||
		    str_field(el, "content", &r->content, &r->content_len, err) < 0) {
			rc = CR_BAD_JSON;
			break;
		}
		if (secs && !json_is_object(secs) && !json_is_null(secs)) {
			strbuf_addstr(err, "json: cannot unmarshal value into Go struct field Resolution.sections of type map[string]string");
			rc = CR_BAD_JSON;
			break;
		}
		if (!json_is_object(secs))
			continue;
		r->sections = xcalloc(json_object_size(secs) ? json_object_size(secs) : 1, sizeof(*r->sections));
		json_object_foreach(secs, key, val) {
			struct conflict_section *s;
			if (!json_is_string(val) && !json_is_null(val)) {
				strbuf_addstr(err, "json: cannot unmarshal value into Go struct field Resolution.sections of type string");
				rc = CR_BAD_JSON;
				break;
			}
			s = &r->sections[r->nr_sections++];
			s->id = xstrdup(key);
			s->side = dup_str(json_is_string(val) ? val : NULL, NULL);
		}
		if (rc != CR_OK)
			break;
	}
	json_decref(root);
	if (rc != CR_OK)
		conflict_resolutions_release(out);
	return rc;
}

void conflict_resolutions_release(struct conflict_resolutions *r)
{
	for (size_t i = 0; i < r->nr; i++) {
		struct conflict_resolution *c = &r->v[i];
		free(c->old_path);
		free(c->new_path);
		free(c->content);
		for (size_t j = 0; j < c->nr_sections; j++) {
			free(c->sections[j].id);
			free(c->sections[j].side);
		}
		free(c->sections);
	}
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/* --- one blob --- */

enum section { SEC_NONE, SEC_OLD, SEC_NEW, SEC_NO_NEWLINE };

struct line {
	const char *p;
	size_t len;
	size_t old_index, new_index;
	enum section section;
};

static int is_line(const char *p, size_t n, const char *marker, const char *label)
{
	size_t m = strlen(marker), l = label ? strlen(label) : 0;
	if (n != m + (label ? 1 + l : 0) || memcmp(p, marker, m))
		return 0;
	return !label || (p[m] == ' ' && !memcmp(p + m + 1, label, l));
}

static const char *side_of(const struct conflict_resolution *r, const char *id)
{
	for (size_t i = 0; i < r->nr_sections; i++)
		if (!strcmp(r->sections[i].id, id))
			return r->sections[i].side;
	return NULL;
}

static void parse_error(struct strbuf *err, const char *path, const char *what)
{
	strbuf_addstr(err, "resolve: parse conflict for \"");
	for (const char *p = path; *p; p++) {
		if (*p == '"' || *p == '\\')
			strbuf_addch(err, '\\');
		strbuf_addch(err, *p);
	}
	strbuf_addf(err, "\": %s", what);
}

int conflict_resolve(const char *data, size_t len, const char *ours, const char *theirs, const char *path,
		     const char *path_sha1, const struct conflict_resolution *r, int append_newline,
		     struct strbuf *out, struct strbuf *err)
{
	struct line *lines = NULL;
	size_t nr = 0, alloc = 0, old_index = 1, new_index = 1;
	enum section cur = SEC_NONE;
	const char *p = data, *end = data + len;
	struct strbuf id = STRBUF_INIT;
	int rc = -1;

	if (len >= CONFLICT_FILE_LIMIT) {
		strbuf_addstr(err, "merging is not supported for file");
		return -1;
	}
	if (!len) {
		/* typically a binary file */
		parse_error(err, path, "merging is not supported for file");
		return -1;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (is_line(p, n, "<<<<<<<", ours)) {
			if (cur != SEC_NONE)
				goto unexpected;
			cur = SEC_NEW;
		} else if (is_line(p, n, "=======", NULL)) {
			if (cur != SEC_NEW)
				goto unexpected;
			cur = SEC_OLD;
		} else if (is_line(p, n, ">>>>>>>", theirs)) {
			if (cur != SEC_OLD)
				goto unexpected;
			cur = SEC_NONE;
		} else {
			struct line *l;
			int no_newline = n > 0 && p[0] == '\\';
			if (no_newline)
				cur = SEC_NO_NEWLINE;
			ALLOC_GROW(lines, nr + 1, alloc);
			l = &lines[nr++];
			l->p = p;
			l->len = n;
			l->old_index = old_index;
			l->new_index = new_index;
			l->section = cur;
			if (!no_newline) {
				if (cur != SEC_NEW)
					old_index++;
				if (cur != SEC_OLD)
					new_index++;
			}
		}
		p += n + (nl ? 1 : 0);
	}
	if (cur == SEC_OLD || cur == SEC_NEW) {
		parse_error(err, path, "missing last delimiter");
		goto out;
	}
	strbuf_reset(out);
	if (!r->nr_sections) {
		strbuf_add(out, r->content ? r->content : "", r->content_len);
		rc = 0;
		goto out;
	}
	{
		int first = 1;
		for (size_t i = 0; i < nr; i++) {
			const struct line *l = &lines[i];
			const char *side;
			if (l->section == SEC_NONE) {
				strbuf_reset(&id);
			} else {
				if (!id.len)
					strbuf_addf(&id, "%s_%zu_%zu", path_sha1, l->old_index, l->new_index);
				side = side_of(r, id.buf);
				if (!side || (strcmp(side, "head") && strcmp(side, "origin"))) {
					strbuf_addf(err, "Missing resolution for section ID: %s", id.buf);
					goto out;
				}
				/* "head" keeps our lines (before "======="), "origin" theirs */
				if (!strcmp(side, "head") ? l->section != SEC_NEW : l->section != SEC_OLD)
					continue;
			}
			if (!first)
				strbuf_addch(out, '\n');
			strbuf_add(out, l->p, l->len);
			first = 0;
		}
	}
	if (append_newline)
		strbuf_addch(out, '\n');
	rc = 0;
	goto out;
unexpected:
	parse_error(err, path, "unexpected conflict delimiter");
out:
	free(lines);
	strbuf_release(&id);
	return rc;
}

/* TOML 1.0 parser for gitaly/praefect config files: a tree of tables and values. */
#ifndef CONFIG_TOML_H
#define CONFIG_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct strbuf;

/*
 * A parsed document is a tree whose root is a `struct toml_table`. Tables keep
 * their keys in document order (the order in which each key was first
 * defined), arrays keep their elements in order, and every key remembers the
 * line and column where it was defined so that later validation errors can
 * point into the file.
 *
 * Strings are stored with their length and a terminating NUL; a TOML string
 * may contain NUL itself ("\u0000"), which is why the string getters refuse
 * such a value unless the caller asks for the length.
 *
 * Date-times are validated (RFC 3339 as TOML restricts it) and kept as the
 * text that was written, with their kind; nothing in our configs needs them
 * as numbers.
 *
 * Limits: the caller bounds the input size (toml_parse_file() takes the cap;
 * toml_parse() trusts `len`), and tables/arrays nest at most TOML_MAX_DEPTH
 * deep, counting every key of a dotted key or header, so any walk over the
 * tree is bounded too.
 */

#define TOML_MAX_DEPTH 128

enum toml_type {
	TOML_STRING = 1,
	TOML_INTEGER,
	TOML_FLOAT,
	TOML_BOOL,
	TOML_DATETIME,
	TOML_ARRAY,
	TOML_TABLE,
};

enum toml_datetime_kind {
	TOML_OFFSET_DATETIME = 1, /* 1979-05-27T07:32:00Z */
	TOML_LOCAL_DATETIME,      /* 1979-05-27T07:32:00 */
	TOML_LOCAL_DATE,          /* 1979-05-27 */
	TOML_LOCAL_TIME,          /* 07:32:00 */
};

struct toml_array;
struct toml_table;

struct toml_value {
	enum toml_type type;
	enum toml_datetime_kind datetime_kind; /* TOML_DATETIME only */
	unsigned line, col; /* where the value starts, 1-based */
	union {
		struct {
			char *ptr; /* NUL-terminated, may contain NUL */
			size_t len;
		} str; /* TOML_STRING and TOML_DATETIME */
		int64_t i;
		double f;
		bool b;
		struct toml_array *arr;
		struct toml_table *tab;
	} u;
};

/* One key of a table. `read` is set by the lookup functions below. */
struct toml_keyval {
	char *key; /* NUL-terminated, may contain NUL */
	size_t key_len;
	unsigned line, col; /* where the key was defined, 1-based */
	bool read;
	struct toml_value val;
};

/*
 * Tables and arrays may be iterated directly (`t->kv[0..t->nr)`,
 * `a->v[0..a->nr)`), read-only. The remaining fields are the parser's.
 */
struct toml_table {
	struct toml_keyval *kv;
	size_t nr, alloc;
	/* private */
	uint32_t *index; /* open-addressing hash of kv positions, or NULL */
	size_t index_cap;
	unsigned flags;
	unsigned depth;
};

struct toml_array {
	struct toml_value *v;
	size_t nr, alloc;
	/* private */
	unsigned flags;
	unsigned depth;
};

/* --- Parsing ---------------------------------------------------------- */

/*
 * Parse `len` bytes of `buf` (need not be NUL-terminated). `filename` is
 * used only in error messages. On success returns 0 and sets `*out` to a tree
 * the caller frees with toml_free(). On error returns -EINVAL, leaves `*out`
 * NULL and appends one line (no trailing newline) to `err` (if not NULL):
 *
 *	config.toml:12:5: duplicate key "socket_path"
 *
 * Line and column are 1-based; the column counts characters, not bytes.
 */
int toml_parse(const char *buf, size_t len, const char *filename,
	       struct toml_table **out, struct strbuf *err);

/*
 * Read the file at `path` (at most `max_size` bytes, else -EFBIG) and parse
 * it. Errors are as for toml_parse(), plus a negative errno when the file
 * cannot be read, with the message `cannot read "<path>": <reason>`.
 */
int toml_parse_file(const char *path, size_t max_size,
		    struct toml_table **out, struct strbuf *err);

/* Free a tree returned by the parser. NULL is fine. */
void toml_free(struct toml_table *t);

/* --- Lookup ------------------------------------------------------------- */

/*
 * Return the value of `key` in `t` (not a dotted path: "a.b" is the single
 * key `"a.b"`) and mark the key as read, or NULL if there is none.
 */
struct toml_value *toml_get(struct toml_table *t, const char *key);
struct toml_value *toml_getn(struct toml_table *t, const char *key, size_t len);

/*
 * Typed getters: return 0 and store the value, -ENOENT if the key is absent,
 * -EINVAL if it has another type. The output is left untouched unless 0 is
 * returned, so it can be pre-filled with a default:
 *
 *	int64_t port = 0;
 *	if (toml_get_int(db, "port", &port) == -EINVAL)
 *		...report "port" must be an integer...
 *
 * toml_get_string() returns -EINVAL for a string containing NUL when `len` is
 * NULL, so that a NUL-terminated reader never sees a truncated value.
 * toml_get_float() accepts integers too (a bucket list such as
 * [0.5, 1, 10] mixes both). toml_get_tables() wants an array whose every
 * element is a table, i.e. an array of tables ([[storage]]) or an array of
 * inline tables.
 */
int toml_get_string(struct toml_table *t, const char *key, const char **s, size_t *len);
int toml_get_int(struct toml_table *t, const char *key, int64_t *v);
int toml_get_float(struct toml_table *t, const char *key, double *v);
int toml_get_bool(struct toml_table *t, const char *key, bool *v);
int toml_get_datetime(struct toml_table *t, const char *key, const char **s,
		      enum toml_datetime_kind *kind);
int toml_get_table(struct toml_table *t, const char *key, struct toml_table **v);
int toml_get_array(struct toml_table *t, const char *key, struct toml_array **v);
int toml_get_tables(struct toml_table *t, const char *key, struct toml_array **v);

/* The same conversions for a value already in hand (an array element). */
int toml_value_string(const struct toml_value *v, const char **s, size_t *len);
int toml_value_int(const struct toml_value *v, int64_t *out);
int toml_value_float(const struct toml_value *v, double *out);
int toml_value_bool(const struct toml_value *v, bool *out);

/*
 * Iteration in document order. toml_table_at() marks the key as read: use it
 * for tables whose keys are data (e.g. a map of names), not for lookups.
 */
static inline size_t toml_table_len(const struct toml_table *t) { return t->nr; }
struct toml_keyval *toml_table_at(struct toml_table *t, size_t i);
static inline size_t toml_array_len(const struct toml_array *a) { return a->nr; }
static inline struct toml_value *toml_array_at(struct toml_array *a, size_t i)
{
	return i < a->nr ? &a->v[i] : NULL;
}
/* Element `i` if it is a table, else NULL. */
struct toml_table *toml_array_table(struct toml_array *a, size_t i);

/* --- Unknown keys ------------------------------------------------------- */

/*
 * Call `fn` for every key that no lookup above has read, in document order,
 * with its full path ("virtual_storage[0].node[1].primary"; keys that are not
 * bare are quoted as in TOML) and where it was defined. Keys under an unread
 * key are not visited separately. Upstream silently ignores unknown keys; we
 * list them in a debug log so that a typo in a key name can be found.
 */
typedef void toml_unread_fn(const char *path, unsigned line, unsigned col, void *data);
void toml_for_each_unread(struct toml_table *t, toml_unread_fn *fn, void *data);

/* --- Debugging ---------------------------------------------------------- */

/*
 * Append the tree as JSON in the toml-test format (every scalar is
 * {"type": ..., "value": "<text>"}), for tests and for printing a config.
 * Does not mark keys as read.
 */
void toml_dump_json(const struct toml_table *t, struct strbuf *out);

/* Name of a type for messages: "string", "integer", ... */
const char *toml_type_name(enum toml_type type);

#endif

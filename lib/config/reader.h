/*
 * Typed reads of config values with errors a person can act on:
 *   config.toml:12: "listen_addr": expected a string
 * A `struct cfg_reader` collects the first error; every getter is a no-op
 * once an error is recorded, so loaders read straight through and check once.
 * Go-style durations ("1m", "500ms", "1h30m") are parsed here too, because
 * upstream config files write timeouts that way.
 */
#ifndef CONFIG_READER_H
#define CONFIG_READER_H

#include <stdbool.h>
#include <stdint.h>
#include "base/strbuf.h"
#include "toml.h"

struct cfg_reader {
	const char *file;
	struct strbuf err;   /* empty while all is well */
};

void cfg_reader_init(struct cfg_reader *r, const char *file);
void cfg_reader_release(struct cfg_reader *r);
static inline int cfg_failed(const struct cfg_reader *r) { return r->err.len != 0; }

/* Record an error at the position of `key` in `t` (or at line 0 when absent). */
void cfg_errorf(struct cfg_reader *r, struct toml_table *t, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * Getters: a missing key leaves *out untouched and returns 0; a present key of
 * the wrong type records an error. Strings are copied (free the old value).
 */
int cfg_string(struct cfg_reader *r, struct toml_table *t, const char *key, char **out);
int cfg_bool(struct cfg_reader *r, struct toml_table *t, const char *key, bool *out);
int cfg_int(struct cfg_reader *r, struct toml_table *t, const char *key, int64_t min, int64_t max,
	    int64_t *out);
/* A duration string ("1m30s") or an integer number of nanoseconds, stored in ms. */
int cfg_duration(struct cfg_reader *r, struct toml_table *t, const char *key, uint64_t *out_ms);
/* Sub-table (NULL when absent). */
struct toml_table *cfg_table(struct cfg_reader *r, struct toml_table *t, const char *key);
/* Array of tables ([[x]]) (NULL when absent). */
struct toml_array *cfg_tables(struct cfg_reader *r, struct toml_table *t, const char *key);

/*
 * A parse or read error ("<file>:12:5: what", "<file>:12: what") as
 * upstream's `configuration validate` words it: "line 12 column 5: what"
 * ("line 12: what"); anything else is copied as it is.
 */
void cfg_error_line_column(const char *err, struct strbuf *out);

/* Parse a Go duration: "300ms", "1.5h", "2h45m", "0". Returns 0 or -EINVAL. */
int parse_go_duration(const char *s, uint64_t *out_ns);

/* A value Go's validators treat as unset: NULL, empty, or only spaces and tabs. */
int cfg_blank(const char *s);

/* Append Go's time.Duration.String() of `ns` nanoseconds: "1m0s", "1.5s", "500ms", "-2m0s". */
void format_go_duration(struct strbuf *sb, int64_t ns);

#endif

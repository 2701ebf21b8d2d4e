/* Tree operations shared by the TOML parser (toml.c) and the tree code (toml_tree.c). */
#ifndef CONFIG_TOML_INTERNAL_H
#define CONFIG_TOML_INTERNAL_H

#include "toml.h"

struct strbuf;

/* struct toml_table.flags: how a table came to exist, which decides what may extend it. */
#define TOML_TAB_IMPLICIT 1u /* a prefix of a [header]; a header or dotted key may claim it */
#define TOML_TAB_HEADER 2u   /* defined by [header] or [[header]], or the root */
#define TOML_TAB_DOTTED 4u   /* created or claimed by a dotted key; no header may define it */
#define TOML_TAB_INLINE 8u   /* { ... }: sealed once closed */

/* struct toml_array.flags */
#define TOML_ARR_STATIC 1u /* a [ ... ] value; sealed */
#define TOML_ARR_TABLES 2u /* built by [[header]]s */

struct toml_table *toml__table_new(unsigned depth, unsigned flags);
struct toml_array *toml__array_new(unsigned depth, unsigned flags);

/* Find `key` without marking it read. */
struct toml_keyval *toml__table_find(const struct toml_table *t, const char *key, size_t len);
/*
 * Append a key that is not in `t` yet; `key` (NUL-terminated, `len` bytes,
 * malloc'd) is taken over. The returned slot's value is zeroed for the caller
 * to fill in; it stays valid until the next append to `t`.
 */
struct toml_keyval *toml__table_add(struct toml_table *t, char *key, size_t len,
				     unsigned line, unsigned col);
/* Append a zeroed element to `a` and return it. */
struct toml_value *toml__array_push(struct toml_array *a);

void toml__value_release(struct toml_value *v);

/* Append one key of a path: bare if it can be, else quoted. */
void toml__path_add_key(struct strbuf *sb, const char *key, size_t len);

/* Scalars (toml_scalar.c). */

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0. */
size_t toml__utf8_len(const unsigned char *s, size_t n);
void toml__add_utf8(struct strbuf *sb, uint32_t cp);
/* Is s[0..10) a valid YYYY-MM-DD? */
bool toml__valid_date(const char *s);
/* Check a date-time token and tell its kind: 0 or -EINVAL. */
int toml__parse_datetime(const char *s, size_t n, enum toml_datetime_kind *kind);
/*
 * Integer (decimal with sign, 0x, 0o, 0b; underscores between digits) or
 * float (fraction, exponent, inf, nan) into `v`: 0, -EINVAL if malformed,
 * -ERANGE if the integer does not fit in 64 bits.
 */
int toml__parse_number(const char *s, size_t n, struct toml_value *v);

#endif

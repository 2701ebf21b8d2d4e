/*
 * strbuf: a growable byte buffer that is always NUL-terminated (git's strbuf).
 *
 * Invariants: `buf` is never NULL (an empty strbuf points at a shared empty
 * string), buf[len] == '\0', and len < alloc whenever alloc > 0. Bytes may
 * include NULs; use `len`, not strlen().
 */
#ifndef BASE_STRBUF_H
#define BASE_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct strbuf {
	size_t alloc;
	size_t len;
	char *buf;
};

extern char strbuf_slopbuf[];
#define STRBUF_INIT { 0, 0, strbuf_slopbuf }

void strbuf_init(struct strbuf *sb, size_t hint);
void strbuf_release(struct strbuf *sb);
/* Hand the buffer to the caller (who frees it); `sb` is left empty. */
char *strbuf_detach(struct strbuf *sb, size_t *len);

/* Make room for `extra` more bytes beyond len. */
void strbuf_grow(struct strbuf *sb, size_t extra);
void strbuf_setlen(struct strbuf *sb, size_t len);
static inline void strbuf_reset(struct strbuf *sb) { strbuf_setlen(sb, 0); }

void strbuf_add(struct strbuf *sb, const void *data, size_t len);
void strbuf_addstr(struct strbuf *sb, const char *s);
void strbuf_addch(struct strbuf *sb, int c);
/* The format's arguments must not point into `sb` itself. */
void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap);
/* Remove the first `n` bytes. */
void strbuf_remove_front(struct strbuf *sb, size_t n);
/* Append `s` as a JSON string literal, quotes included. */
void strbuf_add_json_string(struct strbuf *sb, const char *s, size_t len);
/* `s` in single quotes for sh (a quote inside becomes '\''), appended to `sb`. */
void strbuf_add_sh_quoted(struct strbuf *sb, const char *s);

#endif

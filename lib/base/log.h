/*
 * Structured logging: one line per event, JSON objects or logfmt-style text,
 * chosen once at start-up from the [logging] config section.
 *
 *	struct log_entry e;
 *	if (log_begin(&e, LOG_INFO, "finished unary call")) {
 *		log_str(&e, "grpc.method", "FindCommit");
 *		log_int(&e, "grpc.code", 0);
 *		log_end(&e);
 *	}
 *
 * log_begin() returns 0 (and log_end() must not be called) when the level is
 * filtered out, so building an entry costs nothing for suppressed levels.
 */
#ifndef BASE_LOG_H
#define BASE_LOG_H

#include <stdint.h>
#include <stdio.h>
#include "strbuf.h"

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_FATAL };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

/* Defaults: text, info, stderr. `out` may be NULL for stderr. */
void log_configure(enum log_format format, enum log_level level, FILE *out);
/* Parse "debug", "info", "warn"/"warning", "error", "fatal"; -1 if unknown. */
int log_level_parse(const char *s);
/* Parse "text" or "json"; -1 if unknown. */
int log_format_parse(const char *s);
enum log_format log_get_format(void);

struct log_entry {
	struct strbuf sb;
	enum log_level level;
	const char *msg;
	int json;
};

int log_begin(struct log_entry *e, enum log_level level, const char *msg);
void log_str(struct log_entry *e, const char *key, const char *value);
void log_strn(struct log_entry *e, const char *key, const char *value, size_t len);
void log_int(struct log_entry *e, const char *key, int64_t value);
void log_double(struct log_entry *e, const char *key, double value);
void log_end(struct log_entry *e);

/* One-line convenience: a message with no fields, printf-style. */
void log_msgf(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif

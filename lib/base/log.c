/* Structured log lines in JSON or text. */
#include "log.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static struct {
	enum log_format format;
	enum log_level level;
	FILE *out;
} logcfg = { LOG_FORMAT_TEXT, LOG_INFO, NULL };

static const char *level_names[] = { "debug", "info", "warning", "error", "fatal" };

void log_configure(enum log_format format, enum log_level level, FILE *out)
{
	logcfg.format = format;
	logcfg.level = level;
	logcfg.out = out;
}

enum log_format log_get_format(void)
{
	return logcfg.format;
}

int log_level_parse(const char *s)
{
	if (!strcasecmp(s, "warn"))
		return LOG_WARN;
	for (int i = 0; i <= LOG_FATAL; i++)
		if (!strcasecmp(s, level_names[i]))
			return i;
	/* upstream also accepts panic/trace; treat them as the nearest level */
	if (!strcasecmp(s, "panic"))
		return LOG_FATAL;
	if (!strcasecmp(s, "trace"))
		return LOG_DEBUG;
	return -1;
}

int log_format_parse(const char *s)
{
	if (!strcmp(s, "json"))
		return LOG_FORMAT_JSON;
	if (!strcmp(s, "text") || !*s)
		return LOG_FORMAT_TEXT;
	return -1;
}

static void add_time(struct strbuf *sb)
{
	struct timespec ts;
	struct tm tm;
	char buf[64];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	strbuf_addf(sb, "%s.%03ldZ", buf, ts.tv_nsec / 1000000);
}

/* Text values are quoted when they hold spaces, quotes or '='. */
static void add_text_value(struct strbuf *sb, const char *v, size_t len)
{
	int quote = len == 0;
	for (size_t i = 0; i < len && !quote; i++)
		if (v[i] == ' ' || v[i] == '"' || v[i] == '=' || (unsigned char)v[i] < 0x20)
			quote = 1;
	if (quote)
		strbuf_add_json_string(sb, v, len);
	else
		strbuf_add(sb, v, len);
}

int log_begin(struct log_entry *e, enum log_level level, const char *msg)
{
	if (level < logcfg.level)
		return 0;
	strbuf_init(&e->sb, 256);
	e->level = level;
	e->msg = msg;
	e->json = logcfg.format == LOG_FORMAT_JSON;
	if (e->json) {
		strbuf_addstr(&e->sb, "{\"time\":\"");
		add_time(&e->sb);
		strbuf_addf(&e->sb, "\",\"level\":\"%s\",\"msg\":", level_names[level]);
		strbuf_add_json_string(&e->sb, msg, strlen(msg));
		/* every line carries the process id, as upstream's (docs/technical/logging.md) */
		strbuf_addf(&e->sb, ",\"pid\":%ld", (long)getpid());
	} else {
		strbuf_addstr(&e->sb, "time=\"");
		add_time(&e->sb);
		strbuf_addf(&e->sb, "\" level=%s msg=", level_names[level]);
		strbuf_add_json_string(&e->sb, msg, strlen(msg));
		strbuf_addf(&e->sb, " pid=%ld", (long)getpid());
	}
	return 1;
}

void log_strn(struct log_entry *e, const char *key, const char *value, size_t len)
{
	if (e->json) {
		strbuf_addch(&e->sb, ',');
		strbuf_add_json_string(&e->sb, key, strlen(key));
		strbuf_addch(&e->sb, ':');
		strbuf_add_json_string(&e->sb, value, len);
	} else {
		strbuf_addf(&e->sb, " %s=", key);
		add_text_value(&e->sb, value, len);
	}
}

void log_str(struct log_entry *e, const char *key, const char *value)
{
	if (!value)
		value = "";
	log_strn(e, key, value, strlen(value));
}

void log_int(struct log_entry *e, const char *key, int64_t value)
{
	if (e->json) {
		strbuf_addch(&e->sb, ',');
		strbuf_add_json_string(&e->sb, key, strlen(key));
		strbuf_addf(&e->sb, ":%lld", (long long)value);
	} else {
		strbuf_addf(&e->sb, " %s=%lld", key, (long long)value);
	}
}

void log_double(struct log_entry *e, const char *key, double value)
{
	if (e->json) {
		strbuf_addch(&e->sb, ',');
		strbuf_add_json_string(&e->sb, key, strlen(key));
		strbuf_addf(&e->sb, ":%.6f", value);
	} else {
		strbuf_addf(&e->sb, " %s=%.6f", key, value);
	}
}

void log_end(struct log_entry *e)
{
	FILE *out = logcfg.out ? logcfg.out : stderr;
	if (e->json)
		strbuf_addch(&e->sb, '}');
	strbuf_addch(&e->sb, '\n');
	fwrite(e->sb.buf, 1, e->sb.len, out);
	fflush(out);
	strbuf_release(&e->sb);
}

void log_msgf(enum log_level level, const char *fmt, ...)
{
	struct log_entry e;
	struct strbuf msg = STRBUF_INIT;
	va_list ap;

	if (level < logcfg.level)
		return;
	va_start(ap, fmt);
	strbuf_vaddf(&msg, fmt, ap);
	va_end(ap);
	if (log_begin(&e, level, msg.buf))
		log_end(&e);
	strbuf_release(&msg);
}

/* Go-style flags, a subcommand table and usage text from the tables (see cli.h). */
#include "cli/cli.h"
#include "base/strbuf.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const struct cli_flag *find_flag(const struct cli_flag *flags, size_t nr, const char *name, size_t len)
{
	for (size_t i = 0; i < nr; i++) {
		if (strlen(flags[i].name) == len && !strncmp(flags[i].name, name, len))
			return &flags[i];
		if (flags[i].alias && strlen(flags[i].alias) == len && !strncmp(flags[i].alias, name, len))
			return &flags[i];
	}
	return NULL;
}

static int check_required(const struct cli_flag *flags, size_t nr, struct strbuf *err)
{
	struct strbuf missing = STRBUF_INIT;
	int many = 0;
	for (size_t i = 0; i < nr; i++) {
		if (!flags[i].required || flags[i].type != CLI_STRING || (*flags[i].str && **flags[i].str))
			continue;
		many = missing.len > 0;
		strbuf_addf(&missing, "%s%s", missing.len ? ", " : "", flags[i].name);
	}
	if (!missing.len)
		return 0;
	strbuf_addf(err, "Required flag%s \"%s\" not set", many ? "s" : "", missing.buf);
	strbuf_release(&missing);
	return CLI_EREQUIRED;
}

int cli_parse(const char *cmd, const struct cli_flag *flags, size_t nr, unsigned opts,
	      int argc, char **argv, int *next, struct strbuf *err)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *eq;
		const struct cli_flag *f;
		size_t len;

		*next = i;
		if (a[0] != '-' || !a[1]) {
			if (opts & CLI_STOP_AT_ARG)
				return 0;
			strbuf_addf(err, "%s doesn't accept positional arguments", cmd);
			return CLI_EPOSITIONAL;
		}
		a += a[1] == '-' ? 2 : 1;
		eq = strchr(a, '=');
		len = eq ? (size_t)(eq - a) : strlen(a);
		f = find_flag(flags, nr, a, len);
		if (!f && ((len == 1 && a[0] == 'h') || (len == 4 && !strncmp(a, "help", 4)))) {
			*next = i + 1;
			return CLI_EHELP;
		}
		if (!f) {
			strbuf_addf(err, "flag provided but not defined: -%.*s", (int)len, a);
			return CLI_EUNKNOWN;
		}
		if (f->type == CLI_BOOL) {
			*f->on = !eq || !strcmp(eq + 1, "true") || !strcmp(eq + 1, "1");
		} else {
			if (eq) {
				*f->str = eq + 1;
			} else if (i + 1 < argc) {
				*f->str = argv[++i];
			} else {
				strbuf_addf(err, "flag needs an argument: -%s", f->name);
				return CLI_ENEEDSARG;
			}
			if (f->on)
				*f->on = 1;
		}
		if (f->stop) {
			*next = i + 1;
			return 0;
		}
	}
	*next = argc;
	return check_required(flags, nr, err);
}

const struct cli_command *cli_command_find(const struct cli_command *cmds, size_t nr, const char *name)
{
	for (size_t i = 0; i < nr; i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

void cli_usage_line(struct strbuf *out, const char *prog, const char *synopsis)
{
	strbuf_addf(out, "usage: %s %s", prog, synopsis);
}

void cli_usage_commands(struct strbuf *out, const struct cli_command *cmds, size_t nr, int width)
{
	if (!width)
		for (size_t i = 0; i < nr; i++)
			if ((int)strlen(cmds[i].name) > width)
				width = (int)strlen(cmds[i].name);
	for (size_t i = 0; i < nr; i++)
		strbuf_addf(out, "   %-*s %s\n", width, cmds[i].name, cmds[i].help ? cmds[i].help : "");
}

static void flag_spelling(struct strbuf *sb, const struct cli_flag *f)
{
	const char *arg = f->type == CLI_STRING && f->arg ? f->arg : NULL;
	strbuf_addf(sb, "--%s%s%s, -%s%s%s", f->name, arg ? " " : "", arg ? arg : "",
		    f->alias ? f->alias : f->name, arg && !f->alias ? " " : "", arg && !f->alias ? arg : "");
}

void cli_usage_flags(struct strbuf *out, const struct cli_flag *flags, size_t nr)
{
	struct strbuf sb = STRBUF_INIT;
	int width = 0;
	for (size_t i = 0; i < nr; i++) {
		strbuf_reset(&sb);
		flag_spelling(&sb, &flags[i]);
		if ((int)sb.len > width)
			width = (int)sb.len;
	}
	for (size_t i = 0; i < nr; i++) {
		strbuf_reset(&sb);
		flag_spelling(&sb, &flags[i]);
		strbuf_addf(out, "   %-*s  %s\n", width, sb.buf, flags[i].help ? flags[i].help : "");
	}
	strbuf_release(&sb);
}

/* urfave's spelling of a subcommand flag: "--name value", "--name", "--help, -h". */
static void option_spelling(struct strbuf *sb, const struct cli_flag *f)
{
	strbuf_addf(sb, "%s%s", strlen(f->name) > 1 ? "--" : "-", f->name);
	if (f->type == CLI_STRING)
		strbuf_addf(sb, " %s", f->arg ? f->arg : "value");
	if (f->alias)
		strbuf_addf(sb, ", %s%s", strlen(f->alias) > 1 ? "--" : "-", f->alias);
}

void cli_usage_subcommand(struct strbuf *out, const char *prog, const struct cli_command *cmd,
			  const char *usage, const char *description, const struct cli_flag *flags, size_t nr)
{
	static const struct cli_flag help = { .name = "help", .alias = "h", .type = CLI_BOOL, .help = "show help" };
	struct strbuf sb = STRBUF_INIT;
	int width = 0;

	strbuf_addf(out, "NAME:\n   %s %s - %s\n\nUSAGE:\n   %s %s %s\n", prog, cmd->name,
		    cmd->help ? cmd->help : "", prog, cmd->name, usage ? usage : "[command options] [arguments...]");
	if (description && *description) {
		const char *p = description;
		strbuf_addstr(out, "\nDESCRIPTION:\n");
		while (*p) {
			const char *nl = strchr(p, '\n');
			size_t n = nl ? (size_t)(nl - p) : strlen(p);
			strbuf_addf(out, "%s%.*s\n", n ? "   " : "", (int)n, p);
			p += n + (nl != NULL);
		}
	}
	strbuf_addstr(out, "\nOPTIONS:\n");
	for (size_t i = 0; i <= nr; i++) {
		strbuf_reset(&sb);
		option_spelling(&sb, i < nr ? &flags[i] : &help);
		if ((int)sb.len > width)
			width = (int)sb.len;
	}
	for (size_t i = 0; i <= nr; i++) {
		const struct cli_flag *f = i < nr ? &flags[i] : &help;
		strbuf_reset(&sb);
		option_spelling(&sb, f);
		if (f->help && *f->help)
			strbuf_addf(out, "   %-*s  %s\n", width, sb.buf, f->help);
		else
			strbuf_addf(out, "   %s\n", sb.buf);
	}
	strbuf_release(&sb);
}

void cli_go_time(struct strbuf *sb, int64_t secs, long nanos, int utc)
{
	time_t t = (time_t)secs;
	struct tm tm;
	char date[64], zone[64];

	if (utc)
		gmtime_r(&t, &tm);
	else
		localtime_r(&t, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
	strbuf_addstr(sb, date);
	if (nanos > 0 && nanos < 1000000000L) {
		char frac[16];
		int n = snprintf(frac, sizeof(frac), ".%09ld", nanos);
		while (n > 1 && frac[n - 1] == '0')
			frac[--n] = '\0';
		strbuf_addstr(sb, frac);
	}
	if (utc)
		strbuf_addstr(sb, " +0000 UTC");
	else {
		strftime(zone, sizeof(zone), "%z %Z", &tm);
		strbuf_addf(sb, " %s", zone);
	}
}

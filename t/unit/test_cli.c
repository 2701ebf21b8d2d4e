/* Unit tests: lib/cli (Go-style flags, required flags, subcommand table, usage text). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "base/strbuf.h"
#include "cli/cli.h"

#define ARGC(v) ((int)(sizeof(v##_) / sizeof((v##_)[0])))

struct opts {
	const char *config, *vs;
	int verbose, help, vs_given;
};

static void table(struct opts *o, struct cli_flag *f)
{
	memset(o, 0, sizeof(*o));
	f[0] = (struct cli_flag){ .name = "config", .type = CLI_STRING, .str = &o->config, .arg = "FILE",
				  .help = "load configuration from FILE" };
	f[1] = (struct cli_flag){ .name = "virtual-storage", .type = CLI_STRING, .str = &o->vs, .on = &o->vs_given };
	f[2] = (struct cli_flag){ .name = "verbose", .type = CLI_BOOL, .on = &o->verbose };
	f[3] = (struct cli_flag){ .name = "help", .alias = "h", .type = CLI_BOOL, .on = &o->help, .stop = 1,
				  .help = "show help" };
}

static void test_every_go_spelling(void **state)
{
	struct opts o;
	struct cli_flag f[4];
	struct strbuf err = STRBUF_INIT;
	const char *argv_[] = { "-config", "a.toml", "--virtual-storage=default", "--verbose" };
	char **argv = (char **)argv_;
	const char *argv2_[] = { "--config=b.toml", "-verbose=false", "-virtual-storage", "" };
	char **argv2 = (char **)argv2_;
	int next;

	table(&o, f);
	assert_int_equal(cli_parse("x", f, 4, 0, ARGC(argv), argv, &next, &err), 0);
	assert_int_equal(next, 4);
	assert_string_equal(o.config, "a.toml");
	assert_string_equal(o.vs, "default");
	assert_int_equal(o.vs_given, 1);
	assert_int_equal(o.verbose, 1);

	table(&o, f);
	o.verbose = 1;
	assert_int_equal(cli_parse("x", f, 4, 0, ARGC(argv2), argv2, &next, &err), 0);
	assert_string_equal(o.config, "b.toml");
	assert_int_equal(o.verbose, 0);
	assert_string_equal(o.vs, ""); /* given, empty */
	assert_int_equal(o.vs_given, 1);
	assert_int_equal(err.len, 0);
	strbuf_release(&err);
}

static void test_errors_say_what_go_says(void **state)
{
	struct opts o;
	struct cli_flag f[4];
	struct strbuf err = STRBUF_INIT;
	const char *unknown_[] = { "-verbose", "--bogus=1" };
	char **unknown = (char **)unknown_;
	const char *needs_[] = { "-config" };
	char **needs = (char **)needs_;
	const char *positional_[] = { "-verbose", "extra" };
	char **positional = (char **)positional_;
	int next;

	table(&o, f);
	assert_int_equal(cli_parse("x", f, 4, 0, ARGC(unknown), unknown, &next, &err), CLI_EUNKNOWN);
	assert_int_equal(next, 1);
	assert_string_equal(err.buf, "flag provided but not defined: -bogus");

	strbuf_reset(&err);
	assert_int_equal(cli_parse("x", f, 4, 0, ARGC(needs), needs, &next, &err), CLI_ENEEDSARG);
	assert_string_equal(err.buf, "flag needs an argument: -config");

	strbuf_reset(&err);
	assert_int_equal(cli_parse("list-storages", f, 4, 0, ARGC(positional), positional, &next, &err),
			 CLI_EPOSITIONAL);
	assert_int_equal(next, 1);
	assert_string_equal(err.buf, "list-storages doesn't accept positional arguments");
	strbuf_release(&err);
}

static void test_stop_at_arg_and_stop_flags(void **state)
{
	struct opts o;
	struct cli_flag f[4];
	struct strbuf err = STRBUF_INIT;
	const char *argv_[] = { "-config", "c.toml", "dataloss", "-verbose" };
	char **argv = (char **)argv_;
	const char *help_[] = { "-h", "-bogus" };
	char **help = (char **)help_;
	const char *dash_[] = { "-", "x" };
	char **dash = (char **)dash_;
	int next;

	table(&o, f);
	assert_int_equal(cli_parse("x", f, 4, CLI_STOP_AT_ARG, ARGC(argv), argv, &next, &err), 0);
	assert_int_equal(next, 2); /* the subcommand and its flags are left alone */
	assert_int_equal(o.verbose, 0);

	table(&o, f);
	assert_int_equal(cli_parse("x", f, 4, 0, ARGC(help), help, &next, &err), 0);
	assert_int_equal(o.help, 1);
	assert_int_equal(next, 1); /* stopped before -bogus */

	table(&o, f);
	assert_int_equal(cli_parse("x", f, 4, CLI_STOP_AT_ARG, ARGC(dash), dash, &next, &err), 0);
	assert_int_equal(next, 0); /* "-" is an argument (stdin), not a flag */
	assert_int_equal(err.len, 0);
	strbuf_release(&err);
}

static void test_required_flags(void **state)
{
	const char *a = NULL, *b = NULL, *c = NULL;
	struct cli_flag f[] = {
		{ .name = "virtual-storage", .type = CLI_STRING, .str = &a, .required = 1 },
		{ .name = "relative-path", .type = CLI_STRING, .str = &b, .required = 1 },
		{ .name = "authoritative-storage", .type = CLI_STRING, .str = &c, .required = 1 },
	};
	struct strbuf err = STRBUF_INIT;
	const char *some_[] = { "-relative-path", "x.git", "-authoritative-storage=" };
	char **some = (char **)some_;
	const char *all_[] = { "-relative-path", "x.git", "-authoritative-storage=g1", "-virtual-storage", "default" };
	char **all = (char **)all_;
	int next;

	assert_int_equal(cli_parse("x", f, 3, 0, 0, NULL, &next, &err), CLI_EREQUIRED);
	assert_string_equal(err.buf,
			    "Required flags \"virtual-storage, relative-path, authoritative-storage\" not set");
	strbuf_reset(&err);
	assert_int_equal(cli_parse("x", f, 3, 0, ARGC(some), some, &next, &err), CLI_EREQUIRED);
	assert_string_equal(err.buf, "Required flags \"virtual-storage, authoritative-storage\" not set");
	strbuf_reset(&err);
	b = c = NULL;
	assert_int_equal(cli_parse("x", f, 3, 0, 2, all, &next, &err), CLI_EREQUIRED);
	assert_string_equal(err.buf, "Required flags \"virtual-storage, authoritative-storage\" not set");
	strbuf_reset(&err);
	assert_int_equal(cli_parse("x", f, 3, 0, 4, all + 1, &next, &err), CLI_EPOSITIONAL);
	assert_int_equal(next, 0);
	strbuf_reset(&err);
	a = b = c = NULL;
	assert_int_equal(cli_parse("x", f, 3, 0, ARGC(all), all, &next, &err), 0);
	assert_string_equal(c, "g1");
	strbuf_reset(&err);
	f[0].required = f[2].required = 0;
	b = NULL;
	assert_int_equal(cli_parse("x", f, 3, 0, 0, NULL, &next, &err), CLI_EREQUIRED);
	assert_string_equal(err.buf, "Required flag \"relative-path\" not set");
	strbuf_release(&err);
}

static int ran;
static int run_serve(int argc, char **argv, void *ctx)
{
	ran = argc + 1;
	return 0;
}

static void test_commands_and_usage(void **state)
{
	static const struct cli_command cmds[] = {
		{ "serve", run_serve, "launch the server daemon", NULL },
		{ "list-storages", NULL, "list physical storages for virtual storages", NULL },
	};
	const char *config = NULL;
	int help = 0, version = 0;
	struct cli_flag globals[] = {
		{ .name = "config", .type = CLI_STRING, .str = &config, .arg = "FILE",
		  .help = "load configuration from FILE" },
		{ .name = "help", .alias = "h", .type = CLI_BOOL, .on = &help, .help = "show help" },
		{ .name = "version", .alias = "v", .type = CLI_BOOL, .on = &version, .help = "print the version" },
	};
	struct strbuf out = STRBUF_INIT;
	const struct cli_command *c = cli_command_find(cmds, 2, "serve");

	assert_non_null(c);
	assert_int_equal(c->run(0, NULL, NULL), 0);
	assert_int_equal(ran, 1);
	assert_ptr_equal(cli_command_find(cmds, 2, "list-storages"), &cmds[1]);
	assert_null(cli_command_find(cmds, 2, "/etc/gitaly/config.toml")); /* gitaly [serve] CONFIG */

	cli_usage_commands(&out, cmds, 2, 30);
	assert_string_equal(out.buf,
			    "   serve                          launch the server daemon\n"
			    "   list-storages                  list physical storages for virtual storages\n");
	strbuf_reset(&out);
	cli_usage_commands(&out, cmds, 2, 0);
	assert_string_equal(out.buf,
			    "   serve         launch the server daemon\n"
			    "   list-storages list physical storages for virtual storages\n");
	strbuf_reset(&out);
	cli_usage_flags(&out, globals, 3);
	assert_string_equal(out.buf,
			    "   --config FILE, -config FILE  load configuration from FILE\n"
			    "   --help, -h                   show help\n"
			    "   --version, -v                print the version\n");
	strbuf_reset(&out);
	cli_usage_line(&out, "gitaly-wrapper", "forking_binary [args]");
	assert_string_equal(out.buf, "usage: gitaly-wrapper forking_binary [args]");
	strbuf_release(&out);
}

static void test_help_is_known_to_every_table(void **state)
{
	const char *vs = NULL;
	int on = 0, next;
	const struct cli_flag f[] = {
		{ .name = "virtual-storage", .type = CLI_STRING, .str = &vs, .help = "the virtual storage" },
		{ .name = "partially-unavailable", .type = CLI_BOOL, .on = &on },
	};
	const char *h_[] = { "-virtual-storage", "x", "--help", "-bogus" };
	char **h = (char **)h_;
	const char *hq_[] = { "-h=true" };
	char **hq = (char **)hq_;
	struct strbuf err = STRBUF_INIT, out = STRBUF_INIT;
	const struct cli_command cmd = { "dataloss", NULL, "identify repositories", NULL };
	(void)state;

	assert_int_equal(cli_parse("dataloss", f, 2, 0, 4, h, &next, &err), CLI_EHELP);
	assert_int_equal(next, 3);
	assert_int_equal(err.len, 0);
	assert_int_equal(cli_parse("dataloss", f, 2, 0, 1, hq, &next, &err), CLI_EHELP);
	/* a table's own -h wins */
	{
		int help = 0;
		const struct cli_flag own[] = { { .name = "h", .type = CLI_BOOL, .on = &help } };
		assert_int_equal(cli_parse("x", own, 1, 0, 1, hq, &next, &err), 0);
		assert_int_equal(help, 1);
	}

	cli_usage_subcommand(&out, "praefect", &cmd, NULL, "line one\n\nline three", f, 2);
	assert_string_equal(out.buf,
			    "NAME:\n   praefect dataloss - identify repositories\n\n"
			    "USAGE:\n   praefect dataloss [command options] [arguments...]\n\n"
			    "DESCRIPTION:\n   line one\n\n   line three\n\n"
			    "OPTIONS:\n"
			    "   --virtual-storage value  the virtual storage\n"
			    "   --partially-unavailable\n"
			    "   --help, -h               show help\n");
	strbuf_release(&out);
	strbuf_release(&err);
}

/* Go's time.Time String(): fraction without trailing zeros, none when zero; UTC or the local zone. */
static void test_go_time(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	(void)state;
	cli_go_time(&sb, 1617271460, 500000000, 1);
	assert_string_equal(sb.buf, "2021-04-01 10:04:20.5 +0000 UTC");
	strbuf_reset(&sb);
	cli_go_time(&sb, 1617271460, 0, 1);
	assert_string_equal(sb.buf, "2021-04-01 10:04:20 +0000 UTC");
	strbuf_reset(&sb);
	cli_go_time(&sb, 1617271460, 123456789, 1);
	assert_string_equal(sb.buf, "2021-04-01 10:04:20.123456789 +0000 UTC");
	strbuf_reset(&sb);
	setenv("TZ", "CET-1", 1);
	tzset();
	cli_go_time(&sb, 1704464093, 480000000, 0);
	assert_string_equal(sb.buf, "2024-01-05 15:14:53.48 +0100 CET");
	strbuf_release(&sb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_go_spelling),
		cmocka_unit_test(test_errors_say_what_go_says),
		cmocka_unit_test(test_stop_at_arg_and_stop_flags),
		cmocka_unit_test(test_required_flags),
		cmocka_unit_test(test_commands_and_usage),
		cmocka_unit_test(test_help_is_known_to_every_table),
		cmocka_unit_test(test_go_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

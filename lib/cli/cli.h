/*
 * cli: command-line parsing for our binaries, in the style of Go's flag
 * package (upstream's binaries are Go, and their users type Go-style flags):
 * `-name value`, `-name=value`, `--name value`, `--name=value`, `-name` for a
 * boolean; plus a subcommand table (git's commands[]) and usage text
 * generated from the tables.
 *
 * Conventions:
 *
 *  - A flag is spelled with one or two dashes; both mean the same. Its value
 *    is the rest after `=`, or else the next argument (string flags). A
 *    boolean given as `-name=value` is true for "true" and "1", else false.
 *  - Tables are arrays of structs with a length, read only; the parser writes
 *    through the pointers they hold (`str`, `on`) and nowhere else. Values
 *    point into argv.
 *  - Errors: negative CLI_E* codes and, in `err`, the message Go's flag
 *    package would print (lower case, the flag quoted as typed: "flag provided
 *    but not defined: -x"). The caller prints it and picks the exit code.
 *    No function here prints or exits.
 *
 * A typical binary (`prog [global flags] [command] [command flags] [args]`):
 *
 *	rc = cli_parse("prog", globals, n, CLI_STOP_AT_ARG, argc - 1, argv + 1, &next, &err);
 *	cmd = next < argc - 1 ? cli_command_find(commands, nr, argv[1 + next]) : default_cmd;
 *	cmd->run(remaining argc, argv, ctx);   // which calls cli_parse() on its own flags
 *
 * A binary whose first argument may be a command or a file (`gitaly [serve]
 * CONFIG`, `gitaly check CONFIG`) looks the word up with cli_command_find()
 * and falls back to its default command when it is not in the table.
 */
#ifndef CLI_CLI_H
#define CLI_CLI_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;

struct strbuf;

enum cli_type {
	CLI_STRING,
	CLI_BOOL,
};

struct cli_flag {
	const char *name;          /* "config": matches -config and --config */
	const char *alias;         /* a second name ("v" for "version"), or NULL */
	enum cli_type type;
	const char **str;          /* CLI_STRING: where the value goes */
	int *on;                   /* CLI_BOOL: 1/0; CLI_STRING: set to 1 when given (optional) */
	const char *arg;           /* placeholder in the usage text: "FILE" (strings) */
	const char *help;          /* one line for the usage text */
	unsigned required : 1;     /* CLI_STRING: missing or empty is an error */
	unsigned stop : 1;         /* parsing ends right after this flag (-help, -version) */
};

/* Errors, with `err` saying which argument. */
#define CLI_EUNKNOWN    -1     /* flag provided but not defined */
#define CLI_ENEEDSARG   -2     /* a string flag is last, without a value */
#define CLI_EPOSITIONAL -3     /* an argument that is not a flag, without CLI_STOP_AT_ARG */
#define CLI_EREQUIRED   -4     /* a required flag was not set (after all else parsed) */
#define CLI_EHELP       -5     /* -h, -help (any spelling) given and not in the table: show help */

/* cli_parse() options */
#define CLI_STOP_AT_ARG 0x1    /* stop at the first argument that is not a flag (or is "-") */

/*
 * Parse the flags of `cmd` (its name, for messages) in argv[0..argc).
 * Returns 0 with `*next` the index of the first argument not parsed (argc
 * when all were flags; the index after a `stop` flag); or a CLI_E* code with
 * `*next` the index of the offending argument (argc for CLI_EREQUIRED) and
 * the message appended to `err`. Without CLI_STOP_AT_ARG any argument that
 * is not a flag is an error: "<cmd> doesn't accept positional arguments".
 * Required flags are checked only when parsing ran to the end of argv:
 * `Required flag "a" not set`, `Required flags "a, b" not set`.
 * A table without its own "help"/"h" flag still knows them, as every urfave
 * command does: CLI_EHELP (nothing in `err`) tells the caller to print the
 * command's help and exit 0.
 */
int cli_parse(const char *cmd, const struct cli_flag *flags, size_t nr, unsigned opts,
	      int argc, char **argv, int *next, struct strbuf *err);

/* --- subcommands --- */

struct cli_command {
	const char *name;          /* "list-storages" */
	int (*run)(int argc, char **argv, void *ctx); /* argv[0] is the first argument after the name */
	const char *help;          /* one line for the usage text */
	const void *data;          /* the binary's own per-command facts (optional) */
};

/* The entry named `name` in cmds[0..nr), or NULL. */
const struct cli_command *cli_command_find(const struct cli_command *cmds, size_t nr, const char *name);

/* --- usage text --- */

/* "usage: <prog> <synopsis>" (no newline): a binary whose arguments are all positional. */
void cli_usage_line(struct strbuf *out, const char *prog, const char *synopsis);

/*
 * One line per command: "   <name padded to width> <help>\n". `width` 0
 * pads to the longest name.
 */
void cli_usage_commands(struct strbuf *out, const struct cli_command *cmds, size_t nr, int width);

/*
 * One line per flag, as urfave/cli spells them (upstream praefect's help):
 * "   --config FILE, -config FILE  load configuration from FILE" for a flag
 * without alias, "   --help, -h  show help" with one; the descriptions are
 * aligned two spaces after the longest left part.
 */
void cli_usage_flags(struct strbuf *out, const struct cli_flag *flags, size_t nr);

/*
 * A subcommand's help as urfave/cli prints it (upstream praefect's and
 * gitaly's subcommands), `description` and `usage` optional:
 *
 *	NAME:
 *	   <prog> <name> - <help>
 *
 *	USAGE:
 *	   <prog> <name> <usage, default "[command options] [arguments...]">
 *
 *	DESCRIPTION:
 *	   <description, each line indented by three spaces>
 *
 *	OPTIONS:
 *	   --virtual-storage value  <help>
 *	   --help, -h               show help
 */
void cli_usage_subcommand(struct strbuf *out, const char *prog, const struct cli_command *cmd,
			  const char *usage, const char *description, const struct cli_flag *flags, size_t nr);

/*
 * Go's time.Time String() of `secs` + `nanos` since the epoch, as upstream's
 * CLI output shows times: "2024-01-05 15:14:53.48 +0100 CET" in local time,
 * or "2021-04-01 10:04:20.5 +0000 UTC" with `utc`; the fraction without
 * trailing zeros, none when zero.
 */
void cli_go_time(struct strbuf *sb, int64_t secs, long nanos, int utc);

#endif

/*
 * `praefect configuration validate < config.toml`: the structured validation
 * of a config read from stdin, its problems as JSON on stdout, exit 2
 * (docs/technical/praefect-cli.md, "configuration validate"). Needs no -config.
 */
#include "cmd/cmd.h"
#include "base/fs.h"
#include "base/util.h"
#include "config/reader.h"
#include "config/validate.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static const struct cmd_info validate_info = {
	CMD_NO_CONFIG, NULL,
	"Check a Praefect configuration read from stdin and print what is wrong with it\n"
	"as JSON on stdout.\n\nExample: praefect configuration validate < praefect.config.toml",
};
static const struct cli_command subcommands[] = {
	{ "validate", NULL, "validates configuration", &validate_info },
};

static int validate(int argc, char **argv)
{
	struct strbuf in = STRBUF_INIT, err = STRBUF_INIT;
	struct praefect_config cfg;
	json_t *errors = json_array();
	int next, rc = 0;

	rc = cli_parse("validate", NULL, 0, CLI_STOP_AT_ARG, argc, argv, &next, &err);
	strbuf_reset(&err);
	if (rc == CLI_EHELP || rc < 0 || next < argc) {
		struct strbuf help = STRBUF_INIT;
		cli_usage_subcommand(&help, "praefect configuration", &subcommands[0], "command [command options] [arguments...]",
				     validate_info.description, NULL, 0);
		fputs(help.buf, stdout);
		strbuf_release(&help);
		if (rc == CLI_EHELP) {
			rc = 0;
			goto out;
		}
		fprintf(stderr, "invalid argument(s)\n");
		rc = 1;
		goto out;
	}
	if (cfg_validate_read(0, &in, &err) < 0) {
		fputs(err.buf, stderr);
		rc = 1;
		goto out;
	}
	if (praefect_config_parse(&cfg, in.buf, in.len, "<stdin>", &err) < 0) {
		const char *msg = err.buf;
		if (!strncmp(msg, "error reading config file: ", 27))
			msg += 27;
		if (!strncmp(msg, "running config command", 22) || !strncmp(msg, "unmarshalling generated", 23)) {
			fprintf(stderr, "processing input data: %s", msg);
			rc = 1;
		} else {
			cfg_validate_add_parse_error(errors, msg);
			cfg_validate_print(errors);
			rc = CFG_VALIDATION_FAILED;
		}
		praefect_config_release(&cfg);
		goto out;
	}
	praefect_config_validate_all(&cfg, errors);
	praefect_config_release(&cfg);
	if (json_array_size(errors)) {
		cfg_validate_print(errors);
		rc = CFG_VALIDATION_FAILED;
	}
out:
	json_decref(errors);
	strbuf_release(&in);
	strbuf_release(&err);
	return rc;
}

int cmd_configuration(int argc, char **argv, void *ctx)
{
	int next, rc;
	(void)ctx;
	if (cmd_flags("configuration", NULL, 0, CLI_STOP_AT_ARG, argc, argv, &next, &rc) < 0)
		return rc;
	if (next < argc && !strcmp(argv[next], "validate"))
		return validate(argc - next - 1, argv + next + 1);
	/* urfave: no subcommand (or an unknown one) shows the command's help */
	{
		struct strbuf sb = STRBUF_INIT;
		struct cli_command self = { "configuration", NULL, "manage configuration", NULL };
		cli_usage_subcommand(&sb, "praefect", &self, "command [command options]", NULL, NULL, 0);
		strbuf_addstr(&sb, "\nCOMMANDS:\n");
		cli_usage_commands(&sb, subcommands, ARRAY_SIZE(subcommands), 0);
		fputs(sb.buf, stdout);
		strbuf_release(&sb);
	}
	return next < argc ? 3 : 0;
}

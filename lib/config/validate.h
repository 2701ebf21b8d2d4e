/*
 * `gitaly configuration validate` and `praefect configuration validate`
 * share their input and output (docs/technical/praefect-cli.md): the
 * configuration is read from stdin, capped, and what is wrong with it is
 * printed as {"errors": [{"key": [...], "message": "..."}, ...]} on stdout,
 * with exit status 2.
 */
#ifndef CONFIG_VALIDATE_H
#define CONFIG_VALIDATE_H

#include "base/strbuf.h"
#include <jansson.h>

#define CFG_VALIDATE_MAX_INPUT (4 * 1024 * 1024)
#define CFG_VALIDATION_FAILED 2

/* Read the whole configuration from `fd`; -1 with the admin's message in `err` ("processing input data: ..."). */
int cfg_validate_read(int fd, struct strbuf *in, struct strbuf *err);

/* Append a TOML parse error to `errors`, worded "line L column C: what" as upstream. */
void cfg_validate_add_parse_error(json_t *errors, const char *err);

/* Print {"errors": errors} on stdout, indented as upstream. */
void cfg_validate_print(json_t *errors);

#endif

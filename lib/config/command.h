/*
 * `config_command`: both daemons' config files may name an executable that
 * is run (no arguments, no shell) once the TOML is parsed; its stdout is a
 * JSON object merged over the parsed tree before any key is read, so the
 * command can supply secrets or whole sections (docs/technical/config.md,
 * "config_command"). Merging follows how upstream decodes JSON over its
 * loaded struct: objects merge key by key, an array replaces the old one
 * element by element (tables at the same index merge, the length is the
 * JSON array's), scalars replace, null changes nothing.
 */
#ifndef CONFIG_COMMAND_H
#define CONFIG_COMMAND_H

#include "base/strbuf.h"
#include "toml.h"

/* Cap on what the command may print on stdout and on stderr. */
#define CFG_COMMAND_MAX_OUTPUT (4 * 1024 * 1024)

/*
 * Run root's "config_command" if it is set and not empty, and merge its
 * output into `root`. 0 (also when there is no command), or -1 with the
 * message in `err`:
 *   running config command: exit status 1, stderr: "boom\n"
 *   running config command: fork/exec /x: no such file or directory
 *   unmarshalling generated config: <what is wrong with the JSON>
 */
int cfg_config_command(struct toml_table *root, struct strbuf *err);

/* Merge the JSON object text[0..len) into `root` (what the above does with the output). */
int cfg_merge_json(struct toml_table *root, const char *text, size_t len, struct strbuf *err);

#endif

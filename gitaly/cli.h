/*
 * gitaly's subcommands other than serve (upstream's names, output and exit
 * codes; docs/technical/gitaly-node.md, "Command line"): `gitaly check
 * CONFIG` asks GitLab's internal API whether it is reachable, `gitaly
 * configuration validate < CONFIG` prints what is wrong with a config as JSON,
 * `gitaly hooks set --repository R [--storage S] --config CONFIG < TAR` sends
 * the tar to the node's SetCustomHooks.
 * Each takes the arguments after its name and returns the exit code.
 */
#ifndef GITALY_CLI_H
#define GITALY_CLI_H

#define GITALY_VERSION "16.8.0-c"

int gitaly_cmd_check(int argc, char **argv, void *ctx);
int gitaly_cmd_configuration(int argc, char **argv, void *ctx);
int gitaly_cmd_hooks(int argc, char **argv, void *ctx);

#endif

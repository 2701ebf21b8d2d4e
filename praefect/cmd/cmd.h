/*
 * praefect's command line: the global -config flag, then a subcommand from
 * the table in cmd.c (upstream's names, flags and output). Each subcommand is
 * glue over lib/ and the running praefect's gRPC API.
 */
#ifndef PRAEFECT_CMD_H
#define PRAEFECT_CMD_H

#include "config.h"

#define PRAEFECT_VERSION "16.8.0-c"

int praefect_cli(int argc, char **argv);
int praefect_serve(struct praefect_config *cfg);

/*
 * Go-style flags: -name value, -name=value, --name value, and -name for
 * booleans. Parses argv[0..argc) for the given flags; positional arguments
 * are an error. Returns 0 or -1 with a message in `err`.
 */
struct cmd_flag {
	const char *name;
	int is_bool;
	const char **value;   /* string flags */
	int *set;             /* bool flags (and "was given" for strings, optional) */
};
int cmd_parse_flags(const char *cmd, int argc, char **argv, struct cmd_flag *flags, size_t n, struct strbuf *err);

int cmd_list_storages(struct praefect_config *cfg, int argc, char **argv);
int cmd_dataloss(struct praefect_config *cfg, int argc, char **argv);
int cmd_accept_dataloss(struct praefect_config *cfg, int argc, char **argv);

/*
 * Call the running praefect (its socket_path, else listen_addr) with the
 * config's auth token. Server-streaming calls hand every response message to
 * `on_message`. Returns the gRPC code; the status message goes to `errmsg`.
 */
#include <stdint.h>
#include "base/strbuf.h"
#include "grpc/status.h"
enum grpc_code cmd_call_praefect(struct praefect_config *cfg, const char *method, const void *req, size_t len,
				 void (*on_message)(void *arg, const uint8_t *msg, size_t len), void *arg,
				 struct strbuf *errmsg);

#endif

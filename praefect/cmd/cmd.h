/*
 * praefect's command line: the global -config flag, then a subcommand from
 * the table in cmd/cmd.c (upstream's names, flags and output), one file per
 * subcommand in this folder. Each subcommand is a struct cli_command's run
 * function (lib/cli): argv holds the arguments after its name, `ctx` is the
 * loaded struct praefect_config. It parses its own flags with cli_parse()
 * and returns the process's exit code.
 */
#ifndef PRAEFECT_CMD_H
#define PRAEFECT_CMD_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "base/strbuf.h"
#include "cli/cli.h"
#include "grpc/status.h"

#define PRAEFECT_VERSION "16.8.0-c"

int praefect_cli(int argc, char **argv);

/*
 * What a table entry's `data` may point to (NULL: the defaults). A command
 * reads its -config with the classic validation unless CMD_NO_CONFIG.
 * CMD_NO_STORE marks a command that never opens the tracking store (kept as
 * documentation: both stores are supported, so nothing is refused on it).
 * `usage` and `description` go into its -h text.
 */
#define CMD_NO_CONFIG 0x1
#define CMD_NO_STORE  0x2
struct cmd_info {
	unsigned flags;
	const char *usage;         /* after "praefect <name> "; NULL: "[command options] [arguments...]" */
	const char *description;
};

/*
 * A subcommand's flag parsing: cli_parse() over argv, the error printed to
 * stderr, or for -h the command's help printed to stdout. Returns 0 to go on,
 * or -1 with the exit code in *exit_code (0 after help, 1 after an error).
 */
/* printf() one line, indented by `level` steps of two spaces (dataloss' layout). */
void cmd_indent(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * The virtual storages a subcommand reports on, sorted by name: `only` when
 * given, else every configured one. Sets *nr; free() the array.
 */
const char **cmd_vs_names(const struct praefect_config *cfg, const char *only, size_t *nr);
int cmd_flags(const char *name, const struct cli_flag *flags, size_t nr, unsigned opts, int argc, char **argv,
	      int *next, int *exit_code);
/* Print the -h text of `name` (to `out`). */
void cmd_help(FILE *out, const char *name, const struct cli_flag *flags, size_t nr);
/* Run the daemon until it is stopped (praefect.c); takes over `cfg`. */
int praefect_serve(struct praefect_config *cfg);

/* --- the subcommands, one file each --- */
int cmd_serve(int argc, char **argv, void *ctx);           /* serve.c */
int cmd_list_storages(int argc, char **argv, void *ctx);   /* list_storages.c */
int cmd_dataloss(int argc, char **argv, void *ctx);        /* dataloss.c */
int cmd_accept_dataloss(int argc, char **argv, void *ctx); /* accept_dataloss.c */
int cmd_metadata(int argc, char **argv, void *ctx);        /* metadata.c */
int cmd_set_replication_factor(int argc, char **argv, void *ctx); /* set_replication_factor.c */
int cmd_verify(int argc, char **argv, void *ctx);          /* verify.c */
int cmd_remove_repository(int argc, char **argv, void *ctx); /* remove_repository.c */
int cmd_list_untracked_repositories(int argc, char **argv, void *ctx); /* list_untracked.c */
int cmd_track_repository(int argc, char **argv, void *ctx);   /* track_repository.c */
int cmd_track_repositories(int argc, char **argv, void *ctx); /* track_repository.c */
int cmd_dial_nodes(int argc, char **argv, void *ctx);      /* dial_nodes.c */
int cmd_check(int argc, char **argv, void *ctx);           /* check.c */
int cmd_sql_ping(int argc, char **argv, void *ctx);        /* sql.c */
int cmd_sql_migrate_status(int argc, char **argv, void *ctx); /* sql.c */
int cmd_sql_migrate(int argc, char **argv, void *ctx);      /* sql_migrate.c */
int cmd_sql_migrate_down(int argc, char **argv, void *ctx); /* sql_migrate.c */
int cmd_configuration(int argc, char **argv, void *ctx);   /* configuration.c */
int cmd_rebuild_tracking_store(int argc, char **argv, void *ctx); /* rebuild_tracking_store.c */
int cmd_replication_status(int argc, char **argv, void *ctx); /* replication_status.c */

/*
 * Check every configured node once per distinct address, as dial-nodes
 * prints it (ping.c), within timeout_ms for the whole run. Returns how many
 * failed; their addresses go to `failed`, ", "-separated.
 */
int cmd_ping_nodes(const struct praefect_config *cfg, uint64_t timeout_ms, int quiet, struct strbuf *failed);

/*
 * `praefect check`'s checks one by one, quietly, for ServerService/
 * ReadinessCheck (intercept/server.c): how many, the name of check `i`, and
 * running it (0, or -1 with its error in `err`). Blocking: a worker thread.
 */
size_t cmd_checks_count(void);
const char *cmd_check_name(size_t i);
int cmd_check_run(const struct praefect_config *cfg, size_t i, struct strbuf *err);

/* The tracking-store checks of `praefect check` (sql.c): 0, or -1 with the check's error in `err`. */
int cmd_db_pending_migrations(const struct praefect_config *cfg, size_t *pending, struct strbuf *err);
/* The ids of those migrations, in order (free each and the array). */
int cmd_db_pending_ids(const struct praefect_config *cfg, char ***ids, size_t *n, struct strbuf *err);
/* A connection to the configured PostgreSQL store (sql_migrate.c); NULL with `err` set. */
struct pg_conn;
struct pg_conn *cmd_pg_connect(const struct praefect_config *cfg, struct strbuf *err);
int cmd_db_read_write(const struct praefect_config *cfg, int quiet, struct strbuf *err);
int cmd_db_unavailable(const struct praefect_config *cfg, int quiet, struct strbuf *err);

/* An error as Go's log.Fatal prints it: "YYYY/MM/DD HH:MM:SS <message>" on stderr. */
void cmd_log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Call the running praefect (its socket_path, else listen_addr) with the
 * config's auth token (call.c). Server-streaming calls hand every response
 * message to `on_message`. Returns the gRPC code; the status message goes to
 * `errmsg`.
 */
enum grpc_code cmd_call_praefect(struct praefect_config *cfg, const char *method, const void *req, size_t len,
				 void (*on_message)(void *arg, const uint8_t *msg, size_t len), void *arg,
				 struct strbuf *errmsg);

/* The same call to any address (a gitaly node: its `token`). */
enum grpc_code cmd_call_addr(const char *addr, const char *token, const char *method, const void *req, size_t len,
			     void (*on_message)(void *arg, const uint8_t *msg, size_t len), void *arg,
			     struct strbuf *errmsg);

/* An on_message for the calls above: keep the last message in the strbuf `arg`. */
void cmd_keep_message(void *arg, const uint8_t *msg, size_t len);

/*
 * A unary call with `req` packed; the response message (the last one) goes
 * to `resp`. On failure `errmsg` holds Go's form of the status, "rpc error:
 * code = NotFound desc = repository not found", as upstream prints it.
 */
struct ProtobufCMessage;
enum grpc_code cmd_call_unary(struct praefect_config *cfg, const char *method, const struct ProtobufCMessage *req,
			      struct strbuf *resp, struct strbuf *errmsg);

/*
 * Print an error the way upstream's main does (Go's log.Fatal): "YYYY/MM/DD
 * HH:MM:SS <message>" on stderr, local time. Returns 1, the exit code.
 */
int cmd_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse an integer flag's value as Go's strconv does; -1 with urfave's message in `err`. */
int cmd_parse_int64(const char *flag, const char *value, int64_t min, int64_t *out, struct strbuf *err);

#endif

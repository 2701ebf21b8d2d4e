/*
 * PostgreSQL notifications of repository changes (docs/technical/multi-praefect.md,
 * "The listener"): upstream's triggers NOTIFY on `repositories_updates` and
 * `storage_repositories_updates` with a JSON array of
 * {"virtual_storage": "...", "relative_paths": ["...", ...]}.
 *
 * pg_notify_parse() reads one payload (untrusted: it comes from the database,
 * which anyone with write access to it can NOTIFY on; fuzz/fuzz_pg_notify.c).
 * pg_listener_start() runs a LISTEN connection on a thread of its own and
 * hands what it hears to a callback on the loop thread.
 */
#ifndef STORE_PG_NOTIFY_H
#define STORE_PG_NOTIFY_H

#include <stddef.h>
#include <uv.h>

#include "base/strbuf.h"

struct store_pg_params;

#define PG_CHANNEL_REPOSITORIES "repositories_updates"
#define PG_CHANNEL_STORAGE_REPOSITORIES "storage_repositories_updates"

struct pg_notify_entry {
	char *virtual_storage;
	char **relative_paths;
	size_t nr_paths;
};

/*
 * Parse one payload: 0 with `*out` / `*n` set (free with
 * pg_notify_entries_free()), or -1 with `err` saying why (nothing to free).
 * An entry needs a string "virtual_storage" and an array of strings
 * "relative_paths"; other keys are ignored. Strings with NUL bytes are refused.
 */
int pg_notify_parse(const char *payload, size_t len, struct pg_notify_entry **out, size_t *n, struct strbuf *err);
void pg_notify_entries_free(struct pg_notify_entry *e, size_t n);

enum pg_listen_event {
	PG_LISTEN_CONNECTED,      /* LISTEN is in place: anything before may have been missed */
	PG_LISTEN_DISCONNECTED,   /* the connection was lost (`lost`) or could not be made (`msg`); retried */
	PG_LISTEN_CHANGED,        /* a notification: `entries` */
	PG_LISTEN_BAD_PAYLOAD,    /* a notification that did not parse (`msg`): what changed is unknown */
};

struct pg_listen_ev {
	enum pg_listen_event type;
	const char *channel;      /* CHANGED, BAD_PAYLOAD */
	const char *msg;          /* DISCONNECTED, BAD_PAYLOAD */
	const struct pg_notify_entry *entries;
	size_t nr_entries;
	int lost;                 /* DISCONNECTED: an established connection was lost */
};

/* Called on the loop thread; `ev` is valid during the call. */
typedef void (*pg_listen_fn)(void *arg, const struct pg_listen_ev *ev);

struct pg_listener;
/*
 * Connect with `params` (copied) and LISTEN on `channels` (names of
 * letters, digits and '_' only), on a thread of its own: the loop never
 * waits for the database. A lost connection is retried after 100 ms,
 * doubling up to 5 s. The listener does not keep the loop alive.
 */
struct pg_listener *pg_listener_start(uv_loop_t *loop, const struct store_pg_params *params,
				      const char *const *channels, size_t nr_channels, pg_listen_fn cb, void *arg);
/* Stop the thread (no callback after this returns); the memory goes on the loop's next turn. */
void pg_listener_stop(struct pg_listener *l);

#endif

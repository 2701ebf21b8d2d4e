/*
 * The server side of git's proc-receive protocol as upstream's
 * ProcReceiveHook reads it (docs/technical/hooks.md, "proc-receive"): a
 * version line "version=1\0<features>" and a flush, then one
 * "<old> SP <new> SP <ref>" pkt-line per command up to a flush. Input comes
 * in arbitrary pieces; the parser keeps what it has not consumed (at most
 * one pkt-line, PRC_MAX_PKT bytes, as upstream's scanner).
 */
#ifndef GITALY_HOOKS_PROC_RECEIVE_PARSE_H
#define GITALY_HOOKS_PROC_RECEIVE_PARSE_H

#include <stddef.h>
#include "base/strbuf.h"

#define PRC_MAX_PKT 65520

enum prc_state { PRC_VERSION, PRC_VERSION_FLUSH, PRC_COMMANDS, PRC_DONE, PRC_FAILED };

struct prc_parser {
	enum prc_state state;
	struct strbuf buf;      /* bytes not consumed yet */
	int atomic;             /* the "atomic" feature was requested */
	size_t commands;
	struct strbuf err;      /* upstream's message once PRC_FAILED */
};

void prc_init(struct prc_parser *p);
void prc_release(struct prc_parser *p);
/*
 * Feed more input (`eof`: nothing more will come). Returns the state
 * reached: PRC_COMMANDS means the version was negotiated (the caller answers
 * it once, with prc_version_reply(), then feeds again, with no data if need
 * be: commands already buffered are read then), PRC_DONE the command list ended
 * (flush, or end of input after the version), PRC_FAILED an error in err.
 */
enum prc_state prc_feed(struct prc_parser *p, const void *data, size_t len, int eof);
/* The pkt-lines answering the version: "version=1\0[atomic]" and a flush. */
void prc_version_reply(const struct prc_parser *p, struct strbuf *out);

#endif

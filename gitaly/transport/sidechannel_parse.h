/*
 * The parsers of the bytes a sidechannel client sends (docs/technical/sidechannel.md):
 * the sidechannel's pkt-line deframing (sc_deframe) and upstream's packfile
 * negotiation statistics (sc_stats). Pure (lib/base only), incremental (any
 * split of the input gives the same result), bounded (one pkt-line at most
 * is held); t/unit/test_sidechannel_parse.c and fuzz/fuzz_sidechannel.c.
 */
#ifndef GITALY_TRANSPORT_SIDECHANNEL_PARSE_H
#define GITALY_TRANSPORT_SIDECHANNEL_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include "base/strbuf.h"
#include "base/strvec.h"

/* Largest pkt-line, length header included (git's LARGE_PACKET_MAX). */
#define SC_PKT_MAX 65520

/*
 * The client's half of the sidechannel: pkt-lines whose payloads are the
 * data, a flush ends it. Returns the number of bytes of `buf` consumed
 * (bytes after the flush or an error are not), calling `data` for each
 * payload piece. `st->state` becomes SC_DF_FLUSHED or SC_DF_ERROR.
 */
enum sc_deframe_state { SC_DF_DATA = 0, SC_DF_FLUSHED, SC_DF_ERROR };
struct sc_deframe {
	enum sc_deframe_state state;
	char hdr[4];
	size_t hdr_len;
	size_t left;   /* payload bytes of the current packet still to come */
	char err[64];  /* why, for the log */
};
size_t sc_deframe_feed(struct sc_deframe *st, const char *buf, size_t len,
		       void (*data)(void *arg, const char *p, size_t n), void *arg);

/* Upstream's PackfileNegotiation, counted incrementally over git's stdin. */
struct sc_stats {
	int64_t payload_size, packets, wants, haves, shallows;
	struct strvec caps;
	int have_caps;
	struct strbuf deepen, filter;
	int stopped;       /* "done" seen or an error: counting is over */
	int failed;        /* the negotiation did not parse */
	int saw_done;      /* a whole packet "0009done\n" went by (the negotiation's end) */
	int broken;        /* not pkt-line framed: scanning stopped */
	char hdr[4];
	size_t hdr_len, left;
	struct strbuf pkt; /* the current packet's payload */
};
void sc_stats_init(struct sc_stats *s);
void sc_stats_release(struct sc_stats *s);
void sc_stats_feed(struct sc_stats *s, const char *buf, size_t len);
/* End of input: a negotiation without a "want" failed. */
void sc_stats_finish(struct sc_stats *s);

#endif

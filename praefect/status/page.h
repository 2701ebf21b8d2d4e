/*
 * The status page praefect serves at "/" on prometheus_listen_addr: every
 * virtual storage and node (health, last check latency, last check), its
 * repositories by state, the replication backlog of the last hour as an
 * inline SVG chart, recent failovers and the primaries per node. Built on the loop thread
 * after each queue listing (metrics/metrics.c) and handed to the HTTP
 * thread as a finished page (metrics_http_set_page), so no data is shared.
 * docs/technical/status-page.md says what each number means.
 */
#ifndef PRAEFECT_STATUS_PAGE_H
#define PRAEFECT_STATUS_PAGE_H

struct praefect;
struct strbuf;

/* Append the whole HTML page (plain HTML and CSS, every string escaped). */
void status_page_render(struct praefect *p, struct strbuf *out);

/* An elected primary replaced another (election.c): kept in a small ring for the page. */
struct repo;
void status_record_failover(struct praefect *p, const struct repo *r, const char *from, const char *to);
struct status_failover;
void status_failover_release(struct status_failover *f);

#endif

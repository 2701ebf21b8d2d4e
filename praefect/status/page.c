/*
 * The status page (page.h). One screen: a card per virtual storage with a
 * table of its nodes and its repositories by state, then the backlog chart.
 */
#include "praefect.h"
#include "status/page.h"
#include "metrics/series.h"
#include "base/strbuf.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

enum repo_state { STATE_IN_SYNC, STATE_OUTDATED, STATE_UNAVAILABLE, STATE_NR };

static const char *const state_names[STATE_NR] = { "in sync", "outdated", "unavailable" };
static const char *const state_classes[STATE_NR] = { "ok", "warn", "bad" };

static void add_escaped(struct strbuf *out, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '<': strbuf_addstr(out, "&lt;"); break;
		case '>': strbuf_addstr(out, "&gt;"); break;
		case '&': strbuf_addstr(out, "&amp;"); break;
		case '"': strbuf_addstr(out, "&quot;"); break;
		case '\'': strbuf_addstr(out, "&#39;"); break;
		default: strbuf_addch(out, *s);
		}
	}
}

/*
 * Unavailable: no healthy node holds an assigned, up to date replica (as
 * gitaly_praefect_unavailable_repositories). Outdated: available, but an
 * assigned replica is behind. In sync otherwise.
 */
static enum repo_state state_of(struct repo *r)
{
	int available = 0, behind = 0;
	for (size_t i = 0; i < r->vs->nr_nodes; i++) {
		const char *s = r->vs->nodes[i].cfg->storage;
		if (!repo_assigned(r, s))
			continue;
		if (!repo_up_to_date(r, s))
			behind = 1;
		else if (r->vs->nodes[i].healthy)
			available = 1;
	}
	if (!available)
		return STATE_UNAVAILABLE;
	return behind ? STATE_OUTDATED : STATE_IN_SYNC;
}

static const char style[] =
	"body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#222}"
	"header{background:#2b2d42;color:#fff;padding:12px 24px}h1{font-size:20px;margin:0}"
	"main{padding:16px 24px;display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}"
	".card{background:#fff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.15);padding:12px 16px;min-width:420px}"
	"h2{font-size:16px;margin:0 0 8px}table{border-collapse:collapse;width:100%}"
	"th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee}th{color:#666;font-weight:600}"
	".ok{color:#1a7f37}.warn{color:#9a6700}.bad{color:#cf222e;font-weight:600}"
	".pill{display:inline-block;padding:0 8px;border-radius:10px;background:#eee}"
	".counts span{margin-right:16px}svg{background:#fafafa;border:1px solid #eee}"
	".addr{max-width:320px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;color:#666}"
	".note{color:#888;font-size:12px}";

/*
 * A node's replication backlog (jobs ready, in progress, failed) and its
 * outdated replicas with the age of the oldest, as the metrics task last
 * sampled them (docs/technical/replication-status.md).
 */
static void render_repl_status(struct strbuf *out, const struct node_repl_status *s)
{
	int64_t backlog = s->ready + s->in_progress + s->failed;
	int64_t age = s->oldest_outdated_ms ? (rstatus_wall_ms() - s->oldest_outdated_ms) / 1000 : 0;

	strbuf_addf(out, "<td class=\"backlog %s\" data-jobs=\"%lld\">%lld</td>", backlog ? "warn" : "",
		    (long long)backlog, (long long)backlog);
	if (!s->outdated) {
		strbuf_addstr(out, "<td class=\"outdated ok\" data-replicas=\"0\" data-age=\"0\">none</td>");
		return;
	}
	if (age < 0)
		age = 0;
	strbuf_addf(out, "<td class=\"outdated warn\" data-replicas=\"%lld\" data-age=\"%lld\">%lld, oldest for ",
		    (long long)s->outdated, (long long)age, (long long)s->outdated);
	if (age >= 3600)
		strbuf_addf(out, "%lldh%lldm", (long long)(age / 3600), (long long)(age / 60 % 60));
	else if (age >= 60)
		strbuf_addf(out, "%lldm%llds", (long long)(age / 60), (long long)(age % 60));
	else
		strbuf_addf(out, "%llds", (long long)age);
	strbuf_addstr(out, "</td>");
}

static void render_vstorage(struct praefect *p, struct vstorage *vs, struct strbuf *out, uint64_t now)
{
	size_t counts[STATE_NR] = { 0 };
	size_t *primaries = xcalloc(vs->nr_nodes + 1, sizeof(*primaries));

	for (size_t i = 0; i < p->repos.cap; i++) {
		struct repo *r = p->repos.by_id[i];
		if (!r)
			continue;
		if (r->vs != vs)
			continue;
		counts[state_of(r)]++;
		for (size_t j = 0; r->primary && j < vs->nr_nodes; j++)
			if (!strcmp(r->primary, vs->nodes[j].cfg->storage))
				primaries[j]++;
	}
	strbuf_addstr(out, "<section class=\"card vstorage\" data-name=\"");
	add_escaped(out, vs->cfg->name);
	strbuf_addstr(out, "\"><h2>Virtual storage ");
	add_escaped(out, vs->cfg->name);
	strbuf_addstr(out, "</h2><table class=\"nodes\"><tr><th>Node</th><th>Address</th><th>Health</th>"
			   "<th>Latency</th><th>Last check</th><th>Primaries</th><th>Backlog</th>"
			   "<th>Outdated</th></tr>");
	for (size_t j = 0; j < vs->nr_nodes; j++) {
		struct node *n = &vs->nodes[j];
		strbuf_addstr(out, "<tr class=\"node\" data-storage=\"");
		add_escaped(out, n->cfg->storage);
		strbuf_addf(out, "\" data-health=\"%s\"><td>", n->healthy ? "healthy" : "unhealthy");
		add_escaped(out, n->cfg->storage);
		strbuf_addstr(out, "</td><td class=\"addr\" title=\"");
		add_escaped(out, n->cfg->address);
		strbuf_addstr(out, "\">");
		add_escaped(out, n->cfg->address);
		strbuf_addf(out, "</td><td class=\"health %s\">%s</td>", n->healthy ? "ok" : "bad",
			    n->healthy ? "healthy" : "unhealthy");
		strbuf_addf(out, "<td>%.1f ms</td>", (double)n->last_latency_us / 1000.0);
		if (n->last_check_ms)
			strbuf_addf(out, "<td>%.1f s ago</td>",
				    (double)(now > n->last_check_ms ? now - n->last_check_ms : 0) / 1000.0);
		else
			strbuf_addstr(out, "<td>never</td>");
		strbuf_addf(out, "<td class=\"primaries\">%zu</td>", primaries[j]);
		render_repl_status(out, &n->repl);
		strbuf_addstr(out, "</tr>");
	}
	strbuf_addstr(out, "</table><h2 style=\"margin-top:12px\">Repositories</h2><p class=\"counts\">");
	for (int s = 0; s < STATE_NR; s++)
		strbuf_addf(out, "<span class=\"repos %s\" data-state=\"%s\"><b class=\"count\">%zu</b> %s</span>",
			    counts[s] ? state_classes[s] : "", state_names[s], counts[s], state_names[s]);
	strbuf_addstr(out, "</p></section>");
	free(primaries);
}

/* The ring of once-a-minute backlog samples as bars, oldest on the left, the newest at "now". */
static void render_backlog(struct praefect *p, struct strbuf *out)
{
	struct praefect_metrics *m = p->metrics;
	const int w = 420, h = 120, top = 18, bottom = 16;
	const double bar = (double)w / STATUS_BACKLOG_SAMPLES;
	int64_t now = p->metric_queue_depth, peak = now, max;
	size_t n = m->nr_backlog, first = (m->backlog_next + STATUS_BACKLOG_SAMPLES - n) % STATUS_BACKLOG_SAMPLES;

	for (size_t i = 0; i < n; i++)
		peak = MAX(peak, m->backlog[(first + i) % STATUS_BACKLOG_SAMPLES]);
	max = MAX(peak, 1);
	strbuf_addf(out, "<section class=\"card\"><h2>Replication backlog, last hour</h2>"
			 "<p>unfinished jobs now: <b id=\"backlog-now\">%lld</b>, peak of the hour %lld</p>"
			 "<svg id=\"backlog\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">",
		    (long long)now, (long long)peak, w, h, w, h);
	strbuf_addf(out, "<line x1=\"0\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ccc\"/>", h - bottom, w,
		    h - bottom);
	for (size_t i = 0; i < n; i++) {
		int64_t v = m->backlog[(first + i) % STATUS_BACKLOG_SAMPLES];
		double bh = (double)v * (h - top - bottom) / (double)max;
		double x = (double)(STATUS_BACKLOG_SAMPLES - 1 - n + i) * bar;
		strbuf_addf(out, "<rect class=\"sample\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
				 "fill=\"#3b6fd8\"><title>%lld</title></rect>",
			    x + 0.5, h - bottom - bh, bar - 1, bh, (long long)v);
	}
	strbuf_addf(out, "<rect id=\"backlog-live\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
			 "fill=\"#e07a1f\"><title>now: %lld</title></rect>",
		    w - bar + 0.5, h - bottom - (double)now * (h - top - bottom) / (double)max, bar - 1,
		    (double)now * (h - top - bottom) / (double)max, (long long)now);
	strbuf_addf(out, "<text x=\"2\" y=\"12\" font-size=\"11\" fill=\"#666\">max %lld</text>"
			 "<text x=\"2\" y=\"%d\" font-size=\"11\" fill=\"#666\">-60 min</text>"
			 "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#666\">now</text></svg>"
			 "<p class=\"note\">jobs ready, in progress or failed: one sample a minute (blue), and now (orange)</p></section>",
		    (long long)max, h - 3, w - 24, h - 3);
}

void status_failover_release(struct status_failover *f)
{
	free(f->vs);
	free(f->relative_path);
	free(f->from);
	free(f->to);
	memset(f, 0, sizeof(*f));
}

void status_record_failover(struct praefect *p, const struct repo *r, const char *from, const char *to)
{
	struct praefect_metrics *m = p->metrics;
	struct status_failover *f;

	if (!m)
		return;
	f = &m->failovers[m->failover_next];
	status_failover_release(f);
	f->at = (int64_t)time(NULL);
	f->vs = xstrdup(r->vs->cfg->name);
	f->relative_path = xstrdup(r->relative_path);
	f->from = xstrdup(from);
	f->to = xstrdup(to);
	m->failover_next = (m->failover_next + 1) % STATUS_FAILOVERS;
	m->nr_failovers = MIN(m->nr_failovers + 1, (size_t)STATUS_FAILOVERS);
}

static void render_failovers(struct praefect *p, struct strbuf *out)
{
	struct praefect_metrics *m = p->metrics;

	strbuf_addstr(out, "<section class=\"card\"><h2>Recent failovers</h2>");
	if (!m->nr_failovers) {
		strbuf_addstr(out, "<p class=\"note\" id=\"no-failovers\">none since praefect started</p></section>");
		return;
	}
	strbuf_addstr(out, "<table id=\"failovers\"><tr><th>When (UTC)</th><th>Repository</th><th>From</th>"
			   "<th>To</th></tr>");
	for (size_t i = 0; i < m->nr_failovers; i++) {
		const struct status_failover *f =
			&m->failovers[(m->failover_next + STATUS_FAILOVERS - 1 - i) % STATUS_FAILOVERS];
		time_t t = (time_t)f->at;
		struct tm tm;
		char when[32] = "";
		if (gmtime_r(&t, &tm))
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		strbuf_addf(out, "<tr class=\"failover\"><td>%s</td><td>", when);
		add_escaped(out, f->vs);
		strbuf_addch(out, '/');
		add_escaped(out, f->relative_path);
		strbuf_addstr(out, "</td><td>");
		add_escaped(out, f->from);
		strbuf_addstr(out, "</td><td>");
		add_escaped(out, f->to);
		strbuf_addstr(out, "</td></tr>");
	}
	strbuf_addstr(out, "</table></section>");
}

void status_page_render(struct praefect *p, struct strbuf *out)
{
	uint64_t now = now_ms();

	strbuf_addstr(out, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
			   "<title>Praefect status</title><style>");
	strbuf_addstr(out, style);
	strbuf_addstr(out, "</style></head><body><header><h1>Praefect ");
	add_escaped(out, p->name);
	strbuf_addstr(out, "</h1></header><main>");
	for (size_t i = 0; i < p->nr_vs; i++)
		render_vstorage(p, &p->vs[i], out, now);
	render_backlog(p, out);
	render_failovers(p, out);
	strbuf_addstr(out, "</main></body></html>\n");
}

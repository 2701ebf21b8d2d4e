/*
 * ServerService calls praefect answers itself, besides ServerInfo
 * (intercept.c): DiskStatistics gathered from every node, ClockSynced
 * about praefect's own clock, ReadinessCheck running `praefect check`'s
 * checks (docs/technical/clock-sync.md).
 */
#include "intercept/intercept.h"
#include "cmd/cmd.h"
#include "base/log.h"
#include "base/pb.h"
#include "base/util.h"
#include "ntp/ntp.h"
#include "server.pb-c.h"

#include <stdlib.h>
#include <string.h>

#define DISK_STATS_TIMEOUT_MS 10000

/* --- DiskStatistics: every node's storages, in configuration order --- */

struct disk_stats {
	struct grpc_call *call;        /* NULL once the client went away */
	size_t pending;
	char *failed;                  /* the first storage that did not answer */
	Gitaly__DiskStatisticsResponse **parts; /* one per node, NULL until it answered */
	size_t nr_parts;
};

struct disk_part {
	struct disk_stats *ds;
	size_t slot;
	char *storage;
};

static void ds_client_gone(struct grpc_call *call, enum grpc_code code, void *arg)
{
	(void)call;
	(void)code;
	((struct disk_stats *)arg)->call = NULL;
}

static void ds_maybe_done(struct disk_stats *ds)
{
	Gitaly__DiskStatisticsResponse resp = GITALY__DISK_STATISTICS_RESPONSE__INIT;
	size_t n = 0;
	if (--ds->pending)
		return;
	if (ds->call) {
		grpc_call_on_close(ds->call, NULL, NULL);
		if (ds->failed) {
			grpc_call_finishf(ds->call, GRPC_UNKNOWN,
					  "error when requesting disk statistics from internal storage %s", ds->failed);
		} else {
			for (size_t i = 0; i < ds->nr_parts; i++)
				n += ds->parts[i] ? ds->parts[i]->n_storage_statuses : 0;
			resp.storage_statuses = xcalloc(n ? n : 1, sizeof(*resp.storage_statuses));
			for (size_t i = 0; i < ds->nr_parts; i++)
				for (size_t j = 0; ds->parts[i] && j < ds->parts[i]->n_storage_statuses; j++)
					resp.storage_statuses[resp.n_storage_statuses++] = ds->parts[i]->storage_statuses[j];
			intercept_reply(ds->call, &resp.base);
			free(resp.storage_statuses);
		}
	}
	for (size_t i = 0; i < ds->nr_parts; i++)
		if (ds->parts[i])
			gitaly__disk_statistics_response__free_unpacked(ds->parts[i], NULL);
	free(ds->parts);
	free(ds->failed);
	free(ds);
}

static void ds_part_done(void *arg, enum grpc_code code, const char *message, const uint8_t *msg, size_t len)
{
	struct disk_part *dp = arg;
	struct disk_stats *ds = dp->ds;
	Gitaly__DiskStatisticsResponse *r = msg ? gitaly__disk_statistics_response__unpack(NULL, len, msg) : NULL;
	(void)code;
	ds->parts[dp->slot] = r;
	if (!r) {
		log_msgf(LOG_WARN, "DiskStatistics from %s failed: %s", dp->storage, message ? message : "bad response");
		if (!ds->failed)
			ds->failed = xstrdup(dp->storage);
	}
	free(dp->storage);
	free(dp);
	ds_maybe_done(ds);
}

static void disk_statistics(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	struct praefect *p = data;
	struct disk_stats *ds = xcalloc(1, sizeof(*ds));
	const struct rpc_method *m = praefect_method("/gitaly.ServerService/DiskStatistics");
	(void)req;
	(void)len;
	for (size_t i = 0; i < p->nr_vs; i++)
		ds->nr_parts += p->vs[i].nr_nodes;
	ds->parts = xcalloc(ds->nr_parts ? ds->nr_parts : 1, sizeof(*ds->parts));
	ds->call = call;
	ds->pending = 1;
	grpc_call_on_close(call, ds_client_gone, ds);
	for (size_t i = 0, slot = 0; i < p->nr_vs; i++) {
		for (size_t j = 0; j < p->vs[i].nr_nodes; j++, slot++) {
			struct node *n = &p->vs[i].nodes[j];
			struct disk_part *dp = xcalloc(1, sizeof(*dp));
			dp->ds = ds;
			dp->slot = slot;
			dp->storage = xstrdup(n->cfg->storage);
			if (node_unary(n, m->name, "", 0, DISK_STATS_TIMEOUT_MS, ds_part_done, dp) == 0) {
				ds->pending++;
			} else {
				if (!ds->failed)
					ds->failed = xstrdup(n->cfg->storage);
				free(dp->storage);
				free(dp);
			}
		}
	}
	ds_maybe_done(ds);
}

/* --- ClockSynced: praefect's own clock, as gitaly's (read/server.c) --- */

struct clock_synced {
	struct grpc_call *call;        /* NULL once the client went away */
	struct ntp_query *q;
	char *host;
	int64_t threshold_ns;
};

static void cs_client_gone(struct grpc_call *call, enum grpc_code code, void *arg)
{
	struct clock_synced *x = arg;
	(void)call;
	(void)code;
	x->call = NULL;
	ntp_query_cancel(x->q);
}

static void cs_done(void *arg, const char *stage, const char *err, int64_t offset_ns)
{
	struct clock_synced *x = arg;
	if (x->call) {
		grpc_call_on_close(x->call, NULL, NULL);
		if (err && !strcmp(stage, "validate")) {
			grpc_call_finishf(x->call, GRPC_UNKNOWN, "validate ntp response: %s", err);
		} else if (err) {
			grpc_call_finishf(x->call, GRPC_UNKNOWN, "query ntp host %s: %s", x->host, err);
		} else {
			Gitaly__ClockSyncedResponse resp = GITALY__CLOCK_SYNCED_RESPONSE__INIT;
			resp.synced = offset_ns <= x->threshold_ns && offset_ns >= -x->threshold_ns;
			intercept_reply(x->call, &resp.base);
		}
	}
	free(x->host);
	free(x);
}

static void clock_synced(struct grpc_call *call, const uint8_t *data, size_t len, void *arg)
{
	struct praefect *p = arg;
	Gitaly__ClockSyncedRequest *req = gitaly__clock_synced_request__unpack(NULL, len, data);
	struct strbuf why = STRBUF_INIT;
	struct clock_synced *x;
	int64_t ns;

	if (!req) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	if (pb_duration_check(req->drift_threshold != NULL, req->drift_threshold ? req->drift_threshold->seconds : 0,
			      req->drift_threshold ? req->drift_threshold->nanos : 0, &ns, &why) < 0) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, why.buf, NULL);
		strbuf_release(&why);
		gitaly__clock_synced_request__free_unpacked(req, NULL);
		return;
	}
	x = xcalloc(1, sizeof(*x));
	x->call = call;
	x->host = xstrdup(*req->ntp_host ? req->ntp_host : NTP_DEFAULT_HOST);
	x->threshold_ns = ns;
	gitaly__clock_synced_request__free_unpacked(req, NULL);
	x->q = ntp_query(p->loop, x->host, NTP_TIMEOUT_MS, cs_done, x);
	grpc_call_on_close(call, cs_client_gone, x);
}

/*
 * --- ReadinessCheck: `praefect check`'s checks (cmd/check.c), quietly, on a
 * worker thread (they block). With a timeout the answer comes when it
 * passes at the latest: the checks not finished by then fail with
 * "context deadline exceeded", as upstream's cancelled ones do. The failed
 * ones are listed by name. ---
 */

struct readiness {
	struct praefect *p;
	struct grpc_call *call;        /* NULL once answered or the client went away */
	uv_work_t work;
	uv_timer_t timer;
	uv_mutex_t lock;               /* the results: written by the worker, read by the loop */
	size_t nr;
	int *state;                    /* per check: 0 not finished, 1 passed, -1 failed */
	char **msg;
	int work_done, timer_closed;
};

static void rc_free(struct readiness *rc)
{
	if (!rc->work_done || !rc->timer_closed)
		return;
	for (size_t i = 0; i < rc->nr; i++)
		free(rc->msg[i]);
	free(rc->msg);
	free(rc->state);
	uv_mutex_destroy(&rc->lock);
	free(rc);
}

static void rc_timer_closed(uv_handle_t *h)
{
	struct readiness *rc = h->data;
	rc->timer_closed = 1;
	rc_free(rc);
}

static int by_name(const void *a, const void *b)
{
	const Gitaly__ReadinessCheckResponse__Failure__Response *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

static void rc_answer(struct readiness *rc)
{
	Gitaly__ReadinessCheckResponse resp = GITALY__READINESS_CHECK_RESPONSE__INIT;
	Gitaly__ReadinessCheckResponse__Ok ok = GITALY__READINESS_CHECK_RESPONSE__OK__INIT;
	Gitaly__ReadinessCheckResponse__Failure failure = GITALY__READINESS_CHECK_RESPONSE__FAILURE__INIT;
	Gitaly__ReadinessCheckResponse__Failure__Response *fr = xcalloc(rc->nr ? rc->nr : 1, sizeof(*fr));
	Gitaly__ReadinessCheckResponse__Failure__Response **frp = xcalloc(rc->nr ? rc->nr : 1, sizeof(*frp));
	size_t n = 0;

	if (!rc->call)
		goto out;
	uv_mutex_lock(&rc->lock);
	for (size_t i = 0; i < rc->nr; i++) {
		if (rc->state[i] > 0)
			continue;
		gitaly__readiness_check_response__failure__response__init(&fr[n]);
		fr[n].name = (char *)cmd_check_name(i);
		fr[n].error_message = rc->state[i] < 0 ? xstrdup(rc->msg[i] ? rc->msg[i] : "")
						       : xstrdup("context deadline exceeded");
		frp[n] = &fr[n];
		n++;
	}
	uv_mutex_unlock(&rc->lock);
	qsort(frp, n, sizeof(*frp), by_name);
	if (n) {
		failure.failed_checks = frp;
		failure.n_failed_checks = n;
		resp.result_case = GITALY__READINESS_CHECK_RESPONSE__RESULT_FAILURE_RESPONSE;
		resp.failure_response = &failure;
	} else {
		resp.result_case = GITALY__READINESS_CHECK_RESPONSE__RESULT_OK_RESPONSE;
		resp.ok_response = &ok;
	}
	grpc_call_on_close(rc->call, NULL, NULL);
	intercept_reply(rc->call, &resp.base);
	rc->call = NULL;
	for (size_t i = 0; i < n; i++)
		free(fr[i].error_message);
out:
	free(fr);
	free(frp);
	if (!uv_is_closing((uv_handle_t *)&rc->timer))
		uv_close((uv_handle_t *)&rc->timer, rc_timer_closed);
}

static void rc_work(uv_work_t *w)
{
	struct readiness *rc = w->data;
	for (size_t i = 0; i < rc->nr; i++) {
		struct strbuf err = STRBUF_INIT;
		int ok = cmd_check_run(&rc->p->cfg, i, &err) == 0;
		uv_mutex_lock(&rc->lock);
		rc->state[i] = ok ? 1 : -1;
		rc->msg[i] = ok ? NULL : strbuf_detach(&err, NULL);
		uv_mutex_unlock(&rc->lock);
		strbuf_release(&err);
	}
}

static void rc_work_done(uv_work_t *w, int status)
{
	struct readiness *rc = w->data;
	(void)status;
	rc->work_done = 1;
	rc_answer(rc);
	rc_free(rc);
}

static void rc_timeout(uv_timer_t *t)
{
	rc_answer(t->data);
}

static void rc_client_gone(struct grpc_call *call, enum grpc_code code, void *arg)
{
	struct readiness *rc = arg;
	(void)call;
	(void)code;
	rc->call = NULL;
}

static void readiness_check(struct grpc_call *call, const uint8_t *data, size_t len, void *arg)
{
	struct praefect *p = arg;
	Gitaly__ReadinessCheckRequest *req = gitaly__readiness_check_request__unpack(NULL, len, data);
	struct readiness *rc;
	int64_t timeout_ns = 0;
	struct strbuf why = STRBUF_INIT;

	if (!req) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "cannot decode request", NULL);
		return;
	}
	/* as upstream: a timeout that is not a valid positive duration means none */
	if (req->timeout && pb_duration_check(1, req->timeout->seconds, req->timeout->nanos, &timeout_ns, &why) < 0)
		timeout_ns = 0;
	strbuf_release(&why);
	gitaly__readiness_check_request__free_unpacked(req, NULL);
	rc = xcalloc(1, sizeof(*rc));
	rc->p = p;
	rc->call = call;
	rc->nr = cmd_checks_count();
	rc->state = xcalloc(rc->nr, sizeof(*rc->state));
	rc->msg = xcalloc(rc->nr, sizeof(*rc->msg));
	uv_mutex_init(&rc->lock);
	uv_timer_init(p->loop, &rc->timer);
	rc->timer.data = rc;
	if (timeout_ns > 0)
		uv_timer_start(&rc->timer, rc_timeout, (uint64_t)(timeout_ns + 999999) / 1000000, 0);
	rc->work.data = rc;
	grpc_call_on_close(call, rc_client_gone, rc);
	if (uv_queue_work(p->loop, &rc->work, rc_work, rc_work_done) < 0) {
		rc->work_done = 1;
		grpc_call_on_close(call, NULL, NULL);
		grpc_call_finish(call, GRPC_INTERNAL, "cannot start the checks", NULL);
		rc->call = NULL;
		uv_close((uv_handle_t *)&rc->timer, rc_timer_closed);
	}
}

void intercept_register_server(struct praefect *p)
{
	praefect_add_unary(p->server, "/gitaly.ServerService/ReadinessCheck", readiness_check, p);
	praefect_add_unary(p->server, "/gitaly.ServerService/DiskStatistics", disk_statistics, p);
	praefect_add_unary(p->server, "/gitaly.ServerService/ClockSynced", clock_synced, p);
}

/* go-grpc-prometheus's server series, fed by grpc_server_stats hooks. */
#include "grpc.h"
#include "grpc/server.h"
#include "rpc/registry.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

enum { STARTED, HANDLED, RECEIVED, SENT, HANDLING, NR_FAMILIES };

#define CALL_LABELS "grpc_type", "grpc_service", "grpc_method"
static const struct metric_desc families[NR_FAMILIES] = {
	[STARTED] = { "grpc_server_started_total", "Total number of RPCs started on the server.",
		      METRIC_COUNTER, { CALL_LABELS } },
	[HANDLED] = { "grpc_server_handled_total",
		      "Total number of RPCs completed on the server, regardless of success or failure.",
		      METRIC_COUNTER, { CALL_LABELS, "grpc_code" } },
	[RECEIVED] = { "grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.",
		       METRIC_COUNTER, { CALL_LABELS } },
	[SENT] = { "grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.",
		   METRIC_COUNTER, { CALL_LABELS } },
	[HANDLING] = { "grpc_server_handling_seconds",
		       "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
		       METRIC_HISTOGRAM, { CALL_LABELS } },
};

struct metrics_grpc {
	struct metric *f[NR_FAMILIES];
	int histogram;
};

/* The three call labels: type, service, method (pointers into `buf`). */
static void call_labels(struct grpc_call *call, int fallback, char *buf, size_t bufsz, const char *lv[3])
{
	const char *path = grpc_call_method(call);
	const char *slash = path[0] == '/' ? strchr(path + 1, '/') : NULL;
	const struct rpc_method *m = fallback ? NULL : rpc_lookup(path, strlen(path));
	size_t n;

	lv[0] = "bidi_stream";
	if (m)
		lv[0] = m->client_streaming ? (m->server_streaming ? "bidi_stream" : "client_stream")
					    : (m->server_streaming ? "server_stream" : "unary");
	else if (!fallback)
		lv[0] = "unary";
	if (!slash) {
		lv[1] = "";
		lv[2] = path;
		return;
	}
	n = MIN((size_t)(slash - path - 1), bufsz - 1);
	memcpy(buf, path + 1, n);
	buf[n] = '\0';
	lv[1] = buf;
	lv[2] = slash + 1;
}

static void on_start(struct grpc_call *call, void *data)
{
	struct metrics_grpc *g = data;
	char svc[256];
	const char *lv[3];
	call_labels(call, grpc_call_is_fallback(call), svc, sizeof(svc), lv);
	metric_inc(g->f[STARTED], lv);
}

static void on_msg(struct grpc_call *call, struct metric *f)
{
	char svc[256];
	const char *lv[3];
	call_labels(call, grpc_call_is_fallback(call), svc, sizeof(svc), lv);
	metric_inc(f, lv);
}

static void on_msg_recv(struct grpc_call *call, void *data)
{
	on_msg(call, ((struct metrics_grpc *)data)->f[RECEIVED]);
}

static void on_msg_sent(struct grpc_call *call, void *data)
{
	on_msg(call, ((struct metrics_grpc *)data)->f[SENT]);
}

static void on_end(struct grpc_call *call, enum grpc_code code, uint64_t ns, void *data)
{
	struct metrics_grpc *g = data;
	char svc[256];
	const char *lv[4];
	call_labels(call, grpc_call_is_fallback(call), svc, sizeof(svc), lv);
	lv[3] = grpc_code_name(code);
	metric_inc(g->f[HANDLED], lv);
	if (g->histogram)
		metric_observe(g->f[HANDLING], lv, (double)ns / 1e9);
}

struct metrics_grpc *metrics_grpc_attach(struct metrics *m, struct grpc_server *s, int handling_histogram)
{
	struct metrics_grpc *g = xcalloc(1, sizeof(*g));
	struct grpc_server_stats st = { on_start, on_msg_recv, on_msg_sent, on_end, g };

	g->histogram = handling_histogram;
	for (size_t i = 0; i < NR_FAMILIES; i++)
		if (i != HANDLING || handling_histogram)
			g->f[i] = metrics_register(m, &families[i]);
	grpc_server_set_stats(s, &st);
	return g;
}

void metrics_grpc_free(struct metrics_grpc *g)
{
	free(g);
}

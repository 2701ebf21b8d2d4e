/* One structured log line per finished call. */
#include "server.h"
#include "../base/log.h"
#include "../base/util.h"

#include <string.h>
#include <time.h>

/* The call's start on the wall clock, as upstream's grpc.start_time (RFC 3339, UTC). */
static void log_start_time(struct log_entry *e, struct grpc_call *call)
{
	struct timespec ts;
	uint64_t ago = now_ns() - grpc_call_start_ns(call);
	time_t t;
	struct tm tm;
	char buf[40];

	clock_gettime(CLOCK_REALTIME, &ts);
	t = (time_t)(((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec - ago) / 1000000000ULL);
	if (!gmtime_r(&t, &tm) || !strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm))
		return;
	log_str(e, "grpc.start_time", buf);
}

void grpc_log_call(struct grpc_call *call, enum grpc_code code, uint64_t ns)
{
	grpc_log_call_extra(call, code, ns, NULL, NULL);
}

void grpc_log_call_extra(struct grpc_call *call, enum grpc_code code, uint64_t ns,
			 void (*extra)(struct log_entry *e, void *arg), void *arg)
{
	struct log_entry e;
	const struct grpc_metadata *md = grpc_call_metadata(call);
	const struct grpc_metadata *tags = grpc_call_tags(call);
	const char *method = grpc_call_method(call);
	const char *slash = method[0] == '/' ? strchr(method + 1, '/') : NULL;
	const char *corr = grpc_metadata_value(md, "x-gitlab-correlation-id");
	const char *dl, *client;

	if (!strcmp(method, GRPC_HEALTH_CHECK))
		return;
	if (!log_begin(&e, code == GRPC_OK ? LOG_INFO : LOG_WARN, "finished call"))
		return;
	if (slash) {
		log_strn(&e, "grpc.service", method + 1, (size_t)(slash - method - 1));
		log_str(&e, "grpc.method", slash + 1);
	} else {
		log_str(&e, "grpc.method", method);
	}
	log_str(&e, "grpc.code", grpc_code_name(code));
	log_double(&e, "grpc.time_ms", (double)ns / 1e6);
	/* upstream's request-info fields (docs/technical/logging.md) */
	log_str(&e, "grpc.request.fullMethod", method);
	log_start_time(&e, call);
	if (!grpc_call_deadline(call))
		log_str(&e, "grpc.meta.deadline_type", "none");
	else if ((dl = grpc_metadata_value(md, "deadline_type")) && *dl && strcmp(dl, "unknown"))
		log_str(&e, "grpc.meta.deadline_type", dl);
	if ((client = grpc_metadata_value(md, "client_name")) && *client)
		log_str(&e, "grpc.meta.client_name", client);
	log_str(&e, "system", "grpc");
	log_str(&e, "span.kind", "server");
	for (size_t i = 0; tags && i < tags->nr; i++)
		log_str(&e, tags->v[i].key, tags->v[i].value);
	if (extra)
		extra(&e, arg);
	if (corr)
		log_str(&e, "correlation_id", corr);
	log_end(&e);
}

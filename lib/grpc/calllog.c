/* One structured log line per finished call. */
#include "server.h"
#include "../base/log.h"

#include <string.h>

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
	for (size_t i = 0; tags && i < tags->nr; i++)
		log_str(&e, tags->v[i].key, tags->v[i].value);
	if (extra)
		extra(&e, arg);
	if (corr)
		log_str(&e, "correlation_id", corr);
	log_end(&e);
}

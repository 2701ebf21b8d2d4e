/* grpc.health.v1.Health built into every server: SERVING for "" and every registered service. */
#include "server.h"
#include "../base/util.h"
#include "health.pb-c.h"

#include <stdlib.h>
#include <string.h>

static int service_known(struct grpc_server *s, const char *name)
{
	return !*name || grpc_server_has_service(s, name);
}

static int decode_service(const uint8_t *req, size_t len, char **name)
{
	Grpc__Health__V1__HealthCheckRequest *r =
		grpc__health__v1__health_check_request__unpack(NULL, len, req);
	if (!r)
		return -1;
	*name = xstrdup(r->service ? r->service : "");
	grpc__health__v1__health_check_request__free_unpacked(r, NULL);
	return 0;
}

static void send_status(struct grpc_call *call, Grpc__Health__V1__HealthCheckResponse__ServingStatus st, int finish)
{
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	uint8_t buf[16];
	size_t n;
	resp.status = st;
	n = grpc__health__v1__health_check_response__pack(&resp, buf);
	if (finish)
		grpc_call_reply(call, buf, n);
	else
		grpc_call_send(call, buf, n);
}

static void health_check(struct grpc_call *call, const uint8_t *req, size_t len, void *data)
{
	char *name;
	if (decode_service(req, len, &name) < 0) {
		grpc_call_finish(call, GRPC_INTERNAL, "grpc: error unmarshalling request", NULL);
		return;
	}
	if (service_known(grpc_call_server(call), name))
		send_status(call, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING, 1);
	else
		grpc_call_finish(call, GRPC_NOT_FOUND, "unknown service", NULL);
	free(name);
}

/* Watch: one status message, then the stream stays open until the client leaves. */
static void watch_on_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	char *name;
	if (grpc_call_user(call))
		return; /* already answered */
	if (decode_service(msg, len, &name) < 0) {
		grpc_call_finish(call, GRPC_INTERNAL, "grpc: error unmarshalling request", NULL);
		return;
	}
	grpc_call_set_user(call, call);
	send_status(call, service_known(grpc_call_server(call), name)
		    ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
		    : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN, 0);
	free(name);
}

static const struct grpc_call_ops watch_ops = {
	.on_message = watch_on_message,
};

static void health_watch(struct grpc_call *call, void *data)
{
	grpc_call_set_ops(call, &watch_ops, NULL);
}

void grpc_server_add_health(struct grpc_server *s)
{
	grpc_server_add_unary(s, GRPC_HEALTH_CHECK, health_check, NULL);
	grpc_server_add_method(s, GRPC_HEALTH_WATCH, health_watch, NULL);
}

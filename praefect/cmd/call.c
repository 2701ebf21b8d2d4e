/* Calls from a subcommand to the running praefect (its socket_path, else listen_addr). */
#include "cmd/cmd.h"
#include "base/util.h"
#include "grpc/auth.h"
#include "grpc/client.h"
#include "rpc/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct stream_call {
	int done;
	enum grpc_code code;
	struct strbuf *errmsg;
	void (*on_message)(void *arg, const uint8_t *msg, size_t len);
	void *arg;
};

static void sc_message(struct grpc_client_call *call, const uint8_t *msg, size_t len)
{
	struct stream_call *sc = grpc_client_call_user(call);
	if (sc->on_message)
		sc->on_message(sc->arg, msg, len);
}

static void sc_close(struct grpc_client_call *call, enum grpc_code code, const char *message,
		     const struct grpc_metadata *trailers)
{
	struct stream_call *sc = grpc_client_call_user(call);
	sc->done = 1;
	sc->code = code;
	strbuf_addstr(sc->errmsg, message ? message : "");
}

static const struct grpc_client_ops sc_ops = { .on_message = sc_message, .on_close = sc_close };

enum grpc_code cmd_call_praefect(struct praefect_config *cfg, const char *method, const void *req, size_t len,
				 void (*on_message)(void *arg, const uint8_t *msg, size_t len), void *arg,
				 struct strbuf *errmsg)
{
	uv_loop_t *loop = uv_default_loop();
	char *addr = praefect_config_dial_address(cfg);
	struct grpc_channel *ch;
	struct grpc_client_call *call;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct stream_call sc = { 0, GRPC_UNKNOWN, errmsg, on_message, arg };

	if (!rpc_lookup(method, strlen(method)))
		die("method \"%s\" is not in the RPC registry (proto/*.proto)", method);
	if (!addr) {
		strbuf_addstr(errmsg, "no Praefect address configured");
		return GRPC_INVALID_ARGUMENT;
	}
	if (grpc_channel_new(loop, addr, NULL, &ch) < 0) {
		strbuf_addf(errmsg, "error dialing: bad address \"%s\"", addr);
		free(addr);
		return GRPC_INVALID_ARGUMENT;
	}
	free(addr);
	auth_v2_add(&md, cfg->auth_token);
	if (grpc_channel_call(ch, method, &md, 10000, 0, &sc_ops, &sc, &call) < 0) {
		strbuf_addstr(errmsg, "cannot start call");
		sc.code = GRPC_INTERNAL;
		sc.done = 1;
	} else {
		grpc_client_call_send(call, req, len);
		grpc_client_call_close_send(call);
	}
	while (!sc.done)
		uv_run(loop, UV_RUN_ONCE);
	grpc_metadata_release(&md);
	grpc_channel_close(ch);
	uv_run(loop, UV_RUN_DEFAULT);
	return sc.code;
}

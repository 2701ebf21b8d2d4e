/* Calls from a subcommand to the running praefect (its socket_path, else listen_addr). */
#include "cmd/cmd.h"
#include "base/util.h"
#include "grpc/auth.h"
#include "grpc/client.h"
#include "rpc/registry.h"

#include <errno.h>
#include <protobuf-c/protobuf-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

enum grpc_code cmd_call_addr(const char *addr, const char *token, const char *method, const void *req, size_t len,
			     void (*on_message)(void *arg, const uint8_t *msg, size_t len), void *arg,
			     struct strbuf *errmsg)
{
	uv_loop_t *loop = uv_default_loop();
	struct grpc_channel *ch;
	struct grpc_client_call *call;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct stream_call sc = { 0, GRPC_UNKNOWN, errmsg, on_message, arg };

	if (!rpc_lookup(method, strlen(method)))
		die("method \"%s\" is not in the RPC registry (proto/*.proto)", method);
	if (grpc_channel_new(loop, addr, NULL, &ch) < 0) {
		strbuf_addf(errmsg, "error dialing: bad address \"%s\"", addr);
		return GRPC_INVALID_ARGUMENT;
	}
	auth_v2_add(&md, token);
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

enum grpc_code cmd_call_praefect(struct praefect_config *cfg, const char *method, const void *req, size_t len,
				 void (*on_message)(void *arg, const uint8_t *msg, size_t len), void *arg,
				 struct strbuf *errmsg)
{
	char *addr = praefect_config_dial_address(cfg);
	enum grpc_code code;

	if (!addr) {
		strbuf_addstr(errmsg, "no Praefect address configured");
		return GRPC_INVALID_ARGUMENT;
	}
	code = cmd_call_addr(addr, cfg->auth_token, method, req, len, on_message, arg, errmsg);
	free(addr);
	return code;
}

void cmd_keep_message(void *arg, const uint8_t *msg, size_t len)
{
	struct strbuf *resp = arg;
	strbuf_reset(resp);
	strbuf_add(resp, msg, len);
}

enum grpc_code cmd_call_unary(struct praefect_config *cfg, const char *method, const ProtobufCMessage *req,
			      struct strbuf *resp, struct strbuf *errmsg)
{
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = xmalloc(len ? len : 1);
	struct strbuf desc = STRBUF_INIT;
	enum grpc_code code;

	protobuf_c_message_pack(req, buf);
	code = cmd_call_praefect(cfg, method, buf, len, cmd_keep_message, resp, &desc);
	free(buf);
	if (code != GRPC_OK)
		strbuf_addf(errmsg, "rpc error: code = %s desc = %s", grpc_code_name(code), desc.buf);
	strbuf_release(&desc);
	return code;
}

int cmd_fatal(const char *fmt, ...)
{
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	va_list ap;

	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y/%m/%d %H:%M:%S", &tm);
	fprintf(stderr, "%s ", stamp);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

int cmd_parse_int64(const char *flag, const char *value, int64_t min, int64_t *out, struct strbuf *err)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(value, &end, 0);
	if (!*value || *end || errno || v < min || (min >= 0 && *value == '-')) {
		strbuf_addf(err, "invalid value \"%s\" for flag -%s: parse error", value, flag);
		return -1;
	}
	*out = v;
	return 0;
}

/* `praefect dataloss` and `praefect accept-dataloss`: talk to the running praefect. */
#include "cmd.h"
#include "base/util.h"
#include "grpc/auth.h"
#include "grpc/client.h"
#include "praefect.pb-c.h"

#include <stdarg.h>
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

/* --- dataloss --- */

struct dataloss_print {
	int found;
};

static void indent(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void indent(int level, const char *fmt, ...)
{
	va_list ap;
	printf("%*s", level * 2, "");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void print_dataloss(void *arg, const uint8_t *msg, size_t len)
{
	struct dataloss_print *dp = arg;
	Gitaly__DatalossResponse *r = gitaly__dataloss_response__unpack(NULL, len, msg);
	if (!r)
		return;
	if (r->n_repositories)
		indent(1, "Repositories:");
	for (size_t i = 0; i < r->n_repositories; i++) {
		Gitaly__DatalossResponse__Repository *repo = r->repositories[i];
		dp->found = 1;
		indent(2, "%s%s:", repo->relative_path, repo->unavailable ? " (unavailable)" : "");
		indent(3, "Primary: %s", repo->primary && *repo->primary ? repo->primary : "No Primary");
		indent(3, "In-Sync Storages:");
		for (size_t k = 0; k < repo->n_storages; k++) {
			Gitaly__DatalossResponse__Repository__Storage *s = repo->storages[k];
			if (s->behind_by == 0)
				indent(4, "%s%s%s", s->name, s->assigned ? ", assigned host" : "",
				       s->healthy ? "" : ", unhealthy");
		}
		indent(3, "Outdated Storages:");
		for (size_t k = 0; k < repo->n_storages; k++) {
			Gitaly__DatalossResponse__Repository__Storage *s = repo->storages[k];
			if (s->behind_by != 0)
				indent(4, "%s is behind by %lld change%s or less%s%s", s->name, (long long)s->behind_by,
				       s->behind_by > 1 ? "s" : "", s->assigned ? ", assigned host" : "",
				       s->healthy ? "" : ", unhealthy");
		}
	}
	gitaly__dataloss_response__free_unpacked(r, NULL);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int cmd_dataloss(struct praefect_config *cfg, int argc, char **argv)
{
	const char *only = NULL;
	int partial = 0;
	struct cmd_flag flags[] = {
		{ "virtual-storage", 0, &only, NULL },
		{ "partially-unavailable", 1, NULL, &partial },
	};
	struct strbuf err = STRBUF_INIT;
	const char **names;
	size_t n = 0;

	if (cmd_parse_flags("dataloss", argc, argv, flags, ARRAY_SIZE(flags), &err) < 0) {
		fprintf(stderr, "%s\n", err.buf);
		strbuf_release(&err);
		return 1;
	}
	names = xcalloc(cfg->nr_vs + 1, sizeof(*names));
	if (only && *only)
		names[n++] = only;
	else
		for (size_t i = 0; i < cfg->nr_vs; i++)
			names[n++] = cfg->vs[i].name;
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		Gitaly__DatalossRequest req = GITALY__DATALOSS_REQUEST__INIT;
		struct dataloss_print dp = { 0 };
		uint8_t buf[512];
		size_t len;
		enum grpc_code code;
		req.virtual_storage = (char *)names[i];
		req.include_partially_replicated = partial;
		if (gitaly__dataloss_request__get_packed_size(&req) > sizeof(buf)) {
			fprintf(stderr, "virtual storage name too long\n");
			return 1;
		}
		len = gitaly__dataloss_request__pack(&req, buf);
		indent(0, "Virtual storage: %s", names[i]);
		fflush(stdout);
		strbuf_reset(&err);
		code = cmd_call_praefect(cfg, "/gitaly.PraefectInfoService/Dataloss", buf, len, print_dataloss, &dp, &err);
		if (code != GRPC_OK) {
			fflush(stdout);
			fprintf(stderr, "getting response: rpc error: code = %s desc = %s\n", grpc_code_name(code), err.buf);
			free(names);
			strbuf_release(&err);
			return 1;
		}
		if (!dp.found)
			indent(1, "%s", partial ? "All repositories are fully available on all assigned storages!"
						: "All repositories are available!");
	}
	free(names);
	strbuf_release(&err);
	return 0;
}

/* --- accept-dataloss --- */

int cmd_accept_dataloss(struct praefect_config *cfg, int argc, char **argv)
{
	const char *vs = NULL, *path = NULL, *storage = NULL;
	struct cmd_flag flags[] = {
		{ "virtual-storage", 0, &vs, NULL },
		{ "relative-path", 0, &path, NULL },
		{ "authoritative-storage", 0, &storage, NULL },
	};
	struct strbuf err = STRBUF_INIT, missing = STRBUF_INIT;
	Gitaly__SetAuthoritativeStorageRequest req = GITALY__SET_AUTHORITATIVE_STORAGE_REQUEST__INIT;
	uint8_t *buf;
	size_t len;
	enum grpc_code code;
	int rc = 1;

	if (cmd_parse_flags("accept-dataloss", argc, argv, flags, ARRAY_SIZE(flags), &err) < 0) {
		fprintf(stderr, "%s\n", err.buf);
		goto out;
	}
	for (size_t i = 0; i < ARRAY_SIZE(flags); i++)
		if (!*flags[i].value || !**flags[i].value)
			strbuf_addf(&missing, "%s%s", missing.len ? ", " : "", flags[i].name);
	if (missing.len) {
		fprintf(stderr, "Required flag%s \"%s\" not set\n", strchr(missing.buf, ',') ? "s" : "", missing.buf);
		goto out;
	}
	req.virtual_storage = (char *)vs;
	req.relative_path = (char *)path;
	req.authoritative_storage = (char *)storage;
	len = gitaly__set_authoritative_storage_request__get_packed_size(&req);
	buf = xmalloc(len ? len : 1);
	gitaly__set_authoritative_storage_request__pack(&req, buf);
	code = cmd_call_praefect(cfg, "/gitaly.PraefectInfoService/SetAuthoritativeStorage", buf, len, NULL, NULL, &err);
	free(buf);
	if (code != GRPC_OK)
		fprintf(stderr, "set authoritative storage: rpc error: code = %s desc = %s\n", grpc_code_name(code),
			err.buf);
	else
		rc = 0;
out:
	strbuf_release(&err);
	strbuf_release(&missing);
	return rc;
}

/*
 * The node check behind `praefect dial-nodes` and `praefect check`: one
 * check per distinct node address (covering every storage served there),
 * each line "[<address>]: <message>" as upstream prints them
 * (docs/technical/praefect-cli.md, "dial-nodes").
 */
#include "cmd/cmd.h"
#include "base/util.h"
#include "grpc/auth.h"
#include "grpc/client.h"
#include "health.pb-c.h"
#include "server.pb-c.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct ping_storage {
	const char *name;
	struct strbuf vs;       /* "[default other]": Go's %v of the virtual storage list */
};

struct dial_wait {
	int ready;
};

struct ping {
	const char *address, *token;
	struct ping_storage *storages;
	size_t nr;
	int quiet;
	int failed;
	struct grpc_channel *ch;        /* NULL: the address did not parse */
	int checked;
	struct dial_wait wait;
};

static void say(const struct ping *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const struct ping *p, const char *fmt, ...)
{
	va_list ap;
	if (p->quiet)
		return;
	printf("[%s]: ", p->address);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* Group the configured nodes by address, in config order. */
static struct ping *ping_set(const struct praefect_config *cfg, int quiet, size_t *nr)
{
	struct ping *set = NULL;
	size_t n = 0, alloc = 0;
	for (size_t i = 0; i < cfg->nr_vs; i++)
		for (size_t j = 0; j < cfg->vs[i].nr_nodes; j++) {
			const struct praefect_node_cfg *node = &cfg->vs[i].nodes[j];
			struct ping *p = NULL;
			struct ping_storage *s = NULL;
			for (size_t k = 0; k < n && !p; k++)
				if (!strcmp(set[k].address, node->address))
					p = &set[k];
			if (!p) {
				ALLOC_GROW(set, n + 1, alloc);
				p = &set[n++];
				memset(p, 0, sizeof(*p));
				p->address = node->address;
				p->quiet = quiet;
			}
			p->token = node->token;    /* upstream keeps the last one seen */
			for (size_t k = 0; k < p->nr && !s; k++)
				if (!strcmp(p->storages[k].name, node->storage))
					s = &p->storages[k];
			if (!s) {
				p->storages = xrealloc(p->storages, (p->nr + 1) * sizeof(*p->storages));
				s = &p->storages[p->nr++];
				s->name = node->storage;
				strbuf_init(&s->vs, 0);
				strbuf_addch(&s->vs, '[');
			} else {
				strbuf_setlen(&s->vs, s->vs.len - 1);
				strbuf_addch(&s->vs, ' ');
			}
			strbuf_addf(&s->vs, "%s]", cfg->vs[i].name);
		}
	*nr = n;
	return set;
}

static void on_state(struct grpc_channel *ch, enum grpc_channel_state st, void *data)
{
	struct dial_wait *w = data;
	if (st == GRPC_CHANNEL_READY)
		w->ready = 1;
}

static void on_tick(uv_timer_t *t)
{
	(void)t;
}

static void check_node(struct ping *p, uv_loop_t *loop, uint64_t deadline);

/*
 * Connect every node at once, retrying as a blocking dial does, and check
 * each as soon as it is connected; what is not connected by the deadline
 * failed to dial.
 */
static void dial_all(uv_loop_t *loop, struct ping *set, size_t n, uint64_t deadline)
{
	uv_timer_t tick;
	int waiting = 1;

	for (size_t i = 0; i < n; i++) {
		struct grpc_channel_opts opts;
		say(&set[i], "dialing...");
		grpc_channel_opts_default(&opts);
		opts.on_state = on_state;
		opts.state_data = &set[i].wait;
		opts.backoff_initial_ms = 100;
		opts.backoff_max_ms = 1000;
		if (grpc_channel_new(loop, set[i].address, &opts, &set[i].ch) < 0)
			set[i].ch = NULL;
	}
	uv_timer_init(loop, &tick);
	uv_timer_start(&tick, on_tick, 20, 20);
	while (waiting && now_ms() < deadline) {
		waiting = 0;
		for (size_t i = 0; i < n; i++) {
			if (!set[i].ch || set[i].checked)
				continue;
			if (set[i].wait.ready) {
				set[i].checked = 1;
				check_node(&set[i], loop, deadline);
				continue;
			}
			waiting = 1;
			if (grpc_channel_state(set[i].ch) == GRPC_CHANNEL_IDLE ||
			    grpc_channel_state(set[i].ch) == GRPC_CHANNEL_TRANSIENT_FAILURE)
				grpc_channel_connect(set[i].ch);
		}
		if (waiting)
			uv_run(loop, UV_RUN_ONCE);
	}
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

static uint64_t left(uint64_t deadline)
{
	uint64_t now = now_ms();
	return deadline > now + 1 ? deadline - now : 1;
}

static int consistent(struct ping *p, uv_loop_t *loop, struct grpc_channel *ch, const struct grpc_metadata *md,
		      uint64_t deadline)
{
	struct strbuf resp = STRBUF_INIT, msg = STRBUF_INIT;
	Gitaly__ServerInfoResponse *info;
	enum grpc_code code;
	int ok = 1;
	char *seen, *found;

	if (!p->nr) {
		say(p, "ERROR: current configuration has no storages");
		return 0;
	}
	code = grpc_unary_sync(loop, ch, "/gitaly.ServerService/ServerInfo", md, "", 0, left(deadline), &resp, &msg);
	if (code != GRPC_OK) {
		say(p, "ERROR: failed to receive state from the remote: rpc error: code = %s desc = %s",
		    grpc_code_name(code), msg.buf);
		strbuf_release(&resp);
		strbuf_release(&msg);
		return 0;
	}
	info = gitaly__server_info_response__unpack(NULL, resp.len, (const uint8_t *)resp.buf);
	strbuf_release(&resp);
	strbuf_release(&msg);
	if (!info || !info->n_storage_statuses) {
		say(p, "ERROR: remote has no configured storages");
		if (info)
			gitaly__server_info_response__free_unpacked(info, NULL);
		return 0;
	}
	seen = xcalloc(p->nr, 1);
	found = xcalloc(p->nr, 1);
	for (size_t i = 0; i < info->n_storage_statuses; i++) {
		Gitaly__ServerInfoResponse__StorageStatus *st = info->storage_statuses[i];
		size_t k;
		for (k = 0; k < p->nr; k++)
			if (!strcmp(p->storages[k].name, st->storage_name))
				break;
		if (k == p->nr)
			continue;   /* served there, not configured here */
		if (seen[k]) {
			say(p, "ERROR: remote has duplicated storage: \"%s\"", st->storage_name);
			ok = 0;
			continue;
		}
		seen[k] = 1;
		if (st->readable && st->writeable) {
			say(p, "SUCCESS: confirmed Gitaly storage \"%s\" in virtual storages %s is served",
			    st->storage_name, p->storages[k].vs.buf);
			found[k] = 1;
		} else {
			say(p, "ERROR: storage \"%s\" is not readable or writable", st->storage_name);
			ok = 0;
		}
	}
	for (size_t k = 0; k < p->nr; k++)
		if (!found[k]) {
			say(p, "ERROR: configured storage was not reported by remote: \"%s\"", p->storages[k].name);
			ok = 0;
		}
	free(seen);
	free(found);
	gitaly__server_info_response__free_unpacked(info, NULL);
	return ok;
}

/* After dial_all(): the rest of one node's check on its connection. */
static void check_node(struct ping *p, uv_loop_t *loop, uint64_t deadline)
{
	struct grpc_channel *ch = p->ch;
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct strbuf resp = STRBUF_INIT, msg = STRBUF_INIT;
	Grpc__Health__V1__HealthCheckResponse *h;
	enum grpc_code code;

	p->failed = 1;
	if (!ch) {
		say(p, "ERROR: dialing failed: failed to dial \"%s\": invalid address", p->address);
		return;
	}
	if (!p->wait.ready) {
		say(p, "ERROR: dialing failed: context deadline exceeded");
		goto out;
	}
	say(p, "dialed successfully!");
	if (p->token && *p->token)
		auth_v2_add(&md, p->token);
	say(p, "checking health...");
	code = grpc_unary_sync(loop, ch, "/grpc.health.v1.Health/Check", &md, "", 0, left(deadline), &resp, &msg);
	if (code != GRPC_OK) {
		say(p, "ERROR: unable to request health check: rpc error: code = %s desc = %s", grpc_code_name(code),
		    msg.buf);
		goto out;
	}
	h = grpc__health__v1__health_check_response__unpack(NULL, resp.len, (const uint8_t *)resp.buf);
	if (!h || h->status != GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) {
		const ProtobufCEnumValue *v = h ? protobuf_c_enum_descriptor_get_value(
			&grpc__health__v1__health_check_response__serving_status__descriptor, h->status) : NULL;
		say(p, "ERROR: health check did not report serving, instead reported: %s", v ? v->name : "UNKNOWN");
		if (h)
			grpc__health__v1__health_check_response__free_unpacked(h, NULL);
		goto out;
	}
	grpc__health__v1__health_check_response__free_unpacked(h, NULL);
	say(p, "SUCCESS: node is healthy!");
	say(p, "checking consistency...");
	if (!consistent(p, loop, ch, &md, deadline)) {
		say(p, "ERROR: consistency check failed");
		goto out;
	}
	say(p, "SUCCESS: node configuration is consistent!");
	p->failed = 0;
out:
	strbuf_release(&resp);
	strbuf_release(&msg);
	grpc_metadata_release(&md);
	grpc_channel_close(ch);
	uv_run(loop, UV_RUN_NOWAIT);
}

int cmd_ping_nodes(const struct praefect_config *cfg, uint64_t timeout_ms, int quiet, struct strbuf *failed)
{
	uv_loop_t loop_s, *loop = &loop_s;     /* its own: ReadinessCheck runs it on a worker thread */
	uint64_t deadline = now_ms() + timeout_ms;
	size_t n;
	struct ping *set = ping_set(cfg, quiet, &n);
	int nr_failed = 0;

	uv_loop_init(loop);
	dial_all(loop, set, n, deadline);
	for (size_t i = 0; i < n; i++) {
		if (!set[i].checked)
			check_node(&set[i], loop, deadline);
		if (set[i].failed) {
			strbuf_addf(failed, "%s%s", nr_failed ? ", " : "", set[i].address);
			nr_failed++;
		}
	}
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < set[i].nr; k++)
			strbuf_release(&set[i].storages[k].vs);
		free(set[i].storages);
	}
	free(set);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	return nr_failed;
}

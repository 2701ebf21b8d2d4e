/*
 * The praefect process: set up every component from the config, serve until
 * a signal or an upgrade hand-over, then stop the components in order. One
 * `struct praefect` per process, owned here and passed to every component.
 */
#include "praefect.h"
#include "cmd/cmd.h"
#include "transactions/transactions.h"
#include "coordinator/proxy.h"
#include "metrics/series.h"
#include "backchannel/backchannel.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "store/pg-admin.h"
#include "grpc/auth.h"
#include "upgrade/upgrade.h"
#include "h2/io.h"

#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STARTUP_HEALTH_WAIT_MS 3000

/* the context of the TLS listener (tls_listen_addr), if any */
static struct ssl_ctx_st *server_tls_ctx;

static enum grpc_code on_call_start(struct grpc_call *call, struct strbuf *msg, void *data)
{
	struct praefect *p = data;
	praefect_count_method_type(p, call);
	return auth_check_call(call, p->cfg.auth_token, p->cfg.auth_transitioning, msg);
}

static void on_call_end(struct grpc_call *call, enum grpc_code code, uint64_t ns, void *data)
{
	grpc_log_call(call, code, ns);
}

static void on_stopped(struct grpc_server *s, void *arg)
{
	struct praefect *p = arg;
	coordinator_stop(p);
	listener_stop(p);
	praefect_metrics_stop(p);
	route_release_held_reads(p, 1);
	route_release_held_elections(p, 0);
	replicator_stop(p);
	verifier_stop(p);
	schedule_stop(p);
	nodes_stop(p);
	uv_close((uv_handle_t *)&p->sig_term, NULL);
	uv_close((uv_handle_t *)&p->sig_int, NULL);
}

static void stop_serving(struct praefect *p)
{
	uv_signal_stop(&p->sig_term);
	uv_signal_stop(&p->sig_int);
	grpc_server_shutdown(p->server, p->cfg.graceful_stop_timeout_ms, on_stopped, p);
}

static void on_signal(uv_signal_t *h, int signum)
{
	log_msgf(LOG_INFO, "received %s, stopping", strsignal(signum));
	stop_serving(h->data);
}

/* A new praefect took over the listeners: drain and exit, as on SIGTERM. */
static void on_upgrade_handover(void *arg)
{
	stop_serving(arg);
}

static void listen_or_die(struct praefect *p, const char *addr)
{
	char bound[256];
	int rc = upgrade_listen(p->upgrade, p->server, addr, bound, sizeof(bound));
	if (rc < 0)
		die("cannot listen on \"%s\": %s", addr, uv_strerror(rc));
	log_msgf(LOG_INFO, !strncmp(addr, "tls://", 6) ? "listening with TLS on %s" : "listening on %s", bound);
}

/* Wait until every node answered a health check, for at most STARTUP_HEALTH_WAIT_MS. */
static void wait_for_health(struct praefect *p)
{
	uint64_t until = now_ms() + STARTUP_HEALTH_WAIT_MS;
	int waiting = 1;
	while (waiting && now_ms() < until) {
		waiting = 0;
		for (size_t i = 0; i < p->nr_vs; i++)
			for (size_t j = 0; j < p->vs[i].nr_nodes; j++)
				waiting |= !p->vs[i].nodes[j].healthy;
		if (waiting)
			uv_run(p->loop, UV_RUN_ONCE);
	}
}

const struct rpc_method *praefect_method(const char *path)
{
	const struct rpc_method *m = rpc_lookup(path, strlen(path));
	if (!m)
		die("method \"%s\" is not in the RPC registry (proto/*.proto)", path);
	return m;
}

void praefect_add_unary(struct grpc_server *s, const char *path, grpc_unary_fn fn, void *data)
{
	grpc_server_add_unary(s, praefect_method(path)->name, fn, data);
}

/* The methods praefect calls on its nodes, resolved once. */
static void resolve_calls(struct praefect *p)
{
	p->calls.health_check = praefect_method("/grpc.health.v1.Health/Check");
	p->calls.replicate_repository = praefect_method("/gitaly.RepositoryService/ReplicateRepository");
	p->calls.remove_repository = praefect_method("/gitaly.RepositoryService/RemoveRepository");
	p->calls.server_info = praefect_method("/gitaly.ServerService/ServerInfo");
	p->calls.get_object_pool = praefect_method("/gitaly.ObjectPoolService/GetObjectPool");
	p->calls.delete_object_pool = praefect_method("/gitaly.ObjectPoolService/DeleteObjectPool");
	p->calls.remove_all = praefect_method("/gitaly.RepositoryService/RemoveAll");
	p->calls.set_replica_info = praefect_method("/gitaly.ClusterReplicaService/SetReplicaInfo");
	p->calls.ssh_upload_pack_sc = praefect_method("/gitaly.SSHService/SSHUploadPackWithSidechannel");
	p->calls.post_upload_pack_sc = praefect_method("/gitaly.SmartHTTPService/PostUploadPackWithSidechannel");
	p->calls.ssh_receive_pack = praefect_method("/gitaly.SSHService/SSHReceivePack");
	p->calls.post_receive_pack = praefect_method("/gitaly.SmartHTTPService/PostReceivePack");
}

/* Free what the components left once the loop has nothing more to run. */
static void praefect_free(struct praefect *p)
{
	repos_free(p);
	hashmap_release(&p->sidechannels);
	if (p->client_bc)
		bc_server_free(p->client_bc);
	hashmap_release(&p->reserved_paths);
	hashmap_release(&p->reconcile_marked);
	replicator_free(p);
	verifier_free(p);
	cleaner_free(p);
	rebalancer_free(p);
	nodes_free(p);
	tx_manager_free(p->txm);
	grpc_server_free(p->bc_server);
	praefect_metrics_free(p);          /* after both servers: their calls are counted until they go */
	free(p->bc_client);
	free(p->name);
	praefect_config_release(&p->cfg);
	free(p);
}

int praefect_serve(struct praefect_config *cfg)
{
	struct praefect *p = xcalloc(1, sizeof(*p));
	struct strbuf err = STRBUF_INIT;
	char host[256] = "praefect";

	p->cfg = *cfg;
	p->loop = uv_default_loop();
	p->upgrade = upgrade_new(p->loop);
	resolve_calls(p);
	p->health_interval_ms = p->cfg.health_check_interval_ms;
	p->health_timeout_ms = p->cfg.health_check_timeout_ms;
	p->unhealthy_after_ms = p->cfg.unhealthy_after_ms;
	gethostname(host, sizeof(host) - 1);
	{
		/* Upstream's name: host and listen address (or socket path), stable across restarts,
		 * so health votes and write intents (recover_writes) stay this praefect's own after
		 * a restart. See docs/technical/multi-praefect.md. */
		struct strbuf name = STRBUF_INIT;
		const char *addr = p->cfg.listen_addr && *p->cfg.listen_addr ? p->cfg.listen_addr
			: p->cfg.socket_path ? p->cfg.socket_path : "";
		size_t n = strlen(addr);

		/* a port picked at start-up names no one: the socket path does, else only this run */
		if (n >= 2 && !strcmp(addr + n - 2, ":0") && p->cfg.socket_path && *p->cfg.socket_path)
			strbuf_addf(&name, "%s:%s", host, p->cfg.socket_path);
		else if (n >= 2 && !strcmp(addr + n - 2, ":0"))
			strbuf_addf(&name, "%s:%s#%d", host, addr, (int)getpid());
		else
			strbuf_addf(&name, "%s:%s", host, addr);
		p->name = strbuf_detach(&name, NULL);
	}
	log_msgf(LOG_INFO, "Starting Praefect %s", PRAEFECT_VERSION);

	if (p->cfg.db_postgres) {
		struct store_pg_params params;
		char port[16];

		praefect_config_pg_params(&p->cfg, &params, port);
		if (store_open_pg(p->loop, &params, &p->store, &err) < 0)
			die("opening the tracking store: %s", err.buf);
	} else {
		char *dir = xstrdup(p->cfg.sqlite_path);
		fs_mkdir_p(dirname(dir), 0700);
		free(dir);
		if (store_open_sqlite(p->loop, p->cfg.sqlite_path, &p->store, &err) < 0)
			die("opening the tracking store \"%s\": %s", p->cfg.sqlite_path, err.buf);
	}

	nodes_init(p);
	hashmap_init(&p->interned);
	hashmap_init(&p->reserved_paths);
	hashmap_init(&p->reconcile_marked);
	if (repos_load(p, &err) < 0 || suspects_load(p, &err) < 0)
		die("%s", err.buf);

	p->server = grpc_server_new(p->loop, NULL);
	{
		struct grpc_server_hooks hooks = { on_call_start, on_call_end, p };
		grpc_server_set_hooks(p->server, &hooks);
	}
	praefect_metrics_init(p);
	listener_start(p);
	grpc_server_add_health(p->server);
	intercept_register(p);
	intercept_register_server(p);
	intercept_register_remove_all(p);
	info_register(p);
	p->txm = tx_manager_new();
	tx_manager_set_metrics(p->txm, pm(p, PM_TX_ACTIONS), pm(p, PM_TX_DELAY), pm(p, PM_SUBTX));
	tx_register_service(p->txm, p->server);
	/* nodes call RefTransaction back over the backchannel (no token there, as upstream) */
	p->bc_server = grpc_server_new(p->loop, NULL);
	praefect_metrics_count_backchannel(p);
	tx_register_service(p->txm, p->bc_server);
	p->bc_client = xcalloc(1, sizeof(*p->bc_client));
	p->bc_client->loop = p->loop;
	p->bc_client->serve = p->bc_server;
	p->bc_client->max_window = (uint32_t)p->cfg.yamux_max_window;
	/* the nodes' streams to us: sidechannels, or gRPC (votes) for bc_server */
	p->bc_client->on_stream = scproxy_node_stream;
	p->bc_client->stream_data = p;
	/* clients may connect with the backchannel handshake, for sidechannels */
	hashmap_init(&p->sidechannels);
	p->client_bc = bc_server_new(p->server, (uint32_t)p->cfg.yamux_max_window);
	p->transactions = 1;
	coordinator_register(p);

	schedule_init(p);
	if (nodes_start(p, &err) < 0)
		die("%s", err.buf);
	schedule_start(p, SCHEDULE_WITH_NODES);
	/*
	 * Health before serving, so the first calls can be routed: wait until
	 * every node answered a check, for at most STARTUP_HEALTH_WAIT_MS (a node
	 * that is down must not keep praefect from serving the others).
	 */
	wait_for_health(p);
	replicator_start(p);
	verifier_init(p);
	cleaner_init(p);
	schedule_start(p, SCHEDULE_WITH_SERVING);
	/* what a previous run left outdated is repaired now, not after the first period */
	schedule_kick(p, TASK_RECONCILE);

	if (p->cfg.socket_path && *p->cfg.socket_path) {
		struct strbuf a = STRBUF_INIT;
		strbuf_addf(&a, "unix:%s", p->cfg.socket_path);
		listen_or_die(p, a.buf);
		strbuf_release(&a);
	}
	if (p->cfg.listen_addr && *p->cfg.listen_addr)
		listen_or_die(p, p->cfg.listen_addr);
	if (p->cfg.tls_listen_addr && *p->cfg.tls_listen_addr) {
		/* docs/technical/tls.md: "host:port" served with [tls] certificate_path and key_path */
		struct strbuf a = STRBUF_INIT;
		char err[512];
		struct ssl_ctx_st *ctx = tls_server_ctx_new(p->cfg.tls_cert_path, p->cfg.tls_key_path, err,
							    sizeof(err));
		if (!ctx)
			die("cannot serve TLS on \"%s\": %s", p->cfg.tls_listen_addr, err);
		grpc_server_set_tls(p->server, ctx);
		server_tls_ctx = ctx;   /* freed with the server */
		strbuf_addf(&a, "tls://%s", p->cfg.tls_listen_addr);
		listen_or_die(p, a.buf);
		strbuf_release(&a);
	}
	praefect_metrics_listen(p);

	uv_signal_init(p->loop, &p->sig_term);
	uv_signal_init(p->loop, &p->sig_int);
	p->sig_term.data = p->sig_int.data = p;
	uv_signal_start(&p->sig_term, on_signal, SIGTERM);
	uv_signal_start(&p->sig_int, on_signal, SIGINT);
	upgrade_ready(p->upgrade, on_upgrade_handover, p);
	uv_run(p->loop, UV_RUN_DEFAULT);
	upgrade_free(p->upgrade);

	store_close(p->store);
	grpc_server_free(p->server);
	tls_ctx_free(server_tls_ctx);
	log_msgf(LOG_INFO, "Praefect shutdown");
	praefect_free(p);
	return 0;
}

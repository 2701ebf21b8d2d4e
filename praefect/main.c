/*
 * praefect: the router. `praefect -config FILE [serve]` runs the server;
 * other subcommands are dispatched from the table in cmd.c.
 */
#include "praefect.h"
#include "cmd/cmd.h"
#include "transactions/transactions.h"
#include "backchannel/backchannel.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "grpc/auth.h"
#include "upgrade/upgrade.h"

#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STARTUP_HEALTH_WAIT_MS 3000

static struct praefect praefect;
static uv_signal_t sig_term, sig_int;
static struct upgrade *upgrade; /* SIGHUP upgrades, GITALY_PID_FILE (lib/upgrade) */

static enum grpc_code on_call_start(struct grpc_call *call, struct strbuf *msg, void *data)
{
	struct praefect *p = data;
	return auth_check_call(call, p->cfg.auth_token, p->cfg.auth_transitioning, msg);
}

static void on_call_end(struct grpc_call *call, enum grpc_code code, uint64_t ns, void *data)
{
	grpc_log_call(call, code, ns);
}

static void on_stopped(struct grpc_server *s, void *arg)
{
	struct praefect *p = arg;
	replicator_stop(p);
	schedule_stop(p);
	nodes_stop(p);
	uv_close((uv_handle_t *)&sig_term, NULL);
	uv_close((uv_handle_t *)&sig_int, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
	log_msgf(LOG_INFO, "received %s, stopping", strsignal(signum));
	uv_signal_stop(&sig_term);
	uv_signal_stop(&sig_int);
	grpc_server_shutdown(praefect.server, praefect.cfg.graceful_stop_timeout_ms, on_stopped, &praefect);
}

/* A new praefect took over the listeners: drain and exit, as on SIGTERM. */
static void on_upgrade_handover(void *arg)
{
	uv_signal_stop(&sig_term);
	uv_signal_stop(&sig_int);
	grpc_server_shutdown(praefect.server, praefect.cfg.graceful_stop_timeout_ms, on_stopped, &praefect);
}

static void listen_or_die(struct praefect *p, const char *addr)
{
	char bound[256];
	int rc = upgrade_listen(upgrade, p->server, addr, bound, sizeof(bound));
	if (rc < 0)
		die("cannot listen on \"%s\": %s", addr, uv_strerror(rc));
	log_msgf(LOG_INFO, "listening on %s", bound);
}

int praefect_serve(struct praefect_config *cfg)
{
	struct praefect *p = &praefect;
	struct strbuf err = STRBUF_INIT;
	char host[256] = "praefect";

	p->cfg = *cfg;
	p->loop = uv_default_loop();
	upgrade = upgrade_new(p->loop);
	p->health_interval_ms = p->cfg.health_check_interval_ms;
	p->health_timeout_ms = p->cfg.health_check_timeout_ms;
	p->unhealthy_after_ms = p->cfg.unhealthy_after_ms;
	gethostname(host, sizeof(host) - 1);
	{
		struct strbuf name = STRBUF_INIT;
		strbuf_addf(&name, "%s:%d", host, (int)getpid());
		p->name = strbuf_detach(&name, NULL);
	}
	log_msgf(LOG_INFO, "Starting Praefect %s", PRAEFECT_VERSION);

	{
		char *dir = xstrdup(p->cfg.sqlite_path);
		fs_mkdir_p(dirname(dir), 0700);
		free(dir);
	}
	if (store_open_sqlite(p->loop, p->cfg.sqlite_path, &p->store, &err) < 0)
		die("opening the tracking store \"%s\": %s", p->cfg.sqlite_path, err.buf);

	p->vs = xcalloc(p->cfg.nr_vs, sizeof(*p->vs));
	p->nr_vs = p->cfg.nr_vs;
	for (size_t i = 0; i < p->nr_vs; i++) {
		struct vstorage *vs = &p->vs[i];
		vs->cfg = &p->cfg.vs[i];
		vs->nr_nodes = vs->cfg->nr_nodes;
		vs->nodes = xcalloc(vs->nr_nodes, sizeof(*vs->nodes));
		for (size_t j = 0; j < vs->nr_nodes; j++) {
			vs->nodes[j].vs = vs;
			vs->nodes[j].cfg = &vs->cfg->nodes[j];
		}
	}
	hashmap_init(&p->repos_by_path);
	hashmap_init(&p->repos_by_id);
	hashmap_init(&p->reserved_paths);
	if (repos_load(p, &err) < 0)
		die("%s", err.buf);

	p->server = grpc_server_new(p->loop, NULL);
	{
		struct grpc_server_hooks hooks = { on_call_start, on_call_end, p };
		grpc_server_set_hooks(p->server, &hooks);
	}
	grpc_server_add_health(p->server);
	intercept_register(p);
	info_register(p);
	p->txm = tx_manager_new();
	tx_register_service(p->txm, p->server);
	/* nodes call RefTransaction back over the backchannel (no token there, as upstream) */
	p->bc_server = grpc_server_new(p->loop, NULL);
	tx_register_service(p->txm, p->bc_server);
	p->bc_client = xcalloc(1, sizeof(*p->bc_client));
	p->bc_client->loop = p->loop;
	p->bc_client->serve = p->bc_server;
	p->bc_client->max_window = (uint32_t)p->cfg.yamux_max_window;
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
	replicator_start(p);
	schedule_start(p, SCHEDULE_WITH_SERVING);

	if (p->cfg.socket_path && *p->cfg.socket_path) {
		struct strbuf a = STRBUF_INIT;
		strbuf_addf(&a, "unix:%s", p->cfg.socket_path);
		listen_or_die(p, a.buf);
		strbuf_release(&a);
	}
	if (p->cfg.listen_addr && *p->cfg.listen_addr)
		listen_or_die(p, p->cfg.listen_addr);
	if (p->cfg.tls_listen_addr && *p->cfg.tls_listen_addr)
		die("TLS listeners are not supported yet (tls_listen_addr)");

	uv_signal_init(p->loop, &sig_term);
	uv_signal_init(p->loop, &sig_int);
	uv_signal_start(&sig_term, on_signal, SIGTERM);
	uv_signal_start(&sig_int, on_signal, SIGINT);
	upgrade_ready(upgrade, on_upgrade_handover, NULL);
	uv_run(p->loop, UV_RUN_DEFAULT);
	upgrade_free(upgrade);

	store_close(p->store);
	grpc_server_free(p->server);
	log_msgf(LOG_INFO, "Praefect shutdown");
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	srand((unsigned)(time(NULL) ^ getpid()));
	return praefect_cli(argc, argv);
}

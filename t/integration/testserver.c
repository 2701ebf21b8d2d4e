/* grpc-testserver: serves the Test service and health on the given addresses, for the integration tests. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "grpc/server.h"
#include "testsvc.h"

static const char usage[] =
	"usage: grpc-testserver [--max-recv-msg N] [--stream-window N] [--pause-recv]\n"
	"                       [--grace-ms N] ADDR...\n"
	"\n"
	"Listens on every ADDR (unix:/path, tcp://host:port, host:port; port 0 picks\n"
	"one), prints \"listening <bound-address>\" for each, and serves until SIGTERM\n"
	"or SIGINT, which shut it down gracefully (in-flight calls get --grace-ms,\n"
	"default 5000). Exits 0 once everything is closed.\n";

struct server_main {
	uv_loop_t *loop;
	struct grpc_server *server;
	struct testsvc svc;
	uv_signal_t sigterm, sigint;
	uint64_t grace_ms;
	int shutting_down;
};

static uint64_t parse_num(const char *opt, const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s ? s : "", &end, 10);
	if (!s || !*s || *end || errno)
		die("%s needs a number, not \"%s\"", opt, s ? s : "");
	return v;
}

static void shutdown_done(struct grpc_server *s, void *arg)
{
	struct server_main *m = arg;
	grpc_server_free(s);
	m->server = NULL;
	uv_close((uv_handle_t *)&m->sigterm, NULL);
	uv_close((uv_handle_t *)&m->sigint, NULL);
	/* Sleep children still being reaped keep the loop alive until they are. */
}

static void on_signal(uv_signal_t *sig, int signum)
{
	struct server_main *m = sig->data;
	if (m->shutting_down)
		return;
	m->shutting_down = 1;
	fprintf(stderr, "grpc-testserver: signal %d, shutting down\n", signum);
	grpc_server_shutdown(m->server, m->grace_ms, shutdown_done, m);
}

int main(int argc, char **argv)
{
	struct server_main m = { .grace_ms = 5000 };
	struct grpc_server_opts opts;
	int pause_recv = 0, i;

	signal(SIGPIPE, SIG_IGN);
	grpc_server_opts_default(&opts);
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--max-recv-msg"))
			opts.max_recv_msg = parse_num(a, argv[++i]);
		else if (!strcmp(a, "--stream-window"))
			opts.stream_window = (uint32_t)parse_num(a, argv[++i]);
		else if (!strcmp(a, "--grace-ms"))
			m.grace_ms = parse_num(a, argv[++i]);
		else if (!strcmp(a, "--pause-recv"))
			pause_recv = 1;
		else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage, stdout);
			return 0;
		} else {
			fputs(usage, stderr);
			return 129;
		}
	}
	if (i == argc) {
		fputs(usage, stderr);
		return 129;
	}

	m.loop = uv_default_loop();
	m.server = grpc_server_new(m.loop, &opts);
	testsvc_init(&m.svc, m.loop, m.server);
	m.svc.pause_recv = pause_recv;
	testsvc_register(&m.svc);
	grpc_server_add_health(m.server);

	for (; i < argc; i++) {
		char bound[256];
		int r = grpc_server_listen(m.server, argv[i], bound, sizeof(bound));
		if (r < 0)
			die("cannot listen on \"%s\": %s", argv[i], strerror(-r));
		m.svc.nlisteners++;
		printf("listening %s\n", bound);
	}
	fflush(stdout);

	uv_signal_init(m.loop, &m.sigterm);
	uv_signal_init(m.loop, &m.sigint);
	m.sigterm.data = m.sigint.data = &m;
	uv_signal_start(&m.sigterm, on_signal, SIGTERM);
	uv_signal_start(&m.sigint, on_signal, SIGINT);

	uv_run(m.loop, UV_RUN_DEFAULT);

	testsvc_release(&m.svc);
	if (m.server)
		die("loop ended before the server shut down");
	if (uv_loop_close(m.loop) < 0)
		die("handles left open at exit");
	return 0;
}

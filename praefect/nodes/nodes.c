/* Connections to the gitaly nodes and the health checks that feed routing. */
#include "praefect.h"
#include "metrics/series.h"
#include "base/util.h"
#include "base/log.h"
#include "grpc/auth.h"
#include "backchannel/backchannel.h"
#include "health.pb-c.h"
#include "shared.pb-c.h"

#include <stdlib.h>
#include <string.h>

/*
 * How long another praefect's healthy vote counts: upstream's failover
 * timeout. Votes also need that praefect's latest check to have succeeded
 * (lib/store/pg-queue.c), so a node seen dead by all loses them at once; the
 * window only bounds what a praefect that died keeps voting. Peer votes older
 * than PEER_VOTES_STALE_MS (database unreachable) are ignored: each praefect
 * falls back to its own view (docs/technical/multi-praefect.md).
 */
#define PEER_VOTE_WINDOW_MS 10000
#define PEER_VOTES_STALE_MS 5000

/* silence bounds of keepalive_for() (docs/technical/praefect-health.md) */
#define NODE_UNIX_KEEPALIVE_MS 10000
#define NODE_UNIX_KEEPALIVE_TIMEOUT_MS 20000
#define NODE_TCP_KEEPALIVE_MS 1000
#define NODE_TCP_KEEPALIVE_TIMEOUT_MS 4000

static void on_check_done(struct grpc_client_call *call, enum grpc_code code, const char *message,
			  const struct grpc_metadata *trailers);
static void on_check_message(struct grpc_client_call *call, const uint8_t *msg, size_t len);

struct check {
	struct node *node;
	int serving;
	uint64_t start_ns;
};

static const struct grpc_client_ops check_ops = {
	.on_message = on_check_message,
	.on_close = on_check_done,
};

static void on_status_recorded(void *arg, int status, const char *msg)
{
	if (status < 0)
		log_msgf(LOG_WARN, "recording node status: %s", msg ? msg : "store error");
}

/* node_status rows (upstream's table) at most once a second, or at once on a change */
static void record_status(struct praefect *p, struct node *n)
{
	uint64_t now = now_ms();
	if (now - n->last_recorded_ms < 1000 && n->recorded_healthy == n->healthy)
		return;
	n->last_recorded_ms = now;
	n->recorded_healthy = n->healthy;
	store_record_node_status(p->store, p->name, n->vs->cfg->name, n->cfg->storage, n->healthy,
				 on_status_recorded, NULL);
}

int node_consensus_healthy(const struct node *n)
{
	const struct praefect *p = n->vs->p;
	int64_t votes, active;

	if (!n->peer_active || now_ms() - p->votes_at_ms > PEER_VOTES_STALE_MS)
		return n->healthy;
	/* upstream's rule: at least half of the praefects active in the last minute */
	votes = n->peer_votes + (n->healthy ? 1 : 0);
	active = n->peer_active + 1;
	return 2 * votes >= active;
}

static void set_health(struct praefect *p, struct node *n, int healthy, const char *why)
{
	if (n->healthy == healthy)
		return;
	if (healthy)
		log_msgf(LOG_INFO, "node %s/%s is healthy", n->vs->cfg->name, n->cfg->storage);
	else
		log_msgf(LOG_WARN, "node %s/%s is unhealthy: %s", n->vs->cfg->name, n->cfg->storage, why);
	n->healthy = healthy;
	if (!healthy) {
		coordinator_node_unhealthy(p, n);
		replicator_node_unhealthy(p, n);
	}
	record_status(p, n);
	praefect_node_health_changed(p, n);
}

static void on_check_message(struct grpc_client_call *call, const uint8_t *msg, size_t len)
{
	struct check *c = grpc_client_call_user(call);
	Grpc__Health__V1__HealthCheckResponse *r = grpc__health__v1__health_check_response__unpack(NULL, len, msg);
	if (r) {
		c->serving = r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
		grpc__health__v1__health_check_response__free_unpacked(r, NULL);
	}
}

static void on_check_done(struct grpc_client_call *call, enum grpc_code code, const char *message,
			  const struct grpc_metadata *trailers)
{
	struct check *c = grpc_client_call_user(call);
	struct node *n = c->node;
	struct praefect *p = n->vs->p;
	uint64_t now = now_ms();
	int ok = code == GRPC_OK && c->serving;

	n->check_in_flight = 0;
	n->last_latency_us = (now_ns() - c->start_ns) / 1000;
	metric_observe(pm(p, PM_NODE_LATENCY), METRIC_LV(n->cfg->storage), (double)n->last_latency_us / 1e6);
	metric_set(pm(p, PM_NODE_UP), METRIC_LV(n->cfg->storage), ok);
	if (ok) {
		n->last_ok_ms = now;
		set_health(p, n, 1, NULL);
	} else if (!n->last_ok_ms || now - MAX(n->last_ok_ms, grpc_channel_last_read_ms(n->ch)) >= p->unhealthy_after_ms) {
		/*
		 * Failed checks alone do not condemn a node that is still sending us
		 * bytes on other calls (overloaded, not dead); a node silent for the
		 * whole window is; one slow or failed check is tolerated. Connection
		 * failures act at once (on_channel_state). Unhealthy only means "route
		 * new calls elsewhere": calls in flight stay, since a node that is
		 * silent may just be starved or stopped; the keepalive set by
		 * keepalive_for() decides when silence means the connection is lost
		 * (docs/technical/praefect-health.md).
		 */
		set_health(p, n, 0, code == GRPC_OK ? "not serving" : message);
	}
	record_status(p, n);
	free(c);
}

void node_mark_dead(struct praefect *p, struct node *n, const char *why)
{
	set_health(p, n, 0, why);
}

/* A broken connection is a failure signal of its own: no need to wait for checks. */
static void on_channel_state(struct grpc_channel *ch, enum grpc_channel_state st, void *data)
{
	struct node *n = data;
	if (st == GRPC_CHANNEL_TRANSIENT_FAILURE)
		set_health(n->vs->p, n, 0, "connection failed");
}

static void check_node(struct praefect *p, struct node *n)
{
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct grpc_client_call *call;
	struct check *c;
	uint8_t req[2];
	if (n->check_in_flight)
		return;
	c = xcalloc(1, sizeof(*c));
	c->node = n;
	c->start_ns = now_ns();
	auth_v2_add(&md, n->cfg->token);
	if (grpc_channel_call(n->ch, p->calls.health_check->name, &md, p->health_timeout_ms, 0,
			      &check_ops, c, &call) < 0) {
		free(c);
		grpc_metadata_release(&md);
		return;
	}
	n->check_in_flight = 1;
	n->last_check_ms = now_ms();
	grpc_client_call_send(call, req, 0);
	grpc_client_call_close_send(call);
	grpc_metadata_release(&md);
}

static struct node *find_node(struct praefect *p, const char *vs, const char *storage)
{
	for (size_t i = 0; i < p->nr_vs; i++)
		if (!strcmp(p->vs[i].cfg->name, vs))
			return vs_node(&p->vs[i], storage);
	return NULL;
}

static void on_votes(void *arg, int status, const char *msg, const struct store_node_vote *v, size_t nr)
{
	struct praefect *p = arg;

	p->votes_in_flight = 0;
	if (status < 0) {
		log_msgf(LOG_WARN, "reading other praefects' node status: %s", msg ? msg : "store error");
		return;
	}
	for (size_t i = 0; i < p->nr_vs; i++)
		for (size_t j = 0; j < p->vs[i].nr_nodes; j++)
			p->vs[i].nodes[j].peer_votes = p->vs[i].nodes[j].peer_active = 0;
	for (size_t i = 0; i < nr; i++) {
		struct node *n = find_node(p, v[i].virtual_storage, v[i].storage);
		if (n) {
			n->peer_votes = v[i].healthy_votes;
			n->peer_active = v[i].active_praefects;
		}
	}
	p->votes_at_ms = now_ms();
}

void nodes_check_all(struct praefect *p)
{
	for (size_t i = 0; i < p->nr_vs; i++)
		for (size_t j = 0; j < p->vs[i].nr_nodes; j++)
			check_node(p, &p->vs[i].nodes[j]);
	/* the other praefects' views, on the store's thread like every query */
	if (store_is_shared(p->store) && !p->votes_in_flight) {
		p->votes_in_flight = 1;
		store_node_votes(p->store, p->name, PEER_VOTE_WINDOW_MS, on_votes, p);
	}
}

void node_call_metadata(struct node *n, const struct grpc_metadata *in, struct grpc_metadata *out)
{
	if (in)
		for (size_t i = 0; i < in->nr; i++)
			if (strcmp(in->v[i].key, "authorization"))
				grpc_metadata_add(out, in->v[i].key, strlen(in->v[i].key), in->v[i].value,
						  in->v[i].value_len);
	auth_v2_add(out, n->cfg->token);
}

struct node_unary_call {
	node_unary_done *done;
	void *arg;
	struct strbuf resp;
	int got;
};

static void unary_message(struct grpc_client_call *cc, const uint8_t *msg, size_t len)
{
	struct node_unary_call *u = grpc_client_call_user(cc);
	strbuf_reset(&u->resp);
	strbuf_add(&u->resp, msg, len);
	u->got = 1;
}

static void unary_close(struct grpc_client_call *cc, enum grpc_code code, const char *message,
			const struct grpc_metadata *trailers)
{
	struct node_unary_call *u = grpc_client_call_user(cc);
	int ok = code == GRPC_OK && u->got;
	(void)trailers;
	u->done(u->arg, code, message, ok ? (const uint8_t *)u->resp.buf : NULL, ok ? u->resp.len : 0);
	strbuf_release(&u->resp);
	free(u);
}

static const struct grpc_client_ops unary_ops = { .on_message = unary_message, .on_close = unary_close };

int node_unary(struct node *n, const char *method, const void *req, size_t len, uint64_t timeout_ms,
	       node_unary_done *done, void *arg)
{
	struct node_unary_call *u = xcalloc(1, sizeof(*u));
	struct grpc_metadata md = GRPC_METADATA_INIT;
	struct grpc_client_call *cc;
	int rc;

	u->done = done;
	u->arg = arg;
	strbuf_init(&u->resp, 0);
	node_call_metadata(n, NULL, &md);
	rc = grpc_channel_call(n->ch, method, &md, timeout_ms, 0, &unary_ops, u, &cc);
	grpc_metadata_release(&md);
	if (rc < 0) {
		strbuf_release(&u->resp);
		free(u);
		return -1;
	}
	grpc_client_call_send(cc, req, len);
	grpc_client_call_close_send(cc);
	return 0;
}

int node_unary_repo(struct node *n, const char *method, const ProtobufCMessageDescriptor *req,
		    const char *replica_path, uint64_t timeout_ms, node_unary_done *done, void *arg)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(req, "repository");
	Gitaly__Repository repo = GITALY__REPOSITORY__INIT;
	ProtobufCMessage *m;
	uint8_t *buf;
	size_t len;
	int rc;

	if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE)
		return -1;
	repo.storage_name = (char *)n->cfg->storage;
	repo.relative_path = (char *)replica_path;
	m = xcalloc(1, req->sizeof_message);
	protobuf_c_message_init(req, m);
	*(Gitaly__Repository **)((char *)m + f->offset) = &repo;
	len = protobuf_c_message_get_packed_size(m);
	buf = xmalloc(len + 1);
	protobuf_c_message_pack(m, buf);
	rc = node_unary(n, method, buf, len, timeout_ms, done, arg);
	free(buf);
	free(m);
	return rc;
}

void nodes_init(struct praefect *p)
{
	p->fsck = praefect_method("/gitaly.RepositoryService/Fsck");
	p->vs = xcalloc(p->cfg.nr_vs, sizeof(*p->vs));
	p->nr_vs = p->cfg.nr_vs;
	for (size_t i = 0; i < p->nr_vs; i++) {
		struct vstorage *vs = &p->vs[i];
		vs->p = p;
		vs->cfg = &p->cfg.vs[i];
		vs->nr_nodes = vs->cfg->nr_nodes;
		vs->nodes = xcalloc(vs->nr_nodes, sizeof(*vs->nodes));
		for (size_t j = 0; j < vs->nr_nodes; j++) {
			vs->nodes[j].vs = vs;
			vs->nodes[j].cfg = &vs->cfg->nodes[j];
		}
	}
}

/*
 * When silence means the connection is lost. The kernel reports a dead peer
 * itself (EOF, reset, refused: the calls fail and the node is unhealthy at
 * once), so silence alone is only "suspect": health checks stop routing new
 * calls to the node after unhealthy_after, and the calls in flight wait. On a
 * Unix socket the peer is a process on this host: silence means it is
 * stopped, starved or swapping, and it gets gRPC's usual 20 s ping timeout
 * after 10 s of silence. Over TCP a partition or a frozen host looks the
 * same as a slow peer and nothing else would ever end the calls, so the
 * bound is shorter: a ping after 1 s of silence, 4 s to answer it.
 */
static void keepalive_for(const struct node *n, struct grpc_channel_opts *o)
{
	if (!strncmp(n->cfg->address, "unix:", 5)) {
		o->keepalive_ms = NODE_UNIX_KEEPALIVE_MS;
		o->keepalive_timeout_ms = NODE_UNIX_KEEPALIVE_TIMEOUT_MS;
	} else {
		o->keepalive_ms = NODE_TCP_KEEPALIVE_MS;
		o->keepalive_timeout_ms = NODE_TCP_KEEPALIVE_TIMEOUT_MS;
	}
}

int nodes_start(struct praefect *p, struct strbuf *err)
{
	struct grpc_channel_opts o;
	grpc_channel_opts_default(&o);
	o.backoff_initial_ms = 100;
	o.backoff_max_ms = 1000;
	o.connect_timeout_ms = 2000;
	o.on_state = on_channel_state;
	/* every connection to a node is a backchannel: the node votes back over it */
	o.dial = bc_dial;
	o.dial_data = p->bc_client;
	for (size_t i = 0; i < p->nr_vs; i++) {
		for (size_t j = 0; j < p->vs[i].nr_nodes; j++) {
			struct node *n = &p->vs[i].nodes[j];
			int rc;
			o.state_data = n;
			keepalive_for(n, &o);
			rc = grpc_channel_new(p->loop, n->cfg->address, &o, &n->ch);
			if (rc < 0) {
				strbuf_addf(err, "virtual storage \"%s\": cannot use node address \"%s\" of storage \"%s\"",
					    p->vs[i].cfg->name, n->cfg->address, n->cfg->storage);
				return -1;
			}
			grpc_channel_connect(n->ch);
		}
	}
	return 0;
}

void nodes_stop(struct praefect *p)
{
	for (size_t i = 0; i < p->nr_vs; i++)
		for (size_t j = 0; j < p->vs[i].nr_nodes; j++)
			if (p->vs[i].nodes[j].ch)
				grpc_channel_close(p->vs[i].nodes[j].ch);
}

void nodes_free(struct praefect *p)
{
	for (size_t i = 0; i < p->nr_vs; i++) {
		for (size_t j = 0; j < p->vs[i].nr_nodes; j++)
			suspects_release(&p->vs[i].nodes[j]);
		free(p->vs[i].nodes);
	}
	free(p->vs);
	p->vs = NULL;
	p->nr_vs = 0;
}

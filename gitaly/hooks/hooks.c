/* pre-receive, update and post-receive as one asynchronous hook run: GitLab calls, custom hooks, votes; see docs/technical/hooks.md, "What a hook run does". */
#include "hooks/run.h"
#include "base/log.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static void run_closed(uv_handle_t *h)
{
	struct hook_run *r = h->data;
	strvec_clear(&r->env);
	strvec_clear(&r->push_options);
	strbuf_release(&r->changes);
	free(r->ref);
	free(r->old_value);
	free(r->new_value);
	if (r->have_payload)
		hook_payload_release(&r->payload);
	strbuf_release(&r->repo_path);
	strbuf_release(&r->payload_repo_path);
	free(r->rel_object_dir);
	strvec_clear(&r->rel_alternates);
	strvec_clear(&r->hooks);
	strbuf_release(&r->res.msg);
	strbuf_release(&r->res.api_msg);
	free(r);
}

static void run_free(struct hook_run *r)
{
	uv_close((uv_handle_t *)&r->defer, run_closed);
}

static void on_defer(uv_timer_t *t)
{
	hook_run_advance(t->data);
}

/* Continue from the loop rather than the current stack (keeps callbacks asynchronous). */
static void run_continue_later(struct hook_run *r)
{
	uv_timer_start(&r->defer, on_defer, 0, 0);
}

static void run_finish(struct hook_run *r)
{
	r->step = STEP_DONE;
	/* whatever `done` does, a later hook_run_cancel() must not free us twice */
	r->cancelled = 1;
	if (r->res.fail == HOOK_FAIL_NOT_ALLOWED) {
		r->res.user_id = r->have_payload && r->payload.userid ? r->payload.userid : "";
		r->res.protocol = r->have_payload && r->payload.protocol ? r->payload.protocol : "";
	}
	r->done(r->arg, &r->res);
	run_free(r);
}

static void on_vote_stopped(void *arg, enum grpc_code code, const char *msg)
{
	if (code != GRPC_OK)
		log_msgf(LOG_WARN, "stopping the transaction failed: %s", msg ? msg : grpc_code_name(code));
}

void hook_run_fail(struct hook_run *r, enum hook_fail kind, enum grpc_code code, const char *fmt, ...)
{
	va_list ap;
	r->res.fail = kind;
	r->res.code = code;
	strbuf_reset(&r->res.msg);
	va_start(ap, fmt);
	strbuf_vaddf(&r->res.msg, fmt, ap);
	va_end(ap);
	if (r->step < STEP_SYNC && r->have_payload && r->payload.has_tx && r->payload.tx.primary) {
		/* the secondaries wait on the synchronisation vote: tell them to give up */
		const struct txid *tx = &r->payload.tx;
		log_msgf(LOG_WARN, "hook failed on the primary, stopping transaction %llu: %s",
			 (unsigned long long)tx->id, r->res.msg.buf);
		vote_stop_info(r->g, tx, on_vote_stopped, NULL);
	}
	run_finish(r);
}

const char *hook_name(enum hook_kind k)
{
	switch (k) {
	case HOOK_KIND_PRE_RECEIVE: return "pre-receive";
	case HOOK_KIND_UPDATE: return "update";
	default: return "post-receive";
	}
}

/* --- the run's steps --- */

static void sync_vote_done(void *arg, enum grpc_code code, const char *msg)
{
	struct hook_run *r = arg;
	r->vote_pending = 0;
	if (r->cancelled) {
		run_free(r);
		return;
	}
	if (code != GRPC_OK) {
		hook_run_fail(r, HOOK_FAIL_OTHER, code, "synchronizing %s hook: vote failed: %s", hook_name(r->kind),
			 msg ? msg : "");
		return;
	}
	r->step = STEP_DONE;
	run_finish(r);
}

static void step_sync(struct hook_run *r)
{
	struct strbuf text = STRBUF_INIT;
	uint8_t hash[20];
	if (!r->payload.has_tx) {
		run_finish(r);
		return;
	}
	strbuf_addf(&text, "synchronize %s hook", hook_name(r->kind));
	gitaly_sha1(text.buf, text.len, hash);
	strbuf_release(&text);
	r->vote_pending = 1;
	if (r->tx_call)
		vote_cast(r->g, r->tx_call, VOTE_PHASE_SYNCHRONIZED, hash, sync_vote_done, r);
	else
		hook_payload_vote(r->g, &r->payload, VOTE_PHASE_SYNCHRONIZED, hash, sync_vote_done, r);
}

/* Validation upstream does on the primary before anything else. */
static int step_validate(struct hook_run *r)
{
	int gitlab = gitlab_configured(r->g);
	const struct hook_payload *p = &r->payload;
	struct strbuf err = STRBUF_INIT;
	size_t hexlen = hook_payload_hexlen(p);

	switch (r->kind) {
	case HOOK_KIND_PRE_RECEIVE:
	case HOOK_KIND_POST_RECEIVE:
		if (!r->changes.len) {
			hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "hook got no reference updates");
			return -1;
		}
		if (!gitlab)
			break;
		if (r->kind == HOOK_KIND_PRE_RECEIVE && !*r->repo->gl_repository) {
			hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "repository not set");
			return -1;
		}
		if (!p->has_user) {
			hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "payload has no receive hooks info");
			return -1;
		}
		if (!*p->userid) {
			hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "user ID not set");
			return -1;
		}
		if (r->kind == HOOK_KIND_POST_RECEIVE && !*r->repo->gl_repository) {
			hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "repository not set");
			return -1;
		}
		if (r->kind == HOOK_KIND_PRE_RECEIVE && !*p->protocol) {
			hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "protocol not set");
			return -1;
		}
		break;
	case HOOK_KIND_UPDATE:
		if (!*r->ref) {
			hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "hook got no reference");
			return -1;
		}
		if (hooks_validate_hex(r->old_value, hexlen, &err) < 0) {
			hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "hook got invalid old value: %s", err.buf);
			strbuf_release(&err);
			return -1;
		}
		if (hooks_validate_hex(r->new_value, hexlen, &err) < 0) {
			hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "hook got invalid new value: %s", err.buf);
			strbuf_release(&err);
			return -1;
		}
		if (gitlab && !p->has_user) {
			hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "payload has no receive hooks info");
			return -1;
		}
		break;
	}
	return 0;
}

static int step_start(struct hook_run *r)
{
	struct strbuf err = STRBUF_INIT;
	enum grpc_code code;

	if (hook_payload_from_env(r->env.v, r->env.nr, &r->payload, &err) < 0) {
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "extracting hooks payload: %s", err.buf);
		strbuf_release(&err);
		return -1;
	}
	r->have_payload = 1;
	if (!hook_payload_is_primary(&r->payload)) {
		r->step = STEP_SYNC;
		return 0;
	}
	code = gitaly_locate(r->g, r->repo, 0, &r->repo_path, &err);
	if (code == GRPC_OK)
		code = gitaly_locate(r->g, r->payload.repo, LOCATE_NO_EXIST_CHECK, &r->payload_repo_path, &err);
	if (code != GRPC_OK) {
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "getting repo path: %s", err.buf);
		strbuf_release(&err);
		return -1;
	}
	r->step = STEP_VALIDATE;
	return 0;
}

/*
 * Steps in order; each either completes synchronously (the loop goes on) or
 * starts an asynchronous operation whose completion calls hook_run_advance()
 * again. Failures finish the run through hook_run_fail().
 */
void hook_run_advance(struct hook_run *r)
{
	int gitlab = gitlab_configured(r->g);
	for (;;) {
		switch (r->step) {
		case STEP_START:
			if (step_start(r) < 0)
				return;
			continue;
		case STEP_VALIDATE:
			if (step_validate(r) < 0)
				return;
			r->step = STEP_ALLOWED;
			continue;
		case STEP_ALLOWED:
			if (r->kind == HOOK_KIND_PRE_RECEIVE && gitlab) {
				hook_step_allowed(r);
				return;
			}
			r->step++;
			continue;
		case STEP_CUSTOM_PRE:
			if (r->kind != HOOK_KIND_POST_RECEIVE) {
				hook_step_custom(r);
				return;
			}
			r->step++;
			continue;
		case STEP_PRE_RECEIVE:
			if (r->kind == HOOK_KIND_PRE_RECEIVE && gitlab) {
				hook_step_pre_receive(r);
				return;
			}
			r->step++;
			continue;
		case STEP_POST_RECEIVE:
			if (r->kind == HOOK_KIND_POST_RECEIVE && gitlab) {
				hook_step_post_receive(r);
				return;
			}
			r->step++;
			continue;
		case STEP_CUSTOM_POST:
			if (r->kind == HOOK_KIND_POST_RECEIVE) {
				hook_step_custom(r);
				return;
			}
			r->step++;
			continue;
		case STEP_SYNC:
			step_sync(r);
			return;
		case STEP_DONE:
			return;
		}
	}
}

struct hook_run *hook_run_start(struct gitaly *g, const struct hook_run_opts *o)
{
	struct hook_run *r = xcalloc(1, sizeof(*r));

	r->g = g;
	r->kind = o->kind;
	r->repo = o->repo;
	strvec_init(&r->env);
	for (size_t i = 0; i < o->nr_env; i++)
		strvec_push(&r->env, o->env[i] ? o->env[i] : "");
	strvec_init(&r->push_options);
	for (size_t i = 0; i < o->nr_push_options; i++)
		strvec_push(&r->push_options, o->push_options[i] ? o->push_options[i] : "");
	strbuf_init(&r->changes, 0);
	strbuf_add(&r->changes, o->changes, o->changes_len);
	r->ref = xstrdup(o->ref ? o->ref : "");
	r->old_value = xstrdup(o->old_value ? o->old_value : "");
	r->new_value = xstrdup(o->new_value ? o->new_value : "");
	r->tx_call = o->tx_call;
	r->on_output = o->on_output;
	r->done = o->done;
	r->arg = o->arg;
	strbuf_init(&r->repo_path, 0);
	strbuf_init(&r->payload_repo_path, 0);
	strvec_init(&r->rel_alternates);
	strvec_init(&r->hooks);
	strbuf_init(&r->res.msg, 0);
	strbuf_init(&r->res.api_msg, 0);
	r->res.code = GRPC_OK;
	uv_timer_init(g->loop, &r->defer);
	r->defer.data = r;
	r->step = STEP_START;
	run_continue_later(r);
	return r;
}

void hook_run_cancel(struct hook_run *r)
{
	if (!r || r->cancelled)
		return;
	r->cancelled = 1;
	uv_timer_stop(&r->defer);
	if (r->cmd) {
		git_cmd_detach(r->cmd);
		r->cmd = NULL;
	}
	if (r->http) {
		gitlab_cancel(r->http);
		r->http = NULL;
	}
	/* a vote cannot be called back; its callback frees the run */
	if (!r->vote_pending)
		run_free(r);
}

void hook_run_pause_output(struct hook_run *r)
{
	r->output_paused = 1;
	if (r->cmd)
		git_cmd_pause_stdout(r->cmd);
}

void hook_run_resume_output(struct hook_run *r)
{
	r->output_paused = 0;
	if (r->cmd)
		git_cmd_resume_stdout(r->cmd);
}

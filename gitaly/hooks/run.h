/*
 * One hook run as the hook files share it (hooks.c drives the steps,
 * custom.c runs custom hooks, access.c asks GitLab): its state and the
 * steps each file provides. Private to hooks/.
 */
#ifndef GITALY_HOOKS_RUN_H
#define GITALY_HOOKS_RUN_H

#include "hooks/hooks.h"
#include <uv.h>

/* --- a hook run --- */

enum run_step {
	STEP_START,
	STEP_VALIDATE,
	STEP_ALLOWED,
	STEP_CUSTOM_PRE,
	STEP_PRE_RECEIVE,
	STEP_POST_RECEIVE,
	STEP_CUSTOM_POST,
	STEP_SYNC,
	STEP_DONE,
};

struct hook_run {
	struct gitaly *g;
	enum hook_kind kind;
	const Gitaly__Repository *repo;
	struct strvec env;
	struct strvec push_options;
	struct strbuf changes;
	char *ref, *old_value, *new_value;
	struct grpc_call *tx_call;
	void (*on_output)(void *arg, int fd, const char *buf, size_t len);
	void (*done)(void *arg, const struct hook_result *res);
	void *arg;

	struct hook_payload payload;
	int have_payload;
	struct strbuf repo_path;          /* the request repository */
	struct strbuf payload_repo_path;  /* the payload's repository (GIT_DIR of custom hooks) */
	/* object directories reported to /allowed, relative to the repository */
	char *rel_object_dir;
	struct strvec rel_alternates;

	enum run_step step;
	struct strvec hooks;              /* custom hooks still to run */
	size_t next_hook;
	struct git_cmd *cmd;
	struct gitlab_req *http;
	int vote_pending;
	int cancelled;
	int output_paused;
	uv_timer_t defer;
	struct hook_result res;
};


/* Move to the next step (or finish) once the current one is over. */
void hook_run_advance(struct hook_run *r);
/* End the run with a failure; `done` reports it. */
void hook_run_fail(struct hook_run *r, enum hook_fail kind, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
const char *hook_name(enum hook_kind k);
void hook_step_custom(struct hook_run *r);
void hook_step_allowed(struct hook_run *r);
void hook_step_pre_receive(struct hook_run *r);
void hook_step_post_receive(struct hook_run *r);

#endif

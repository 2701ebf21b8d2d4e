/* GitLab access checks of a hook run: /allowed, /pre_receive and /post_receive. */
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

/* --- GitLab API calls --- */

/* "application/json; charset=utf-8" -> 1 */
static int is_json_type(const char *ct, struct strbuf *why)
{
	size_t n;
	if (!ct || !*ct) {
		strbuf_addstr(why, "mime: no media type");
		return 0;
	}
	while (*ct == ' ')
		ct++;
	n = strcspn(ct, ";");
	while (n && ct[n - 1] == ' ')
		n--;
	if (n == 16 && !strncasecmp(ct, "application/json", 16))
		return 1;
	strbuf_add(why, ct, n);
	return 0;
}

/*
 * Turn a transport result into upstream's error, or 0 when there is a
 * response with a 2xx/3xx status to look at.
 */
static int api_error(long status, const struct strbuf *body, const char *error, struct strbuf *msg)
{
	json_t *o;
	if (!status) {
		strbuf_addstr(msg, "Internal API unreachable");
		return -1;
	}
	if (status >= 200 && status <= 399)
		return 0;
	o = json_loadb(body->buf, body->len, JSON_DISABLE_EOF_CHECK, NULL);
	if (json_is_object(o)) {
		const char *m = json_string_value(json_object_get(o, "message"));
		strbuf_addstr(msg, m ? m : "");
	} else {
		strbuf_addf(msg, "Internal API error (%ld)", status);
	}
	json_decref(o);
	return -1;
}

static void json_field(struct strbuf *sb, int *first, const char *key, const char *val, size_t len)
{
	if (!len)
		return;   /* omitempty */
	strbuf_addstr(sb, *first ? "{" : ",");
	*first = 0;
	strbuf_add_json_string(sb, key, strlen(key));
	strbuf_addch(sb, ':');
	strbuf_add_json_string(sb, val, len);
}


static void compute_object_dirs(struct hook_run *r)
{
	const char *objdir = hook_env_lookup(r->env.v, r->env.nr, "GIT_OBJECT_DIRECTORY", 1);
	const char *alts = hook_env_lookup(r->env.v, r->env.nr, "GIT_ALTERNATE_OBJECT_DIRECTORIES", 1);
	char real[PATH_MAX];

	strvec_clear(&r->rel_alternates);
	if (objdir && *objdir && alts && *alts && realpath(r->repo_path.buf, real)) {
		struct strbuf sb = STRBUF_INIT;
		const char *p = alts;
		hooks_rel_path(real, objdir, &sb);
		r->rel_object_dir = strbuf_detach(&sb, NULL);
		for (;;) {
			const char *colon = strchr(p, ':');
			char *one = colon ? xstrndup(p, (size_t)(colon - p)) : xstrdup(p);
			strbuf_reset(&sb);
			hooks_rel_path(real, one, &sb);
			strvec_push(&r->rel_alternates, sb.buf);
			free(one);
			if (!colon)
				break;
			p = colon + 1;
		}
		strbuf_release(&sb);
		return;
	}
	r->rel_object_dir = xstrdup(r->repo->git_object_directory ? r->repo->git_object_directory : "");
	for (size_t i = 0; i < r->repo->n_git_alternate_object_directories; i++)
		strvec_push(&r->rel_alternates, r->repo->git_alternate_object_directories[i]);
}

static void allowed_done(void *arg, long status, const char *ctype, const struct strbuf *body,
			 const char *error)
{
	struct hook_run *r = arg;
	struct strbuf msg = STRBUF_INIT, why = STRBUF_INIT;
	json_t *o = NULL;
	int ok = 0;

	r->http = NULL;
	if (api_error(status, body, error, &msg) < 0)
		goto refused;
	if (status != 200 && status != 300) {
		strbuf_addf(&msg, "gitlab api is not accessible: %ld", status);
		goto refused;
	}
	if (!is_json_type(ctype, &why)) {
		strbuf_addf(&msg, "/allowed endpoint respond with unsupported content type: %s", why.buf);
		goto refused;
	}
	o = json_loadb(body->buf, body->len, JSON_DISABLE_EOF_CHECK, NULL);
	if (!json_is_object(o)) {
		strbuf_addstr(&msg, "decoding response from /allowed endpoint: invalid JSON");
		goto refused;
	}
	ok = json_is_true(json_object_get(o, "status"));
	if (!ok) {
		const char *m = json_string_value(json_object_get(o, "message"));
		strbuf_addstr(&msg, m ? m : "");
		goto refused;
	}
	json_decref(o);
	strbuf_release(&why);
	strbuf_release(&msg);
	r->step++;
	hook_run_advance(r);
	return;
refused:
	json_decref(o);
	strbuf_reset(&r->res.api_msg);
	strbuf_add(&r->res.api_msg, msg.buf, msg.len);
	hook_run_fail(r, HOOK_FAIL_NOT_ALLOWED, GRPC_PERMISSION_DENIED, "GitLab: %s", msg.buf);
	strbuf_release(&why);
	strbuf_release(&msg);
}

static void refuse_before_request(struct hook_run *r, const char *fmt, const char *what)
{
	strbuf_reset(&r->res.api_msg);
	strbuf_addf(&r->res.api_msg, fmt, what);
	hook_run_fail(r, HOOK_FAIL_NOT_ALLOWED, GRPC_PERMISSION_DENIED, "GitLab: %s", r->res.api_msg.buf);
}

/* A JSON array of strings as Go marshals a slice: an empty (nil) one is null. */
static void json_strings(struct strbuf *sb, const struct strvec *v)
{
	if (!v->nr) {
		strbuf_addstr(sb, "null");
		return;
	}
	strbuf_addch(sb, '[');
	for (size_t i = 0; i < v->nr; i++) {
		if (i)
			strbuf_addch(sb, ',');
		strbuf_add_json_string(sb, v->v[i], strlen(v->v[i]));
	}
	strbuf_addch(sb, ']');
}

static int all_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

void hook_step_allowed(struct hook_run *r)
{
	struct strbuf json = STRBUF_INIT, env = STRBUF_INIT, project = STRBUF_INIT, err = STRBUF_INIT;
	const char *glid = r->payload.userid;
	const char *username = "", *key_id = "", *user_id = "";
	int first = 1;

	compute_object_dirs(r);
	if (!strncmp(glid, "username-", 9)) {
		username = glid + 9;
	} else {
		const char *value = "";
		if (!strncmp(glid, "key-", 4))
			value = key_id = glid + 4;
		else if (!strncmp(glid, "user-", 5))
			value = user_id = glid + 5;
		if (!all_digits(value)) {
			struct strbuf q = STRBUF_INIT;
			hooks_quote(&q, glid, strlen(glid));
			refuse_before_request(r, "setting gl_id: gl_id=%s is invalid", q.buf);
			strbuf_release(&q);
			return;
		}
	}
	/* env: Go marshals the map with sorted keys; a nil slice is null */
	strbuf_addstr(&env, "{\"GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE\":");
	json_strings(&env, &r->rel_alternates);
	strbuf_addstr(&env, ",\"GIT_OBJECT_DIRECTORY_RELATIVE\":");
	strbuf_add_json_string(&env, r->rel_object_dir, strlen(r->rel_object_dir));
	strbuf_addch(&env, '}');
	for (const char *p = r->repo_path.buf; *p; p++)
		if (*p != '\'')
			strbuf_addch(&project, *p);

	json_field(&json, &first, "action", "git-receive-pack", 16);
	json_field(&json, &first, "gl_repository", r->repo->gl_repository, strlen(r->repo->gl_repository));
	json_field(&json, &first, "project", project.buf, project.len);
	json_field(&json, &first, "changes", r->changes.buf, r->changes.len);
	json_field(&json, &first, "protocol", r->payload.protocol, strlen(r->payload.protocol));
	json_field(&json, &first, "relative_path", r->repo->relative_path, strlen(r->repo->relative_path));
	json_field(&json, &first, "env", env.buf, env.len);
	json_field(&json, &first, "username", username, strlen(username));
	json_field(&json, &first, "key_id", key_id, strlen(key_id));
	json_field(&json, &first, "user_id", user_id, strlen(user_id));
	strbuf_addstr(&json, first ? "{}" : "}");

	r->http = gitlab_post(r->g, "/allowed", json.buf, allowed_done, r, &err);
	if (!r->http)
		refuse_before_request(r, "%s", err.buf);
	strbuf_release(&json);
	strbuf_release(&env);
	strbuf_release(&project);
	strbuf_release(&err);
}

static void pre_receive_done(void *arg, long status, const char *ctype, const struct strbuf *body,
			     const char *error)
{
	struct hook_run *r = arg;
	struct strbuf msg = STRBUF_INIT, why = STRBUF_INIT;
	json_t *o = NULL;

	r->http = NULL;
	if (api_error(status, body, error, &msg) < 0) {
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "calling pre_receive endpoint: http post to gitlab api /pre_receive endpoint: %s", msg.buf);
	} else if (status != 200) {
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "calling pre_receive endpoint: pre-receive call failed with status: %ld", status);
	} else if (!is_json_type(ctype, &why)) {
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "calling pre_receive endpoint: /pre_receive endpoint respond with unsupported content type: %s",
			 why.buf);
	} else if (!(o = json_loadb(body->buf, body->len, JSON_DISABLE_EOF_CHECK, NULL)) || !json_is_object(o)) {
		/* (json_is_object() is a macro: it must not see the call itself) */
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "calling pre_receive endpoint: decoding response from /pre_receive endpoint: invalid JSON");
	} else if (!json_is_true(json_object_get(o, "reference_counter_increased"))) {
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "%s", "");
	} else {
		r->step++;
		hook_run_advance(r);
	}
	json_decref(o);
	strbuf_release(&msg);
	strbuf_release(&why);
}

void hook_step_pre_receive(struct hook_run *r)
{
	struct strbuf json = STRBUF_INIT, err = STRBUF_INIT;
	strbuf_addstr(&json, "{\"gl_repository\":");
	strbuf_add_json_string(&json, r->repo->gl_repository, strlen(r->repo->gl_repository));
	strbuf_addch(&json, '}');
	r->http = gitlab_post(r->g, "/pre_receive", json.buf, pre_receive_done, r, &err);
	if (!r->http)
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "calling pre_receive endpoint: http post to gitlab api /pre_receive endpoint: %s", err.buf);
	strbuf_release(&json);
	strbuf_release(&err);
}

/* Post-receive messages, formatted as upstream prints them for an 80 column terminal. */
#define MSG_WIDTH (80 - 8)
#define MSG_TEXT_WIDTH (MSG_WIDTH - 4)

static void center_line(struct strbuf *out, const char *s, size_t len)
{
	while (len && strchr(" \t\r\n\v\f", *s)) {
		s++;
		len--;
	}
	while (len && strchr(" \t\r\n\v\f", s[len - 1]))
		len--;
	if (len < MSG_WIDTH)
		for (size_t i = 0; i < (MSG_WIDTH - len) / 2; i++)
			strbuf_addch(out, ' ');
	strbuf_add(out, s, len);
}

static void print_alert(struct strbuf *out, const char *m)
{
	struct strbuf line = STRBUF_INIT;
	const char *p = m;
	for (int i = 0; i < MSG_WIDTH; i++)
		strbuf_addch(out, '=');
	strbuf_addstr(out, "\n\n");
	for (;;) {
		size_t n;
		while (*p && strchr(" \t\r\n\v\f", *p))
			p++;
		if (!*p)
			break;
		n = strcspn(p, " \t\r\n\v\f");
		if (line.len + 1 + n > MSG_TEXT_WIDTH) {
			center_line(out, line.buf, line.len);
			strbuf_addch(out, '\n');
			strbuf_reset(&line);
		}
		strbuf_add(&line, p, n);
		strbuf_addch(&line, ' ');
		p += n;
	}
	center_line(out, line.buf, line.len);
	strbuf_addstr(out, "\n\n");
	for (int i = 0; i < MSG_WIDTH; i++)
		strbuf_addch(out, '=');
	strbuf_release(&line);
}

static int print_messages(json_t *msgs, struct strbuf *out, struct strbuf *err)
{
	size_t i;
	json_t *m;
	if (!json_is_array(msgs))
		return 0;
	json_array_foreach(msgs, i, m) {
		const char *type = json_string_value(json_object_get(m, "type"));
		const char *text = json_string_value(json_object_get(m, "message"));
		strbuf_addch(out, '\n');
		if (!text)
			text = "";
		if (type && !strcmp(type, "basic")) {
			strbuf_addstr(out, text);
		} else if (type && !strcmp(type, "alert")) {
			print_alert(out, text);
		} else {
			strbuf_addf(err, "invalid message type: %s", type ? type : "");
			return -1;
		}
		strbuf_addstr(out, "\n\n");
	}
	return 0;
}

static void post_receive_done(void *arg, long status, const char *ctype, const struct strbuf *body,
			      const char *error)
{
	struct hook_run *r = arg;
	struct strbuf msg = STRBUF_INIT, why = STRBUF_INIT, out = STRBUF_INIT;
	json_t *o = NULL;

	r->http = NULL;
	if (api_error(status, body, error, &msg) < 0) {
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "GitLab: http post to gitlab api /post_receive endpoint: %s", msg.buf);
	} else if (status != 200) {
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "GitLab: post-receive call failed with status: %ld",
			 status);
	} else if (!is_json_type(ctype, &why)) {
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "GitLab: /post_receive endpoint respond with unsupported content type: %s", why.buf);
	} else if (!(o = json_loadb(body->buf, body->len, JSON_DISABLE_EOF_CHECK, NULL)) || !json_is_object(o)) {
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "GitLab: decoding response from /post_receive endpoint: invalid JSON");
	} else if (print_messages(json_object_get(o, "messages"), &out, &why) < 0) {
		if (out.len)
			r->on_output(r->arg, 1, out.buf, out.len);
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "error writing messages to stream: %s", why.buf);
	} else {
		if (out.len)
			r->on_output(r->arg, 1, out.buf, out.len);
		if (!json_is_true(json_object_get(o, "reference_counter_decreased"))) {
			hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL, "%s", "");
		} else {
			r->step++;
			hook_run_advance(r);
		}
	}
	json_decref(o);
	strbuf_release(&msg);
	strbuf_release(&why);
	strbuf_release(&out);
}

void hook_step_post_receive(struct hook_run *r)
{
	struct strbuf json = STRBUF_INIT, err = STRBUF_INIT;
	/* Go marshals this map with sorted keys; no push options is null */
	strbuf_addstr(&json, "{\"changes\":");
	strbuf_add_json_string(&json, r->changes.buf, r->changes.len);
	strbuf_addstr(&json, ",\"gl_repository\":");
	strbuf_add_json_string(&json, r->repo->gl_repository, strlen(r->repo->gl_repository));
	strbuf_addstr(&json, ",\"identifier\":");
	strbuf_add_json_string(&json, r->payload.userid, strlen(r->payload.userid));
	strbuf_addstr(&json, ",\"push_options\":");
	json_strings(&json, &r->push_options);
	strbuf_addch(&json, '}');
	r->http = gitlab_post(r->g, "/post_receive", json.buf, post_receive_done, r, &err);
	if (!r->http)
		hook_run_fail(r, HOOK_FAIL_OTHER, GRPC_INTERNAL,
			 "GitLab: http post to gitlab api /post_receive endpoint: %s", err.buf);
	strbuf_release(&json);
	strbuf_release(&err);
}


/* GITALY_HOOKS_PAYLOAD parsing, votes named by a payload, and small helpers for the hook code. */
#include "hooks/hooks.h"
#include "base/util.h"
#include "grpc/metadata.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* --- small helpers --- */

void hooks_quote(struct strbuf *out, const char *s, size_t len)
{
	strbuf_addch(out, '"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '"': strbuf_addstr(out, "\\\""); break;
		case '\\': strbuf_addstr(out, "\\\\"); break;
		case '\a': strbuf_addstr(out, "\\a"); break;
		case '\b': strbuf_addstr(out, "\\b"); break;
		case '\f': strbuf_addstr(out, "\\f"); break;
		case '\n': strbuf_addstr(out, "\\n"); break;
		case '\r': strbuf_addstr(out, "\\r"); break;
		case '\t': strbuf_addstr(out, "\\t"); break;
		case '\v': strbuf_addstr(out, "\\v"); break;
		default:
			if (c < 0x20 || c == 0x7f)
				strbuf_addf(out, "\\x%02x", c);
			else
				strbuf_addch(out, c);
		}
	}
	strbuf_addch(out, '"');
}

int hooks_validate_hex(const char *hex, size_t hexlen, struct strbuf *err)
{
	size_t len = strlen(hex);
	if (len != hexlen) {
		strbuf_addstr(err, "invalid object ID: ");
		hooks_quote(err, hex, len);
		strbuf_addf(err, ", expected length %zu, got %zu", hexlen, len);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		char c = hex[i];
		if ((c < '0' || c > '9') && (c < 'a' || c > 'f')) {
			strbuf_addstr(err, "invalid object ID: ");
			hooks_quote(err, hex, len);
			strbuf_addstr(err, ", invalid character ");
			strbuf_addf(err, "'%c'", c);
			return -1;
		}
	}
	return 0;
}

static char *json_str_dup(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return xstrdup(s ? s : "");
}

/* The first of several keys that is present (protobuf JSON accepts both spellings). */
static json_t *json_get2(json_t *o, const char *a, const char *b)
{
	json_t *v = json_object_get(o, a);
	return v ? v : json_object_get(o, b);
}

static char *json_str2(json_t *o, const char *a, const char *b)
{
	const char *s = json_string_value(json_get2(o, a, b));
	return xstrdup(s ? s : "");
}

static int payload_repo_from_json(const char *s, Gitaly__Repository **out, struct strbuf *err)
{
	json_error_t je;
	json_t *o = json_loads(s, 0, &je), *alts;
	Gitaly__Repository *r;

	if (!o || !json_is_object(o)) {
		strbuf_addf(err, "proto: syntax error in repository: %s", o ? "not an object" : je.text);
		json_decref(o);
		return -1;
	}
	r = xmalloc(sizeof(*r));
	gitaly__repository__init(r);
	/* every string on the heap so protobuf_c_message_free_unpacked() can free it */
	r->storage_name = json_str2(o, "storageName", "storage_name");
	r->relative_path = json_str2(o, "relativePath", "relative_path");
	r->git_object_directory = json_str2(o, "gitObjectDirectory", "git_object_directory");
	r->gl_repository = json_str2(o, "glRepository", "gl_repository");
	r->gl_project_path = json_str2(o, "glProjectPath", "gl_project_path");
	alts = json_get2(o, "gitAlternateObjectDirectories", "git_alternate_object_directories");
	if (json_is_array(alts) && json_array_size(alts)) {
		size_t n = json_array_size(alts);
		r->git_alternate_object_directories = xcalloc(n, sizeof(char *));
		for (size_t i = 0; i < n; i++) {
			const char *a = json_string_value(json_array_get(alts, i));
			r->git_alternate_object_directories[i] = xstrdup(a ? a : "");
		}
		r->n_git_alternate_object_directories = n;
	}
	json_decref(o);
	*out = r;
	return 0;
}

/* --- payload --- */

void hook_payload_release(struct hook_payload *p)
{
	free(p->object_format);
	free(p->runtime_dir);
	free(p->internal_socket);
	free(p->internal_socket_token);
	free(p->username);
	free(p->userid);
	free(p->protocol);
	free(p->remote_ip);
	if (p->repo)
		protobuf_c_message_free_unpacked(&p->repo->base, NULL);
	memset(p, 0, sizeof(*p));
}

int hook_payload_parse(const char *b64, size_t len, struct hook_payload *p, struct strbuf *err)
{
	struct strbuf why = STRBUF_INIT;
	json_t *o = NULL, *v;
	int rc = -1, dec;

	memset(p, 0, sizeof(*p));
	dec = txid_envelope_decode(b64, len, &o, &why);
	if (dec == -EINVAL) {
		strbuf_addstr(err, "illegal base64 data in hooks payload");
		goto out;
	}
	if (dec < 0) {
		strbuf_addf(err, "invalid hooks payload: %s", why.buf);
		goto out;
	}
	v = json_object_get(o, "requested_hooks");
	p->requested_hooks = json_is_integer(v) ? (unsigned)json_integer_value(v) : 0;
	if (!p->requested_hooks)
		p->requested_hooks = HOOK_ALL_HOOKS;
	p->object_format = json_str_dup(o, "object_format");
	p->runtime_dir = json_str_dup(o, "runtime_dir");
	p->internal_socket = json_str_dup(o, "internal_socket");
	p->internal_socket_token = json_str_dup(o, "internal_socket_token");
	v = json_object_get(o, "transaction");
	p->has_tx = txid_from_json(v, &p->tx) == 0;
	v = json_object_get(o, "transaction_id");
	p->transaction_id = json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
	v = json_object_get(o, "user_details");
	if (json_is_object(v)) {
		p->has_user = 1;
		p->username = json_str_dup(v, "username");
		p->userid = json_str_dup(v, "userid");
		p->protocol = json_str_dup(v, "protocol");
		p->remote_ip = json_str_dup(v, "remote_ip");
	}
	v = json_object_get(o, "repository");
	if (payload_repo_from_json(json_is_string(v) ? json_string_value(v) : "{}", &p->repo, err) < 0)
		goto out;
	rc = 0;
out:
	json_decref(o);
	strbuf_release(&why);
	if (rc < 0)
		hook_payload_release(p);
	return rc;
}

const char *hook_env_lookup(const char *const *env, size_t nr, const char *key, int last)
{
	size_t kl = strlen(key);
	const char *found = NULL;
	for (size_t i = 0; i < nr; i++) {
		if (env[i] && !strncmp(env[i], key, kl) && env[i][kl] == '=') {
			found = env[i] + kl + 1;
			if (!last)
				break;
		}
	}
	return found;
}

int hook_payload_from_env(const char *const *env, size_t nr, struct hook_payload *p, struct strbuf *err)
{
	const char *v = hook_env_lookup(env, nr, HOOK_PAYLOAD_ENV, 0);
	if (!v) {
		memset(p, 0, sizeof(*p));
		strbuf_addstr(err, "no hooks payload found in environment");
		return -1;
	}
	return hook_payload_parse(v, strlen(v), p, err);
}

int hook_payload_is_primary(const struct hook_payload *p)
{
	return !p->has_tx || p->tx.primary;
}

size_t hook_payload_hexlen(const struct hook_payload *p)
{
	return p->object_format && !strcmp(p->object_format, "sha256") ? 64 : 40;
}

/* --- votes --- */

struct deferred_vote {
	uv_timer_t timer;
	vote_done_fn done;
	void *arg;
	enum grpc_code code;
	const char *msg;
};

static void deferred_vote_closed(uv_handle_t *h)
{
	free(h->data);
}

static void deferred_vote_fire(uv_timer_t *t)
{
	struct deferred_vote *v = t->data;
	v->done(v->arg, v->code, v->msg);
	uv_close((uv_handle_t *)&v->timer, deferred_vote_closed);
}

void hook_payload_vote(struct gitaly *g, const struct hook_payload *p, enum vote_phase phase,
		       const uint8_t hash[20], vote_done_fn done, void *arg)
{
	struct deferred_vote *v;
	if (p->has_tx) {
		/* the vote goes to the praefect behind the payload's backchannel */
		vote_cast_info(g, &p->tx, phase, hash, done, arg);
		return;
	}
	v = xcalloc(1, sizeof(*v));
	v->done = done;
	v->arg = arg;
	v->code = GRPC_OK;
	uv_timer_init(g->loop, &v->timer);
	v->timer.data = v;
	uv_timer_start(&v->timer, deferred_vote_fire, 0, 0);
}

int hook_changes_force_deletions_only(const char *changes, size_t len, size_t hexlen)
{
	const char *p = changes, *end = changes + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
		/* "<zero> <zero> " */
		if (ll < 2 * hexlen + 2)
			return 0;
		for (size_t i = 0; i < 2 * hexlen + 2; i++) {
			char want = (i == hexlen || i == 2 * hexlen + 1) ? ' ' : '0';
			if (p[i] != want)
				return 0;
		}
		p += ll + (nl ? 1 : 0);
	}
	return 1;
}

void hook_reftx_vote(struct gitaly *g, const struct hook_payload *p, enum hook_reftx_state state,
		     const char *changes, size_t len, vote_done_fn done, void *arg)
{
	static const uint8_t none[20];
	uint8_t hash[20];
	struct hook_payload no_tx = { 0 };

	if (state != HOOK_REFTX_PREPARED && state != HOOK_REFTX_COMMITTED) {
		hook_payload_vote(g, &no_tx, VOTE_PHASE_UNKNOWN, none, done, arg);
		return;
	}
	if (hook_changes_force_deletions_only(changes, len, hook_payload_hexlen(p))) {
		hook_payload_vote(g, &no_tx, VOTE_PHASE_UNKNOWN, none, done, arg);
		return;
	}
	gitaly_sha1(changes, len, hash);
	hook_payload_vote(g, p, state == HOOK_REFTX_PREPARED ? VOTE_PHASE_PREPARED : VOTE_PHASE_COMMITTED,
			  hash, done, arg);
}


/* Split an absolute path into clean components ("." and ".." resolved lexically). */
static void split_clean(const char *path, struct strvec *out)
{
	const char *p = path;
	while (*p) {
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (out->nr) {
				free((char *)out->v[out->nr - 1]);
				out->v[--out->nr] = NULL;
			}
		} else if (n && !(n == 1 && p[0] == '.')) {
			char *c = xstrndup(p, n);
			strvec_push(out, c);
			free(c);
		}
		p += n;
		if (*p == '/')
			p++;
	}
}

/* Path of `target` relative to `base` (both absolute), as Go's filepath.Rel. */
void hooks_rel_path(const char *base, const char *target, struct strbuf *out)
{
	struct strvec b = STRVEC_INIT, t = STRVEC_INIT;
	size_t i = 0;
	split_clean(base, &b);
	split_clean(target, &t);
	while (i < b.nr && i < t.nr && !strcmp(b.v[i], t.v[i]))
		i++;
	for (size_t j = i; j < b.nr; j++)
		strbuf_addstr(out, out->len ? "/.." : "..");
	for (size_t j = i; j < t.nr; j++) {
		if (out->len)
			strbuf_addch(out, '/');
		strbuf_addstr(out, t.v[j]);
	}
	if (!out->len)
		strbuf_addch(out, '.');
	strvec_clear(&b);
	strvec_clear(&t);
}

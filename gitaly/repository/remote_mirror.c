/*
 * UpdateRemoteMirror (RemoteService, client streaming): push the
 * repository's branches and tags to a mirror given by URL, as upstream
 * decides what to push (docs/technical/remotes.md, "UpdateRemoteMirror").
 * Steps: the mirror's refs (ls-remote), ours (for-each-ref), our default
 * branch, then ancestry checks one by one, then `git push` in batches of 10.
 */
#include "repository/repository.h"
#include "base/log.h"
#include "base/util.h"
#include "remote.pb-c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/banned.h"

#define MIRROR_PUSH_BATCH 10
#define MIRROR_MAX_DIVERGENT 100
#define MIRROR_OUT_CAP (256 * 1024 * 1024)

struct mref {
	char *name, *oid;
	int matched;        /* remote side: a local ref of that name was seen */
};

struct mirror {
	struct gitaly_call op;
	Gitaly__UpdateRemoteMirrorRequest *first;
	struct strvec matchers;                /* only_branches_matching of every message */
	int messages, failed;
	char *path;
	char remote_name[32];
	struct reposvc_remote remote;
	struct git_cmd *cmd;
	struct mref *theirs, *ours;
	size_t nr_theirs, nr_ours;
	char *default_branch;
	int default_exists;
	/* the checks: ours[] entries that diverge (keep_divergent_refs), then remote-only refs */
	size_t check_i;
	int checking_deletes;
	struct strvec updates, deletes, divergent;
	struct strvec refspecs;
	size_t pushed;
};

static void mref_free(struct mref *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].oid);
	}
	free(v);
}

static void mirror_release(struct gitaly_call *op)
{
	struct mirror *m = container_of(op, struct mirror, op);
	msg_free(m->first);
	strvec_clear(&m->matchers);
	free(m->path);
	reposvc_remote_release(&m->remote);
	mref_free(m->theirs, m->nr_theirs);
	mref_free(m->ours, m->nr_ours);
	free(m->default_branch);
	strvec_clear(&m->updates);
	strvec_clear(&m->deletes);
	strvec_clear(&m->divergent);
	strvec_clear(&m->refspecs);
	free(m);
}

static void mirror_cancel(struct gitaly_call *op)
{
	reposvc_kill(container_of(op, struct mirror, op)->cmd);
}

static void mirror_fail(struct mirror *m, enum grpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void mirror_fail(struct mirror *m, enum grpc_code code, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	reposvc_remote_redact(&m->remote, &sb);
	reposvc_finish(&m->op, code, sb.buf);
	strbuf_release(&sb);
}

static int mirror_gone(struct mirror *m)
{
	if (!gitaly_call_gone(&m->op))
		return 0;
	reposvc_finish(&m->op, GRPC_CANCELLED, "context canceled");
	return 1;
}

static void mirror_run(struct mirror *m, struct git_call *gc, git_capture_fn done)
{
	struct strbuf msg = STRBUF_INIT;
	gc->git_dir = m->path;
	gc->repo = m->first->repository;
	gc->rpc = m->op.call;
	if (gitaly_git_capture(m->op.g, gc, NULL, 0, MIRROR_OUT_CAP, done, m, &m->cmd, &msg) < 0)
		mirror_fail(m, GRPC_INTERNAL, "%s", msg.buf);
	strbuf_release(&msg);
}

/*
 * `*` matches anything, everything else itself (upstream's pattern, as a
 * glob). Greedy with one backtrack point, so O(len(pat) * len(s)) for
 * whatever pattern a client sends.
 */
static int glob_match(const char *pat, const char *s)
{
	const char *star = NULL, *resume = NULL;
	while (*s) {
		if (*pat == '*') {
			star = pat++;
			resume = s;
		} else if (*pat == *s) {
			pat++;
			s++;
		} else if (star) {
			pat = star + 1;
			s = ++resume;
		} else {
			return 0;
		}
	}
	while (*pat == '*')
		pat++;
	return !*pat;
}

/* Tags always; branches when no pattern was given or one matches the name after refs/heads/. */
static int ref_wanted(const struct mirror *m, const char *name)
{
	if (!strncmp(name, "refs/tags/", 10))
		return name[10] != '\0';
	if (strncmp(name, "refs/heads/", 11) || !name[11])
		return 0;
	if (!m->matchers.nr)
		return 1;
	for (size_t i = 0; i < m->matchers.nr; i++)
		if (glob_match(m->matchers.v[i], name + 11))
			return 1;
	return 0;
}

static struct mref *find_ref(struct mref *v, size_t n, const char *name)
{
	for (size_t lo = 0, hi = n; lo < hi;) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(v[mid].name, name);
		if (!c)
			return &v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int cmp_mref(const void *a, const void *b)
{
	return strcmp(((const struct mref *)a)->name, ((const struct mref *)b)->name);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* --- step 5: push in batches, the default branch first --- */

static void push_next(struct mirror *m);

static void push_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct mirror *m = arg;
	(void)out;
	m->cmd = NULL;
	if (mirror_gone(m))
		return;
	if (status != 0) {
		struct strbuf s = STRBUF_INIT, q = STRBUF_INIT, text = STRBUF_INIT;
		struct log_entry e;
		strbuf_add(&text, err->buf, MIN(err->len, (size_t)65536));
		reposvc_remote_redact(&m->remote, &text);
		if (log_begin(&e, LOG_WARN, "push to mirror failed")) {
			log_strn(&e, "stderr", text.buf, text.len);
			log_end(&e);
		}
		gitaly_describe_status(&s, status);
		strbuf_add_json_string(&q, text.buf, text.len);
		mirror_fail(m, GRPC_INTERNAL, "push to mirror: git push: %s, stderr: %s", s.buf, q.buf);
		strbuf_release(&s);
		strbuf_release(&q);
		strbuf_release(&text);
		return;
	}
	push_next(m);
}

static void push_next(struct mirror *m)
{
	struct strvec args = STRVEC_INIT, flags = STRVEC_INIT;
	struct git_call gc = { 0 };
	size_t n = MIN((size_t)MIRROR_PUSH_BATCH, m->refspecs.nr - m->pushed);

	if (!n) {
		Gitaly__UpdateRemoteMirrorResponse resp = GITALY__UPDATE_REMOTE_MIRROR_RESPONSE__INIT;
		ProtobufCBinaryData *refs = xcalloc(m->divergent.nr + 1, sizeof(*refs));
		for (size_t i = 0; i < m->divergent.nr; i++) {
			refs[i].data = (uint8_t *)m->divergent.v[i];
			refs[i].len = strlen(m->divergent.v[i]);
		}
		resp.divergent_refs = refs;
		resp.n_divergent_refs = m->divergent.nr;
		reposvc_reply(&m->op, &resp);
		free(refs);
		return;
	}
	if (!m->first->keep_divergent_refs)
		strvec_push(&flags, "--force");
	strvec_push(&args, m->remote_name);
	for (size_t i = 0; i < n; i++)
		strvec_push(&args, m->refspecs.v[m->pushed + i]);
	m->pushed += n;
	gc.subcmd = "push";
	gc.flags = flags.v;
	gc.args = args.v;
	gc.env = reposvc_remote_env(&m->remote);
	mirror_run(m, &gc, push_done);
	strvec_clear(&args);
	strvec_clear(&flags);
}

static void plan_push(struct mirror *m)
{
	/* sorted so that a retry pushes the same batches; the default branch goes first */
	qsort(m->updates.v, m->updates.nr, sizeof(char *), cmp_str);
	qsort(m->deletes.v, m->deletes.nr, sizeof(char *), cmp_str);
	for (size_t i = 0; i < m->updates.nr; i++)
		if (ref_wanted(m, m->updates.v[i]))
			strvec_push(&m->refspecs, m->updates.v[i]);
	for (size_t i = 0; i < m->deletes.nr; i++)
		if (ref_wanted(m, m->deletes.v[i]))
			strvec_pushf(&m->refspecs, ":%s", m->deletes.v[i]);
	for (size_t i = 1; i < m->refspecs.nr; i++) {
		const char *s = m->refspecs.v[i];
		if (!strcmp(s[0] == ':' ? s + 1 : s, m->default_branch)) {
			m->refspecs.v[i] = m->refspecs.v[0];
			m->refspecs.v[0] = s;
			break;
		}
	}
	push_next(m);
}

/* --- step 4: ancestry checks --- */

static void check_next(struct mirror *m);

static void is_ancestor_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct mirror *m = arg;
	int ancestor = status == 0;

	(void)out;
	m->cmd = NULL;
	if (mirror_gone(m))
		return;
	/* 1: not an ancestor; 128: the mirror's commit is unknown here, which counts as diverged */
	if (status != 0 && status != 1 && status != 128) {
		struct strbuf s = STRBUF_INIT;
		gitaly_describe_status(&s, status);
		mirror_fail(m, GRPC_INTERNAL, "checking for ancestry: %s", err->len ? err->buf : s.buf);
		strbuf_release(&s);
		return;
	}
	if (!m->checking_deletes) {
		struct mref *o = &m->ours[m->check_i];
		if (ancestor) {
			strvec_push(&m->updates, o->name);
		} else if (ref_wanted(m, o->name) && m->divergent.nr < MIRROR_MAX_DIVERGENT) {
			strvec_push(&m->divergent, o->name);
		}
	} else if (ancestor) {
		/* merged into our default branch: the mirror's extra branch may go */
		strvec_push(&m->deletes, m->theirs[m->check_i].name);
	}
	m->check_i++;
	check_next(m);
}

static void check_next(struct mirror *m)
{
	for (;;) {
		const char *a = NULL, *b = NULL;
		if (!m->checking_deletes) {
			for (; m->check_i < m->nr_ours; m->check_i++) {
				struct mref *o = &m->ours[m->check_i], *t;
				if (!o->oid)
					continue;   /* symbolic */
				t = find_ref(m->theirs, m->nr_theirs, o->name);
				if (t)
					t->matched = 1;
				if (!t) {
					strvec_push(&m->updates, o->name);
				} else if (strcmp(t->oid, o->oid)) {
					if (!m->first->keep_divergent_refs) {
						strvec_push(&m->updates, o->name);
						continue;
					}
					a = t->oid;
					b = o->oid;
					break;
				}
			}
			if (!a) {
				m->checking_deletes = 1;
				m->check_i = 0;
				/* without our default branch, or keeping divergent refs, nothing is deleted */
				if (!m->default_exists || m->first->keep_divergent_refs)
					m->check_i = m->nr_theirs;
			}
		}
		if (m->checking_deletes && !a) {
			for (; m->check_i < m->nr_theirs; m->check_i++)
				if (!m->theirs[m->check_i].matched)
					break;
			if (m->check_i == m->nr_theirs) {
				plan_push(m);
				return;
			}
			a = m->theirs[m->check_i].oid;
			b = m->default_branch;
		}
		{
			const char *flags[] = { "--is-ancestor", NULL };
			const char *args[] = { a, b, NULL };
			struct git_call gc = { 0 };
			gc.subcmd = "merge-base";
			gc.flags = flags;
			gc.args = args;
			mirror_run(m, &gc, is_ancestor_done);
			return;
		}
	}
}

/* --- steps 1-3: their refs, ours, our default branch --- */

/* "<oid> <name> [<target>]" or "<oid>\t<name>" lines into a sorted array; peeled tags are skipped. */
static void parse_refs(const struct strbuf *out, char sep, struct mref **v, size_t *n)
{
	const char *p = out->buf, *end = out->buf + out->len;
	size_t alloc = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
		const char *s1 = memchr(p, sep, (size_t)(e - p)), *name, *s2;
		if (s1) {
			name = s1 + 1;
			s2 = memchr(name, ' ', (size_t)(e - name));
			if (!(e - name >= 3 && !memcmp(e - 3, "^{}", 3))) {
				if (*n == alloc) {
					alloc = alloc ? alloc * 2 : 64;
					*v = xrealloc(*v, alloc * sizeof(**v));
				}
				(*v)[*n].name = xstrndup(name, (size_t)((s2 ? s2 : e) - name));
				/* symbolic refs carry a target and no oid of their own here */
				(*v)[*n].oid = s2 && s2 + 1 < e ? NULL : xstrndup(p, (size_t)(s1 - p));
				(*v)[*n].matched = 0;
				(*n)++;
			}
		}
		p = nl ? nl + 1 : end;
	}
	if (*n)
		qsort(*v, *n, sizeof(**v), cmp_mref);
}

static void head_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct mirror *m = arg;
	m->cmd = NULL;
	if (mirror_gone(m))
		return;
	if (status != 0) {
		mirror_fail(m, GRPC_INTERNAL, "get default branch: %.*s", (int)err->len, err->buf);
		return;
	}
	while (out->len && out->buf[out->len - 1] == '\n')
		strbuf_setlen(out, out->len - 1);
	m->default_branch = xstrdup(out->buf);
	m->default_exists = find_ref(m->ours, m->nr_ours, m->default_branch) != NULL;
	check_next(m);
}

static void ours_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const args[] = { "HEAD", NULL };
	struct mirror *m = arg;
	struct git_call gc = { 0 };
	m->cmd = NULL;
	if (mirror_gone(m))
		return;
	if (status != 0) {
		mirror_fail(m, GRPC_INTERNAL, "get local references: %.*s", (int)err->len, err->buf);
		return;
	}
	parse_refs(out, ' ', &m->ours, &m->nr_ours);
	gc.subcmd = "symbolic-ref";
	gc.args = args;
	mirror_run(m, &gc, head_done);
}

static void theirs_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	static const char *const flags[] = { "--format=%(objectname) %(refname) %(symref)", NULL };
	static const char *const args[] = { "refs/heads/", "refs/tags/", NULL };
	struct mirror *m = arg;
	struct git_call gc = { 0 };
	m->cmd = NULL;
	if (mirror_gone(m))
		return;
	if (status != 0) {
		struct strbuf s = STRBUF_INIT, q = STRBUF_INIT;
		gitaly_describe_status(&s, status);
		strbuf_add_json_string(&q, err->buf, MIN(err->len, (size_t)65536));
		mirror_fail(m, GRPC_INTERNAL, "get remote references: %s, stderr: %s", s.buf, q.buf);
		strbuf_release(&s);
		strbuf_release(&q);
		return;
	}
	parse_refs(out, '\t', &m->theirs, &m->nr_theirs);
	gc.subcmd = "for-each-ref";
	gc.flags = flags;
	gc.args = args;
	mirror_run(m, &gc, ours_done);
}

static void mirror_start(struct mirror *m)
{
	const Gitaly__UpdateRemoteMirrorRequest__Remote *r = m->first->remote;
	const char *args[] = { m->remote_name, "refs/heads/*", "refs/tags/*", NULL };
	struct strbuf err = STRBUF_INIT;
	struct git_call gc = { 0 };
	static unsigned counter;

	/* a name no configured remote has: upstream's "inmemory-" and 16 hex digits */
	snprintf(m->remote_name, sizeof(m->remote_name), "inmemory-%08x%08x", (unsigned)getpid(), ++counter);
	if (reposvc_remote_setup(&m->remote, m->remote_name, r->url, r->http_authorization_header,
				 r->resolved_address, &err) < 0) {
		mirror_fail(m, GRPC_INTERNAL, "%s", err.buf);
		strbuf_release(&err);
		return;
	}
	if (reposvc_remote_ssh(&m->remote, m->op.g->runtime_dir, m->first->ssh_key, m->first->known_hosts, &err) < 0) {
		mirror_fail(m, GRPC_INTERNAL, "build ssh invocation: %s", err.buf);
		strbuf_release(&err);
		return;
	}
	strbuf_release(&err);
	gc.subcmd = "ls-remote";
	gc.args = args;
	gc.env = reposvc_remote_env(&m->remote);
	mirror_run(m, &gc, theirs_done);
}

/* --- the stream --- */

static void add_matchers(struct mirror *m, const Gitaly__UpdateRemoteMirrorRequest *req)
{
	for (size_t i = 0; i < req->n_only_branches_matching; i++) {
		struct strbuf s = STRBUF_INIT;
		strbuf_add(&s, req->only_branches_matching[i].data, req->only_branches_matching[i].len);
		strvec_push(&m->matchers, s.buf);
		strbuf_release(&s);
	}
}

static void mirror_message(struct grpc_call *call, const uint8_t *buf, size_t len)
{
	struct mirror *m = grpc_call_user(call);
	Gitaly__UpdateRemoteMirrorRequest *req;
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	enum grpc_code code;

	if (m->failed)
		return;
	if (!(req = msg_unpack(call, &gitaly__update_remote_mirror_request__descriptor, buf, len))) {
		m->failed = 1;
		return;
	}
	if (m->messages++) {
		add_matchers(m, req);
		msg_free(req);
		return;
	}
	code = gitaly_locate(m->op.g, req->repository, 0, &path, &msg);
	if (code == GRPC_OK && !req->remote) {
		code = GRPC_INVALID_ARGUMENT;
		strbuf_addstr(&msg, "missing Remote");
	} else if (code == GRPC_OK && (!req->remote->url || !*req->remote->url)) {
		code = GRPC_INVALID_ARGUMENT;
		strbuf_addstr(&msg, "remote is missing URL");
	}
	if (code != GRPC_OK) {
		m->failed = 1;
		gitaly_call_finish(&m->op, code, msg.buf, NULL);
		msg_free(req);
	} else {
		m->first = req;
		m->path = strbuf_detach(&path, NULL);
		add_matchers(m, req);
	}
	strbuf_release(&path);
	strbuf_release(&msg);
}

static void mirror_half_close(struct grpc_call *call)
{
	struct mirror *m = grpc_call_user(call);
	if (m->failed)
		return;
	if (!m->messages) {
		m->failed = 1;
		gitaly_call_finish(&m->op, GRPC_INTERNAL, "receive first request: EOF", NULL);
		return;
	}
	m->failed = 1;   /* no more messages matter */
	gitaly_call_hold(&m->op);   /* the work, until reposvc_finish() */
	mirror_start(m);
}

static void mirror_close(struct grpc_call *call, enum grpc_code code)
{
	struct mirror *m = grpc_call_user(call);
	(void)code;
	gitaly_call_closed(&m->op);
}

static const struct grpc_call_ops mirror_ops = {
	.on_message = mirror_message,
	.on_half_close = mirror_half_close,
	.on_close = mirror_close,
};

static void update_remote_mirror(struct grpc_call *call, void *data)
{
	struct mirror *m = xcalloc(1, sizeof(*m));
	gitaly_call_init(&m->op, data, call, mirror_release);
	m->op.cancel = mirror_cancel;
	strvec_init(&m->matchers);
	strvec_init(&m->updates);
	strvec_init(&m->deletes);
	strvec_init(&m->divergent);
	strvec_init(&m->refspecs);
	reposvc_remote_init(&m->remote);
	grpc_call_set_ops(call, &mirror_ops, m);
}

void reposvc_register_remote_mirror(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_method(s, "/gitaly.RemoteService/UpdateRemoteMirror", update_remote_mirror, g);
}

/*
 * RefService listings of ref names: ListBranchNamesContainingCommit,
 * ListTagNamesContainingCommit (streamed from `for-each-ref --contains`)
 * and FindRefsByOID (`for-each-ref --points-at`, unary). See
 * docs/technical/refs.md.
 */
#include "read/read.h"
#include "read/diff.h"
#include "hooks/hooks.h"
#include "base/pb.h"
#include "base/util.h"
#include "ref.pb-c.h"

#include <stdlib.h>
#include <string.h>

/* FindRefsByOID answers in one message: its listing is capped. */
#define REFS_BY_OID_MAX (64u * 1024 * 1024)

struct ref_names {
	struct rd rd;
	const char *commit_id;
	uint32_t limit;
	const char *prefix;            /* "refs/heads/" or "refs/tags/", stripped from names */
	struct strbuf batch;
	size_t nbatch;
};

static void rn_free(struct rd *rd)
{
	struct ref_names *x = (struct ref_names *)rd;
	strbuf_release(&x->batch);
}

static void rn_writable(struct rd *rd)
{
	if (!rd_full(rd))
		rd_lines_resume(rd);
}

static void rn_flush(struct ref_names *x)
{
	if (x->nbatch && x->rd.base.call)
		grpc_call_send(x->rd.base.call, x->batch.buf, x->batch.len);
	strbuf_reset(&x->batch);
	x->nbatch = 0;
}

static void rn_line(struct rd *rd, char *line, size_t len)
{
	struct ref_names *x = (struct ref_names *)rd;
	size_t plen = strlen(x->prefix);

	/* upstream's chunker sizes each name as a string message of its own */
	if (x->nbatch && x->batch.len + len + 6 >= BATCH_BYTES)
		rn_flush(x);
	if (len >= plen && !memcmp(line, x->prefix, plen)) {
		line += plen;
		len -= plen;
	}
	/* branch_names / tag_names are field 2 of both responses */
	pb_put_bytes(&x->batch, 2, line, len);
	x->nbatch++;
	if (rd->base.call && rd_full(rd))
		rd_lines_pause(rd);
}

static void rn_end(struct rd *rd, int status, const struct strbuf *err)
{
	struct ref_names *x = (struct ref_names *)rd;
	(void)err;
	if (status == -E2BIG) {
		rd_finish(rd, GRPC_INTERNAL, "bufio.Scanner: token too long");
		return;
	}
	if (status != 0) {
		diff_git_failed(rd, GRPC_INTERNAL, NULL, status);
		return;
	}
	rn_flush(x);
	rd_ok(rd);
}

static void rn_format(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	struct ref_names *x = (struct ref_names *)rd;
	struct strbuf msg = STRBUF_INIT;
	struct strvec flags = STRVEC_INIT;
	const char *args[2];
	struct git_call gc;
	size_t hexsz = diff_hexsz(rd, status, out);
	(void)err;

	if (!hexsz)
		return;
	if (hooks_validate_hex(x->commit_id, hexsz, &msg) < 0) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "%s", msg.buf);
		strbuf_release(&msg);
		return;
	}
	strvec_push(&flags, "--format=%(refname)");
	strvec_pushf(&flags, "--contains=%s", x->commit_id);
	if (x->limit)
		strvec_pushf(&flags, "--count=%u", x->limit);
	/* the pattern is the prefix without its slash, as upstream passes it */
	args[0] = !strcmp(x->prefix, "refs/heads/") ? "refs/heads" : "refs/tags";
	args[1] = NULL;
	rd_git_call(rd, &gc, "for-each-ref");
	gc.flags = flags.v;
	gc.args = args;
	rd_lines_start(rd, &gc, '\n', rn_line, rn_end);
	strvec_clear(&flags);
}

static void rn_start(struct gitaly *g, struct grpc_call *call, void *req, const Gitaly__Repository *repo,
		     const char *commit_id, uint32_t limit, const char *prefix)
{
	struct ref_names *x = (struct ref_names *)rd_start(g, call, sizeof(*x), req, repo);
	if (!x)
		return;
	x->rd.on_free = rn_free;
	x->rd.on_writable = rn_writable;
	strbuf_init(&x->batch, 0);
	x->commit_id = commit_id ? commit_id : "";
	x->limit = limit;
	x->prefix = prefix;
	diff_object_format(&x->rd, rn_format);
}

static void list_branch_names_containing(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__ListBranchNamesContainingCommitRequest *req =
		msg_unpack(call, &gitaly__list_branch_names_containing_commit_request__descriptor, buf, len);
	if (req)
		rn_start(data, call, req, req->repository, req->commit_id, req->limit, "refs/heads/");
}

static void list_tag_names_containing(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__ListTagNamesContainingCommitRequest *req =
		msg_unpack(call, &gitaly__list_tag_names_containing_commit_request__descriptor, buf, len);
	if (req)
		rn_start(data, call, req, req->repository, req->commit_id, req->limit, "refs/tags/");
}

/* --- FindRefsByOID --- */

static void frbo_done(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	Gitaly__FindRefsByOIDResponse resp = GITALY__FIND_REFS_BY_OIDRESPONSE__INIT;
	struct strbuf msg = STRBUF_INIT;
	char **refs = NULL;
	size_t n = 0, alloc = 0;
	char *p, *end;

	if (status != 0) {
		/* git's usage errors (a bad --sort key, a malformed id) are the caller's */
		strbuf_addstr(&msg, "for-each-ref pipeline command: ");
		gitaly_describe_status(&msg, status);
		if (err->len) {
			strbuf_addstr(&msg, ", stderr: ");
			hooks_quote(&msg, err->buf, MIN(err->len, (size_t)4096));
		}
		rd_finish(rd, status == 129 ? GRPC_INVALID_ARGUMENT : GRPC_INTERNAL, "%s", msg.buf);
		strbuf_release(&msg);
		return;
	}
	/* lines are "<objectname> <refname>": the reply is the ref names */
	for (p = out->buf, end = out->buf + out->len; p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *sp;
		if (!nl)
			nl = end;
		*nl = '\0';
		sp = memchr(p, ' ', (size_t)(nl - p));
		ALLOC_GROW(refs, n + 1, alloc);
		refs[n++] = sp ? sp + 1 : p;
		p = nl + 1;
	}
	resp.refs = refs;
	resp.n_refs = n;
	rd_send(rd, &resp);
	free(refs);
	rd_ok(rd);
}

static void find_refs_by_oid(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__FindRefsByOIDRequest *req = msg_unpack(call, &gitaly__find_refs_by_oidrequest__descriptor, buf, len);
	static const char *const defaults[] = { "refs/tags/", "refs/heads/", NULL };
	struct strvec flags = STRVEC_INIT, args = STRVEC_INIT;
	struct git_call gc;
	struct rd *rd;

	if (!req)
		return;
	rd = rd_start(data, call, sizeof(*rd), req, req->repository);
	if (!rd)
		return;
	if (!req->oid || !*req->oid) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "empty Oid");
		return;
	}
	strvec_push(&flags, "--format=%(objectname) %(refname)");
	if (req->sort_field && *req->sort_field)
		strvec_pushf(&flags, "--sort=%s", req->sort_field);
	strvec_pushf(&flags, "--points-at=%s", req->oid);
	if (req->limit)
		strvec_pushf(&flags, "--count=%u", req->limit);
	for (size_t i = 0; i < req->n_ref_patterns; i++)
		strvec_push(&args, req->ref_patterns[i]);
	rd_git_call(rd, &gc, "for-each-ref");
	gc.flags = flags.v;
	gc.args = req->n_ref_patterns ? args.v : defaults;
	rd_capture(rd, &gc, REFS_BY_OID_MAX, frbo_done);
	strvec_clear(&flags);
	strvec_clear(&args);
}

void gitaly_register_ref_contains(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.RefService/ListBranchNamesContainingCommit", list_branch_names_containing, g);
	gitaly_add_unary(s, "/gitaly.RefService/ListTagNamesContainingCommit", list_tag_names_containing, g);
	gitaly_add_unary(s, "/gitaly.RefService/FindRefsByOID", find_refs_by_oid, g);
}

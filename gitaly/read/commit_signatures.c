/*
 * CommitService signature reads: GetCommitSignatures (the signature and the
 * signed text of commits) and FilterShasWithSignatures (which commits are
 * signed) (docs/technical/gitaly-reads.md, "Signatures"). Commits come from
 * the leased cat-file process, one at a time in request order; nothing is
 * read while the call's send queue is full. A signature that gitaly's own
 * signing keys made is reported as SIGNER_SYSTEM, any other as SIGNER_USER
 * (docs/technical/commit-signing.md).
 */
#include "read/read.h"
#include "read/pgpsig.h"
#include "read/sshsig.h"
#include "base/fs.h"
#include "base/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Go's %q for an ASCII-ish string: quotes, backslash escapes, \xNN for the rest. */
static void go_quote(struct strbuf *sb, const char *s, size_t len)
{
	strbuf_addch(sb, '"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			strbuf_addch(sb, '\\'), strbuf_addch(sb, (char)c);
		else if (c == '\n')
			strbuf_addstr(sb, "\\n");
		else if (c == '\t')
			strbuf_addstr(sb, "\\t");
		else if (c < 0x20 || c >= 0x7f)
			strbuf_addf(sb, "\\x%02x", c);
		else
			strbuf_addch(sb, (char)c);
	}
	strbuf_addch(sb, '"');
}

/* ObjectHash.ValidateHex: full length, lower-case hex. */
static int validate_hex(const char *oid, size_t hexsz, struct strbuf *msg)
{
	size_t len = strlen(oid);
	if (len != hexsz) {
		strbuf_addstr(msg, "invalid object ID: ");
		go_quote(msg, oid, len);
		strbuf_addf(msg, ", expected length %zu, got %zu", hexsz, len);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		char c = oid[i];
		if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))
			continue;
		strbuf_addstr(msg, "invalid object ID: ");
		go_quote(msg, oid, len);
		strbuf_addf(msg, ", invalid character '%c'", c);
		return -1;
	}
	return 0;
}

/*
 * Split a raw commit as upstream does: the first line starting "gpgsig " or
 * "gpgsig-sha256 " opens the signature, its continuation lines lose one
 * leading space, and it closes at the first empty line; every other line is
 * signed text.
 */
static void extract_signature(const char *buf, size_t len, struct strbuf *sig, struct strbuf *text)
{
	const char *p = buf, *end = buf + len;
	int saw = 0, in = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line = p;
		size_t n;
		if (!nl) {
			/* the last line without a newline is always text */
			strbuf_add(text, p, (size_t)(end - p));
			break;
		}
		n = (size_t)(nl - p) + 1;
		p = nl + 1;
		if (!saw && !in) {
			if (n >= 7 && !memcmp(line, "gpgsig ", 7)) {
				saw = in = 1;
				line += 7, n -= 7;
			} else if (n >= 14 && !memcmp(line, "gpgsig-sha256 ", 14)) {
				saw = in = 1;
				line += 14, n -= 14;
			}
		}
		if (in && !(n == 1 && line[0] == '\n')) {
			if (n && line[0] == ' ')
				line++, n--;
			strbuf_add(sig, line, n);
		} else if (in) {
			in = 0;
			strbuf_add(text, line, n);
		} else {
			strbuf_add(text, line, n);
		}
	}
	if (sig->len && sig->buf[sig->len - 1] == '\n')
		strbuf_setlen(sig, sig->len - 1);
}

/* --- GetCommitSignatures --- */

struct signatures {
	struct rd rd;
	Gitaly__GetCommitSignaturesRequest *req;
	size_t next;
	int waiting;
	/* [git] signing_key first, then rotated_signing_keys; one of each pair is set */
	struct sig_key {
		struct sshsig_key *ssh;
		struct pgpsig_key *pgp;
	} *keys;
	size_t nr_keys;
};

static void sig_free(struct rd *rd)
{
	struct signatures *x = (struct signatures *)rd;
	for (size_t i = 0; i < x->nr_keys; i++) {
		sshsig_key_free(x->keys[i].ssh);
		pgpsig_key_free(x->keys[i].pgp);
	}
	free(x->keys);
}

/* Key files are small; anything larger is not a key. */
#define KEY_FILE_MAX (1u << 20)

/*
 * Read every configured key, as upstream does on each call. A file that
 * cannot be read or a key that does not parse fails the call
 * (docs/technical/commit-signing.md).
 */
static int sig_load_keys(struct signatures *x, struct strbuf *msg)
{
	const struct gitaly_config *cfg = &x->rd.base.g->cfg;
	struct strbuf buf = STRBUF_INIT;
	size_t n;
	if (!cfg->git_signing_key)
		return 0;
	n = 1 + cfg->git_rotated_signing_keys.nr;
	x->keys = xcalloc(n, sizeof(*x->keys));
	for (size_t i = 0; i < n; i++) {
		const char *path = i ? cfg->git_rotated_signing_keys.v[i - 1] : cfg->git_signing_key;
		int err;
		strbuf_reset(&buf);
		if ((err = fs_read_file(path, KEY_FILE_MAX, &buf)) < 0) {
			const char *why = strerror(-err);
			/* Go's error texts are lower case ("no such file or directory") */
			strbuf_addf(msg, "failed to parse signing key: open file: open %s: %c%s", path,
				    tolower((unsigned char)why[0]), why + 1);
			break;
		}
		x->nr_keys++;
		if (!sshsig_is_ssh_key(buf.buf, buf.len)) {
			const char *why = "";
			if (!(x->keys[i].pgp = pgpsig_key_parse((const uint8_t *)buf.buf, buf.len, &why))) {
				strbuf_addf(msg, "failed to parse signing key: read entity: %s", why);
				break;
			}
			continue;
		}
		if (!(x->keys[i].ssh = sshsig_key_parse(buf.buf, buf.len))) {
			strbuf_addf(msg, "failed to parse signing key: parse private key: \"%s\" is not an unencrypted OpenSSH key", path);
			break;
		}
	}
	strbuf_release(&buf);
	return msg->len ? -1 : 0;
}

static Gitaly__GetCommitSignaturesResponse__Signer sig_signer(struct signatures *x, const struct strbuf *sig,
							      const struct strbuf *text)
{
	int64_t now = (int64_t)time(NULL);
	for (size_t i = 0; i < x->nr_keys; i++) {
		const struct sig_key *k = &x->keys[i];
		if ((k->ssh && !sshsig_verify(k->ssh, sig->buf, sig->len, text->buf, text->len)) ||
		    (k->pgp && !pgpsig_verify(k->pgp, sig->buf, sig->len, text->buf, text->len, now)))
			return GITALY__GET_COMMIT_SIGNATURES_RESPONSE__SIGNER__SIGNER_SYSTEM;
	}
	return GITALY__GET_COMMIT_SIGNATURES_RESPONSE__SIGNER__SIGNER_USER;
}

static void sig_next(struct signatures *x);

static void sig_read(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct signatures *x = arg;
	const char *id = x->req->commit_ids[x->next++];
	struct strbuf sig = STRBUF_INIT, text = STRBUF_INIT;
	(void)info;
	if (status == CATFILE_MISSING) {
		sig_next(x);
		return;
	}
	if (status < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "reading commit: %s", strerror(-status));
		return;
	}
	extract_signature(data->buf, data->len, &sig, &text);
	if (sig.len) {
		Gitaly__GetCommitSignaturesResponse resp = GITALY__GET_COMMIT_SIGNATURES_RESPONSE__INIT;
		size_t off = 0;
		resp.commit_id = (char *)id;
		resp.signature.data = (uint8_t *)sig.buf;
		resp.signature.len = sig.len;
		resp.signer = sig_signer(x, &sig, &text);
		rd_send(&x->rd, &resp);
		/* then the signed text alone, in chunks */
		resp.commit_id = (char *)"";
		resp.signature.len = 0;
		resp.signer = GITALY__GET_COMMIT_SIGNATURES_RESPONSE__SIGNER__SIGNER_UNSPECIFIED;
		while (off < text.len) {
			size_t n = MIN(text.len - off, (size_t)MSG_CHUNK);
			resp.signed_text.data = (uint8_t *)text.buf + off;
			resp.signed_text.len = n;
			rd_send(&x->rd, &resp);
			off += n;
		}
	}
	strbuf_release(&sig);
	strbuf_release(&text);
	sig_next(x);
}

static void sig_next(struct signatures *x)
{
	struct strbuf rev = STRBUF_INIT;
	if (!x->rd.base.call)
		return;
	if (x->next == x->req->n_commit_ids) {
		rd_ok(&x->rd);
		return;
	}
	if (rd_full(&x->rd)) {
		x->waiting = 1;
		return;
	}
	strbuf_addstr(&rev, x->req->commit_ids[x->next]);
	strbuf_addstr(&rev, "^{commit}");
	if (!x->rd.cf || catfile_read(x->rd.cf, rev.buf, rev.len, 64u << 20, sig_read, x) < 0)
		rd_finish(&x->rd, GRPC_INTERNAL, "reading commit: object reader failed");
	strbuf_release(&rev);
}

static void sig_writable(struct rd *rd)
{
	struct signatures *x = (struct signatures *)rd;
	if (x->waiting) {
		x->waiting = 0;
		sig_next(x);
	}
}

static void sig_leased(struct rd *rd)
{
	sig_next((struct signatures *)rd);
}

static void sig_format(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	struct signatures *x = (struct signatures *)rd;
	struct strbuf msg = STRBUF_INIT;
	size_t hexsz;
	(void)err;
	if (status != 0) {
		rd_finish(rd, GRPC_INTERNAL, "detecting object hash: rev-parse failed");
		return;
	}
	hexsz = out->len >= 6 && !memcmp(out->buf, "sha256", 6) ? 64 : 40;
	if (!x->req->n_commit_ids) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "empty CommitIds");
		return;
	}
	for (size_t i = 0; i < x->req->n_commit_ids; i++) {
		if (validate_hex(x->req->commit_ids[i] ? x->req->commit_ids[i] : "", hexsz, &msg) < 0) {
			rd_finish(rd, GRPC_INVALID_ARGUMENT, "%s", msg.buf);
			strbuf_release(&msg);
			return;
		}
	}
	if (sig_load_keys(x, &msg) < 0) {
		rd_finish(rd, GRPC_UNKNOWN, "%s", msg.buf);
		strbuf_release(&msg);
		return;
	}
	rd_lease(rd, sig_leased);
}

static void get_commit_signatures(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__GetCommitSignaturesRequest *req =
		msg_unpack(call, &gitaly__get_commit_signatures_request__descriptor, buf, len);
	static const char *const flags[] = { "--show-object-format", NULL };
	struct signatures *x;
	struct git_call gc;
	if (!req)
		return;
	x = (struct signatures *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	x->rd.on_writable = sig_writable;
	x->rd.on_free = sig_free;
	rd_git_call(&x->rd, &gc, "rev-parse");
	gc.flags = flags;
	rd_capture(&x->rd, &gc, 4096, sig_format);
}

/* --- FilterShasWithSignatures --- */

struct filter {
	struct rd_in in;
	Gitaly__FilterShasWithSignaturesRequest *cur;
	size_t next;
	int leased, waiting;
	ProtobufCBinaryData *found;
	size_t nfound, alloc;
};

static void filter_free(struct rd *rd)
{
	struct filter *x = (struct filter *)rd;
	if (x->cur != rd->req)
		msg_free(x->cur);
	free(x->found);
}

static void filter_step(struct filter *x);

/* The message is answered (one response per request message, maybe empty). */
static void filter_answer(struct filter *x)
{
	Gitaly__FilterShasWithSignaturesResponse resp = GITALY__FILTER_SHAS_WITH_SIGNATURES_RESPONSE__INIT;
	resp.shas = x->found;
	resp.n_shas = x->nfound;
	rd_send(&x->in.rd, &resp);
	x->nfound = 0;
	if (x->cur != x->in.rd.req)
		msg_free(x->cur);
	x->cur = NULL;
	if (x->in.half_closed)
		rd_ok(&x->in.rd);
	else if (x->in.rd.base.call)
		grpc_call_resume_recv(x->in.rd.base.call);
}

static void filter_read(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct filter *x = arg;
	const ProtobufCBinaryData *sha = &x->cur->shas[x->next++];
	Gitaly__GitCommit *c;
	if (status < 0) {
		rd_finish(&x->in.rd, GRPC_INTERNAL, "reading commit: %s", strerror(-status));
		return;
	}
	if (status == 0) {
		c = gitaly_commit_parse(info->oid, data->buf, data->len);
		if (c->signature_type != GITALY__SIGNATURE_TYPE__NONE) {
			ALLOC_GROW(x->found, x->nfound + 1, x->alloc);
			x->found[x->nfound++] = *sha;   /* borrowed from the request until answered */
		}
		gitaly_commit_free(c);
	}
	filter_step(x);
}

static void filter_step(struct filter *x)
{
	struct strbuf rev = STRBUF_INIT;
	if (!x->cur || !x->leased || !x->in.rd.base.call)
		return;
	while (x->next < x->cur->n_shas && rd_has_nul(x->cur->shas[x->next].data, x->cur->shas[x->next].len))
		x->next++;   /* never a commit */
	if (x->next == x->cur->n_shas) {
		filter_answer(x);
		return;
	}
	if (rd_full(&x->in.rd)) {
		x->waiting = 1;
		return;
	}
	strbuf_add(&rev, x->cur->shas[x->next].data, x->cur->shas[x->next].len);
	strbuf_addstr(&rev, "^{commit}");
	if (!x->in.rd.cf || catfile_read(x->in.rd.cf, rev.buf, rev.len, 64u << 20, filter_read, x) < 0)
		rd_finish(&x->in.rd, GRPC_INTERNAL, "reading commit: object reader failed");
	strbuf_release(&rev);
}

static void filter_leased(struct rd *rd)
{
	struct filter *x = (struct filter *)rd;
	x->leased = 1;
	filter_step(x);
}

static void filter_writable(struct rd *rd)
{
	struct filter *x = (struct filter *)rd;
	if (x->waiting) {
		x->waiting = 0;
		filter_step(x);
	}
}

static void filter_request(struct rd_in *in, void *req, int first)
{
	struct filter *x = (struct filter *)in;
	if (first) {
		x->in.rd.on_free = filter_free;
		x->in.rd.on_writable = filter_writable;
		rd_lease(&x->in.rd, filter_leased);
		if (!x->in.rd.base.call)
			return;
	}
	x->cur = req;
	x->next = 0;
	grpc_call_pause_recv(x->in.rd.base.call);
	filter_step(x);
}

static void filter_half_close(struct rd_in *in)
{
	struct filter *x = (struct filter *)in;
	if (!x->cur)
		rd_ok(&x->in.rd);
}

static const Gitaly__Repository *filter_repository(const void *req)
{
	return ((const Gitaly__FilterShasWithSignaturesRequest *)req)->repository;
}

static const struct rd_in_ops filter_ops = {
	.desc = &gitaly__filter_shas_with_signatures_request__descriptor,
	.size = sizeof(struct filter),
	.repository = filter_repository,
	.on_request = filter_request,
	.on_half_close = filter_half_close,
};

static void filter_shas_with_signatures(struct grpc_call *call, void *data)
{
	rd_in_start(call, data, &filter_ops);
}

void gitaly_register_commit_signatures(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.CommitService/GetCommitSignatures", get_commit_signatures, g);
	gitaly_add_method(s, "/gitaly.CommitService/FilterShasWithSignatures", filter_shas_with_signatures, g);
}

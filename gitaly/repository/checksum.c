/*
 * CalculateChecksum: XOR of SHA-1s of `git show-ref --head` lines, with
 * upstream's quirks (unanchored filter, leading zero bytes of the result
 * dropped), which replicas must agree on bit for bit; see
 * docs/technical/gitaly-repository.md, "CalculateChecksum".
 */
#include "repository/repository.h"
#include "base/util.h"
#include "repository.pb-c.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "base/banned.h"

/* Upstream scans lines with a 64 KiB token limit; a longer line is an error there too. */
#define MAX_LINE (64 * 1024)

struct checksum_op {
	struct gitaly_call op;
	Gitaly__CalculateChecksumRequest *req;
	char *path;
	struct git_cmd *cmd;
	struct strbuf line;
	uint8_t sum[20];
	int too_long;
};

static void checksum_release(struct gitaly_call *op)
{
	struct checksum_op *c = container_of(op, struct checksum_op, op);
	msg_free(c->req);
	free(c->path);
	strbuf_release(&c->line);
	free(c);
}

static void checksum_cancel(struct gitaly_call *op)
{
	reposvc_kill(container_of(op, struct checksum_op, op)->cmd);
}

/* The ref filter: "HEAD" or "refs/<kind>/" anywhere in the line. */
static int line_counts(const char *s, size_t len)
{
	static const char *const kinds[] = {
		"refs/heads/", "refs/tags/", "refs/keep-around/", "refs/merge-requests/",
		"refs/environments/", "refs/notes/",
	};
	if (memmem(s, len, "HEAD", 4))
		return 1;
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
		if (memmem(s, len, kinds[i], strlen(kinds[i])))
			return 1;
	return 0;
}

static void add_line(struct checksum_op *c, const char *s, size_t len)
{
	uint8_t h[20];
	if (len && s[len - 1] == '\r')   /* line splitting drops a trailing CR */
		len--;
	if (!line_counts(s, len))
		return;
	gitaly_sha1(s, len, h);
	for (int i = 0; i < 20; i++)
		c->sum[i] ^= h[i];
}

static void show_ref_stdout(struct git_cmd *cmd, const char *buf, size_t len)
{
	struct checksum_op *c = git_cmd_user(cmd);
	if (c->too_long)
		return;
	while (len) {
		const char *nl = memchr(buf, '\n', len);
		size_t n = nl ? (size_t)(nl - buf) : len;
		if (c->line.len + n > MAX_LINE) {
			c->too_long = 1;
			reposvc_kill(cmd);
			return;
		}
		strbuf_add(&c->line, buf, n);
		if (!nl)
			return;
		add_line(c, c->line.buf, c->line.len);
		strbuf_reset(&c->line);
		buf += n + 1;
		len -= n + 1;
	}
}

static int sum_is_zero(const uint8_t *s)
{
	for (int i = 0; i < 20; i++)
		if (s[i])
			return 0;
	return 1;
}

static void is_bare_done(void *arg, int status, struct strbuf *out, struct strbuf *err)
{
	struct checksum_op *c = arg;
	Gitaly__CalculateChecksumResponse resp = GITALY__CALCULATE_CHECKSUM_RESPONSE__INIT;

	c->cmd = NULL;
	while (out->len && out->buf[out->len - 1] == '\n')
		strbuf_setlen(out, out->len - 1);
	if (status == 0 && !strcasecmp(out->buf, "true")) {
		resp.checksum = (char *)"0000000000000000000000000000000000000000";
		reposvc_reply(&c->op, &resp);
		return;
	}
	reposvc_finishf(&c->op, GRPC_DATA_LOSS, "not a git repository '%s'", c->path);
}

static void show_ref_exit(struct git_cmd *cmd, int status)
{
	struct checksum_op *c = git_cmd_user(cmd);
	Gitaly__CalculateChecksumResponse resp = GITALY__CALCULATE_CHECKSUM_RESPONSE__INIT;
	static const char *const flags[] = { "--is-bare-repository", NULL };
	struct git_call gc = { 0 };
	struct strbuf msg = STRBUF_INIT;
	char hex[41];
	int skip = 0;

	c->cmd = NULL;
	if (gitaly_call_gone(&c->op)) {
		reposvc_finish(&c->op, GRPC_CANCELLED, "context canceled");
		return;
	}
	if (c->too_long) {
		reposvc_finish(&c->op, GRPC_INTERNAL, "bufio.Scanner: token too long");
		return;
	}
	if (c->line.len)
		add_line(c, c->line.buf, c->line.len);
	if (status == 0 && !sum_is_zero(c->sum)) {
		/* a big integer's bytes: leading zero bytes vanish from the hex */
		while (c->sum[skip] == 0)
			skip++;
		reposvc_hex(c->sum + skip, (size_t)(20 - skip), hex);
		resp.checksum = hex;
		reposvc_reply(&c->op, &resp);
		return;
	}
	/* no refs (show-ref exits 1) or they cancelled out: an empty repository, or none at all? */
	gc.git_dir = c->path;
	gc.repo = c->req->repository;
	gc.subcmd = "rev-parse";
	gc.flags = flags;
	if (gitaly_git_capture(c->op.g, &gc, NULL, 0, 4096, is_bare_done, c, &c->cmd, &msg) < 0)
		reposvc_finishf(&c->op, GRPC_DATA_LOSS, "not a git repository '%s'", c->path);
	strbuf_release(&msg);
}

static const struct git_cmd_ops show_ref_ops = {
	.on_stdout = show_ref_stdout,
	.on_exit = show_ref_exit,
};

void reposvc_calculate_checksum(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	static const char *const flags[] = { "--head", NULL };
	struct gitaly *g = data;
	Gitaly__CalculateChecksumRequest *req = msg_unpack(call, &gitaly__calculate_checksum_request__descriptor,
							  buf, len);
	struct strbuf path = STRBUF_INIT, msg = STRBUF_INIT;
	struct git_call gc = { 0 };
	struct checksum_op *c;
	enum grpc_code code;

	if (!req)
		return;
	code = gitaly_locate(g, req->repository, 0, &path, &msg);
	if (code != GRPC_OK) {
		grpc_call_finish(call, code, msg.buf, NULL);
		msg_free(req);
		goto out;
	}
	c = xcalloc(1, sizeof(*c));
	reposvc_init(&c->op, g, call, checksum_release);
	c->op.cancel = checksum_cancel;
	c->req = req;
	c->path = strbuf_detach(&path, NULL);
	strbuf_init(&c->line, 0);
	gc.git_dir = c->path;
	gc.repo = req->repository;
	gc.subcmd = "show-ref";
	gc.flags = flags;
	if (gitaly_git_spawn(g, &gc, 0, 1, &show_ref_ops, c, &c->cmd, &msg) < 0) {
		grpc_call_finishf(call, GRPC_INTERNAL, "gitCommand: %s", msg.buf);
		checksum_release(&c->op);
		goto out;
	}
	gitaly_call_watch(&c->op);
out:
	strbuf_release(&path);
	strbuf_release(&msg);
}

/*
 * CommitService CountCommits and CountDivergingCommits: one `git rev-list
 * --count` per call (a count is a walk git does internally; there is no
 * long-lived process for it). The output is a line or two of digits, so it
 * is captured with a small cap rather than streamed
 * (docs/technical/gitaly-reads.md, "Counting commits").
 */
#include "read/read.h"
#include "base/util.h"
#include "google/protobuf/timestamp.pb-c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COUNT_OUTPUT_MAX 4096

/* Decimal int64 as Go's strconv.ParseInt(s, 10, bits): 0, or -1 on syntax or range errors. */
static int parse_int(const char *s, size_t len, int bits, int64_t *out)
{
	char buf[32];
	char *end;
	long long v;
	if (!len || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (!(buf[0] == '-' || buf[0] == '+' || (buf[0] >= '0' && buf[0] <= '9')))
		return -1;
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno || *end)
		return -1;
	if (bits == 32 && (v > INT32_MAX || v < INT32_MIN))
		return -1;
	*out = v;
	return 0;
}

/* The instant as RFC 3339 in UTC, the form upstream hands to --before/--after. */
static void rfc3339(struct strbuf *sb, int64_t seconds)
{
	time_t t = (time_t)seconds;
	struct tm tm;
	char buf[64];
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	strbuf_addstr(sb, buf);
}

static void trim(const char **s, size_t *len)
{
	while (*len && strchr(" \t\r\n", (*s)[0]))
		(*s)++, (*len)--;
	while (*len && strchr(" \t\r\n", (*s)[*len - 1]))
		(*len)--;
}

/* --- CountCommits --- */

static void count_done(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	Gitaly__CountCommitsResponse resp = GITALY__COUNT_COMMITS_RESPONSE__INIT;
	const char *s = out->buf;
	size_t len = out->len;
	int64_t n = 0;
	(void)err;
	/* a failing rev-list (unknown revision, bad path) counts nothing: upstream ignores the error */
	if (status == 0) {
		trim(&s, &len);
		if (parse_int(s, len, 64, &n) < 0) {
			rd_finish(rd, GRPC_INTERNAL, "parse count: strconv.ParseInt: parsing \"%.*s\": invalid syntax",
				  (int)len, s);
			return;
		}
	}
	resp.count = (int32_t)n;
	rd_send(rd, &resp);
	rd_ok(rd);
}

static void count_commits(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__CountCommitsRequest *req = msg_unpack(call, &gitaly__count_commits_request__descriptor, buf, len);
	static const char *const literal_env[] = { "GIT_LITERAL_PATHSPECS=1", NULL };
	struct strvec flags = STRVEC_INIT;
	struct strbuf msg = STRBUF_INIT, rev = STRBUF_INIT, path = STRBUF_INIT, sb = STRBUF_INIT;
	const char *args[2] = { NULL, NULL };
	const char *paths[2] = { NULL, NULL };
	struct git_call gc;
	struct rd *rd;

	if (!req)
		return;
	rd = rd_start(data, call, sizeof(*rd), req, req->repository);
	if (!rd)
		return;
	if (req->revision.len &&
	    gitaly_check_revision((const char *)req->revision.data, req->revision.len, &msg) < 0) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "%s", msg.buf);
		goto out;
	}
	if (!req->revision.len && !req->all) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "empty Revision and false All");
		goto out;
	}
	if (rd_has_nul(req->path.data, req->path.len)) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "path can't contain NUL");
		goto out;
	}
	strvec_push(&flags, "--count");
	if (req->all) {
		strvec_push(&flags, "--all");
	} else {
		strbuf_add(&rev, req->revision.data, req->revision.len);
		args[0] = rev.buf;
	}
	if (req->before) {
		rfc3339(&sb, req->before->seconds);
		strvec_pushf(&flags, "--before=%s", sb.buf);
		strbuf_reset(&sb);
	}
	if (req->after) {
		rfc3339(&sb, req->after->seconds);
		strvec_pushf(&flags, "--after=%s", sb.buf);
	}
	if (req->max_count)
		strvec_pushf(&flags, "--max-count=%d", req->max_count);
	if (req->first_parent)
		strvec_push(&flags, "--first-parent");
	if (req->path.len) {
		strbuf_add(&path, req->path.data, req->path.len);
		paths[0] = path.buf;
	}
	rd_git_call(rd, &gc, "rev-list");
	gc.flags = flags.v;
	gc.args = args;
	gc.paths = paths;
	if (req->global_options && req->global_options->literal_pathspecs)
		gc.env = literal_env;
	rd_capture(rd, &gc, COUNT_OUTPUT_MAX, count_done);
out:
	strvec_clear(&flags);
	strbuf_release(&msg);
	strbuf_release(&rev);
	strbuf_release(&path);
	strbuf_release(&sb);
}

/* --- CountDivergingCommits --- */

static void diverging_done(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	Gitaly__CountDivergingCommitsResponse resp = GITALY__COUNT_DIVERGING_COMMITS_RESPONSE__INIT;
	struct strbuf sb = STRBUF_INIT;
	const char *s = out->buf, *tab;
	size_t len = out->len;
	int64_t left, right;
	(void)err;
	if (status != 0) {
		gitaly_describe_status(&sb, status);
		/* sic: upstream's wording */
		rd_finish(rd, GRPC_INTERNAL, "gi rev-list error: %s", sb.buf);
		strbuf_release(&sb);
		return;
	}
	trim(&s, &len);
	tab = memchr(s, '\t', len);
	if (!tab || memchr(tab + 1, '\t', len - (size_t)(tab + 1 - s)) || memchr(s, '\n', len)) {
		rd_finish(rd, GRPC_INTERNAL, "invalid output from git rev-list --left-right: %.*s",
			  (int)out->len, out->buf);
		return;
	}
	if (parse_int(s, (size_t)(tab - s), 32, &left) < 0) {
		rd_finish(rd, GRPC_INTERNAL, "invalid left count value: %.*s", (int)(tab - s), s);
		return;
	}
	if (parse_int(tab + 1, len - (size_t)(tab + 1 - s), 32, &right) < 0) {
		rd_finish(rd, GRPC_INTERNAL, "invalid right count value: %.*s", (int)(len - (size_t)(tab + 1 - s)),
			  tab + 1);
		return;
	}
	resp.left_count = (int32_t)left;
	resp.right_count = (int32_t)right;
	rd_send(rd, &resp);
	rd_ok(rd);
}

static void count_diverging_commits(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__CountDivergingCommitsRequest *req =
		msg_unpack(call, &gitaly__count_diverging_commits_request__descriptor, buf, len);
	struct strvec flags = STRVEC_INIT;
	struct strbuf range = STRBUF_INIT;
	const char *args[2] = { NULL, NULL };
	struct git_call gc;
	struct rd *rd;

	if (!req)
		return;
	/* upstream checks the revisions before the repository */
	if (!req->from.len || !req->to.len) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "from and to are both required", NULL);
		msg_free(req);
		return;
	}
	rd = rd_start(data, call, sizeof(*rd), req, req->repository);
	if (!rd)
		return;
	if (rd_has_nul(req->from.data, req->from.len) || rd_has_nul(req->to.data, req->to.len)) {
		rd_finish(rd, GRPC_INVALID_ARGUMENT, "revision can't contain NUL");
		return;
	}
	strvec_push(&flags, "--count");
	strvec_push(&flags, "--left-right");
	if (req->max_count)
		strvec_pushf(&flags, "--max-count=%d", req->max_count);
	strbuf_add(&range, req->from.data, req->from.len);
	strbuf_addstr(&range, "...");
	strbuf_add(&range, req->to.data, req->to.len);
	args[0] = range.buf;
	rd_git_call(rd, &gc, "rev-list");
	gc.flags = flags.v;
	gc.args = args;
	rd_capture(rd, &gc, COUNT_OUTPUT_MAX, diverging_done);
	strvec_clear(&flags);
	strbuf_release(&range);
}

void gitaly_register_commit_count(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.CommitService/CountCommits", count_commits, g);
	gitaly_add_unary(s, "/gitaly.CommitService/CountDivergingCommits", count_diverging_commits, g);
}

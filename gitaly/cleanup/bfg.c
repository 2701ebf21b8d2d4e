/*
 * CleanupService/ApplyBfgObjectMapStream (docs/technical/operations-write.md,
 * "ApplyBfgObjectMapStream"): after a history rewrite, the internal
 * references that still point at rewritten commits are deleted, and every
 * rewritten object is reported back with its type.
 */
#include "operations/operations.h"
#include "cleanup/bfg_map.h"
#include "base/hashmap.h"
#include "base/util.h"
#include "cleanup.pb-c.h"

#include <stdlib.h>
#include <string.h>

#define MAX_OBJECT_MAP (256 * 1024 * 1024)
#define REFS_CAP (256 * 1024 * 1024)
/* upstream's chunker: a response message is sent once its entries reach this size */
#define MESSAGE_SIZE (1024 * 1024)

enum bfg_step { B_REFS, B_TYPES, B_DELETE };

struct bfg {
	struct op op;
	enum bfg_step step;
	Gitaly__ApplyBfgObjectMapStreamRequest *first;
	int done_reading;
	struct strbuf map;
	struct hashmap table;          /* object id -> struct strvec of internal references */
	struct bfg_entry *v;
	size_t nr;
	Gitaly__ObjectType *types;
};

static void bfg_release(struct op *op)
{
	struct bfg *b = container_of(op, struct bfg, op);
	const struct hashmap_entry *e;
	for (size_t i = 0; hashmap_next(&b->table, &i, &e);) {
		strvec_clear(e->value);
		free(e->value);
	}
	hashmap_release(&b->table);
	msg_free(b->first);
	strbuf_release(&b->map);
	free(b->v);
	free(b->types);
	free(b);
}

static void bfg_step(struct op *op, int status, struct strbuf *out, struct strbuf *err);

static void bfg_git(struct bfg *b, enum bfg_step step, const char *subcmd, const char *const *flags,
		    const char *const *args, unsigned hooks, const char *in, size_t inlen, size_t cap)
{
	struct git_call gc;
	b->step = step;
	op_git_call(&b->op, &gc, subcmd);
	gc.flags = flags;
	gc.args = args;
	gc.hooks = hooks;
	op_git(&b->op, &gc, in, inlen, cap, bfg_step);
}

static Gitaly__ObjectType type_of(const char *t, size_t n)
{
	if (n == 6 && !memcmp(t, "commit", 6))
		return GITALY__OBJECT_TYPE__COMMIT;
	if (n == 4 && !memcmp(t, "blob", 4))
		return GITALY__OBJECT_TYPE__BLOB;
	if (n == 4 && !memcmp(t, "tree", 4))
		return GITALY__OBJECT_TYPE__TREE;
	if (n == 3 && !memcmp(t, "tag", 3))
		return GITALY__OBJECT_TYPE__TAG;
	return GITALY__OBJECT_TYPE__UNKNOWN;
}

static void send_entries(struct bfg *b)
{
	Gitaly__ApplyBfgObjectMapStreamResponse resp = GITALY__APPLY_BFG_OBJECT_MAP_STREAM_RESPONSE__INIT;
	Gitaly__ApplyBfgObjectMapStreamResponse__Entry *entries = xcalloc(b->nr ? b->nr : 1, sizeof(*entries));
	Gitaly__ApplyBfgObjectMapStreamResponse__Entry **batch = xcalloc(b->nr ? b->nr : 1, sizeof(*batch));
	size_t n = 0, size = 0;
	for (size_t i = 0; i < b->nr; i++) {
		Gitaly__ApplyBfgObjectMapStreamResponse__Entry *e = &entries[i];
		gitaly__apply_bfg_object_map_stream_response__entry__init(e);
		e->type = b->types[i];
		e->old_oid = b->v[i].old_oid;
		e->new_oid = b->v[i].new_oid;
		batch[n++] = e;
		size += protobuf_c_message_get_packed_size(&e->base) + 4;
		if (size >= MESSAGE_SIZE || i + 1 == b->nr) {
			resp.n_entries = n;
			resp.entries = batch;
			if (gitaly_call_send(&b->op.base, &resp) < 0)
				break;
			n = 0;
			size = 0;
		}
	}
	free(batch);
	free(entries);
	gitaly_call_finish(&b->op.base, GRPC_OK, NULL, NULL);
}

/* Every internal reference that points at (or whose commit's parent is) a rewritten object goes, once. */
static void delete_refs(struct bfg *b)
{
	static const char *const flags[] = { "-z", "--stdin", NULL };
	struct strbuf in = STRBUF_INIT;
	struct hashmap seen = HASHMAP_INIT;
	for (size_t i = 0; i < b->nr; i++) {
		struct strvec *refs = hashmap_get(&b->table, b->v[i].old_oid, strlen(b->v[i].old_oid));
		for (size_t j = 0; refs && j < refs->nr; j++) {
			const char *sp = strrchr(refs->v[j], ' ');
			size_t n = (size_t)(sp - refs->v[j]);
			if (hashmap_get(&seen, refs->v[j], n))
				continue;
			hashmap_put(&seen, refs->v[j], n, (void *)1);
			/*
			 * With the value it was read at: a reference moved since
			 * is left alone, and the hook votes on the deletion (a
			 * force deletion without old value is not voted on).
			 */
			strbuf_addf(&in, "delete %.*s", (int)n, refs->v[j]);
			strbuf_addch(&in, '\0');
			strbuf_addstr(&in, sp + 1);
			strbuf_addch(&in, '\0');
		}
	}
	hashmap_release(&seen);
	if (!in.len) {
		send_entries(b);
		return;
	}
	/* one transaction; the reference-transaction hook votes on it */
	bfg_git(b, B_DELETE, "update-ref", flags, NULL, HOOK_REFERENCE_TRANSACTION, in.buf, in.len, 4096);
	strbuf_release(&in);
}

static void bfg_step(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct bfg *b = container_of(op, struct bfg, op);
	switch (b->step) {
	case B_REFS: {
		const char *s = out->buf, *end = out->buf + out->len;
		struct strbuf e = STRBUF_INIT, in = STRBUF_INIT;
		static const char *const flags[] = { "--batch-check", NULL };
		if (status != 0) {
			op_chomp(err);
			op_fail(op, GRPC_INTERNAL, "for-each-ref: %s", err->buf);
			return;
		}
		/* "<object> <parents...> <refname>": the reference under every id on its line */
		while (s < end) {
			const char *nl = memchr(s, '\n', (size_t)(end - s));
			size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
			const char *last = s + n, *word = s;
			const char *name = memrchr(s, ' ', n);
			if (!name || n <= op->hexlen || s[op->hexlen] != ' ') {
				op_fail(op, GRPC_INTERNAL, "failed to parse git refs");
				return;
			}
			name++;
			while (word < name - 1) {
				const char *sp = memchr(word, ' ', (size_t)(name - 1 - word));
				size_t wl = sp ? (size_t)(sp - word) : (size_t)(name - 1 - word);
				if (wl) {
					struct strvec *refs = hashmap_get(&b->table, word, wl);
					if (!refs) {
						refs = xcalloc(1, sizeof(*refs));
						strvec_init(refs);
						hashmap_put(&b->table, word, wl, refs);
					}
					/* "<refname> <its value>": refnames hold no spaces */
					strvec_pushf(refs, "%.*s %.*s", (int)(last - name), name,
						     (int)op->hexlen, s);
				}
				word += wl + 1;
			}
			s += n + (nl ? 1 : 0);
		}
		if (bfg_map_parse(b->map.buf, b->map.len, op->hexlen, &b->v, &b->nr, &e) < 0) {
			op_fail(op, GRPC_INVALID_ARGUMENT, "%s", e.buf);
			strbuf_release(&e);
			return;
		}
		strbuf_release(&e);
		strbuf_release(&b->map);
		b->types = xcalloc(b->nr ? b->nr : 1, sizeof(*b->types));
		for (size_t i = 0; i < b->nr; i++) {
			if (hashmap_get(&b->table, b->v[i].old_oid, strlen(b->v[i].old_oid)))
				b->types[i] = GITALY__OBJECT_TYPE__COMMIT;   /* an internal reference's: a commit */
			else
				strbuf_addf(&in, "%s\n", b->v[i].new_oid);
		}
		if (!in.len) {
			delete_refs(b);
			return;
		}
		bfg_git(b, B_TYPES, "cat-file", flags, NULL, 0, in.buf, in.len, REFS_CAP);
		strbuf_release(&in);
		return;
	}
	case B_TYPES: {
		const char *s = out->buf, *end = out->buf + out->len;
		if (status != 0) {
			op_chomp(err);
			op_fail(op, GRPC_INTERNAL, "cat-file: %s", err->buf);
			return;
		}
		for (size_t i = 0; i < b->nr; i++) {
			const char *nl, *sp, *sp2;
			if (hashmap_get(&b->table, b->v[i].old_oid, strlen(b->v[i].old_oid)))
				continue;
			nl = s < end ? memchr(s, '\n', (size_t)(end - s)) : NULL;
			if (!nl)
				break;
			sp = memchr(s, ' ', (size_t)(nl - s));
			sp2 = sp ? memchr(sp + 1, ' ', (size_t)(nl - sp - 1)) : NULL;
			/* "<oid> missing" stays UNKNOWN */
			b->types[i] = sp2 ? type_of(sp + 1, (size_t)(sp2 - sp - 1)) : GITALY__OBJECT_TYPE__UNKNOWN;
			s = nl + 1;
		}
		delete_refs(b);
		return;
	}
	case B_DELETE:
		if (status != 0) {
			op_chomp(err);
			op_fail(op, GRPC_INTERNAL, "close updater: %s", err->buf);
			return;
		}
		send_entries(b);
		return;
	}
}

static void bfg_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct bfg *b = container_of(op, struct bfg, op);
	static const char *const flags[] = { "--format=%(objectname) %(parent) %(refname)", NULL };
	/* GitLab's internal reference namespaces (docs/technical/operations-write.md) */
	static const char *const args[] = { "refs/environments/", "refs/keep-around/", "refs/merge-requests/",
					    "refs/pipelines/", "refs/remotes/", "refs/tmp/", NULL };
	bfg_git(b, B_REFS, "for-each-ref", flags, args, 0, NULL, 0, REFS_CAP);
}

static void bfg_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct bfg *b = grpc_call_user(call);
	Gitaly__ApplyBfgObjectMapStreamRequest *req;
	if (b->done_reading)
		return;
	req = msg_unpack(call, &gitaly__apply_bfg_object_map_stream_request__descriptor, msg, len);
	if (!req) {
		b->done_reading = 1;
		return;
	}
	if (b->map.len + req->object_map.len > MAX_OBJECT_MAP) {
		op_fail(&b->op, GRPC_RESOURCE_EXHAUSTED, "object map exceeds %d bytes", MAX_OBJECT_MAP);
		b->done_reading = 1;
		msg_free(req);
		return;
	}
	strbuf_add(&b->map, req->object_map.data, req->object_map.len);
	if (b->first) {
		msg_free(req);
		return;
	}
	b->first = req;
	if (op_locate(&b->op, req->repository) != GRPC_OK)
		b->done_reading = 1;
}

static void bfg_half_close(struct grpc_call *call)
{
	struct bfg *b = grpc_call_user(call);
	if (b->done_reading)
		return;
	b->done_reading = 1;
	if (!b->first) {
		op_fail(&b->op, GRPC_INTERNAL, "EOF");
		return;
	}
	op_detect_hash(&b->op, bfg_hash_known);
}

static void bfg_close(struct grpc_call *call, enum grpc_code code)
{
	struct bfg *b = grpc_call_user(call);
	(void)code;
	op_closed(&b->op);
}

static const struct grpc_call_ops bfg_ops = {
	.on_message = bfg_message,
	.on_half_close = bfg_half_close,
	.on_close = bfg_close,
};

static void apply_bfg_object_map_stream(struct grpc_call *call, void *data)
{
	struct bfg *b = xcalloc(1, sizeof(*b));
	strbuf_init(&b->map, 0);
	hashmap_init(&b->table);
	op_init(&b->op, data, call, bfg_release, 0);
	grpc_call_set_ops(call, &bfg_ops, b);
}

void gitaly_register_bfg(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_method(s, "/gitaly.CleanupService/ApplyBfgObjectMapStream", apply_bfg_object_map_stream, g);
}

/* ConflictsService/ListConflictFiles (docs/technical/operations-write.md, "ListConflictFiles"). */
#include "operations/conflicts.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

#define MERGE_TREE_OUT_CAP (16 * 1024 * 1024)
/* upstream's stream write buffer: content is cut and messages are sent at this size */
#define WRITE_BUFFER (128 * 1024)

/*
 * The conflicting files of `git merge-tree -z --write-tree` output (without
 * --name-only), one entry per path in the order git lists them: each stage's
 * flag is set when git lists that stage (1 ancestor, 2 ours, 3 theirs).
 * Returns the merged tree id's length (0: unparsable).
 */
struct conflict_entry {
	char *path;
	int has_ancestor, has_ours, has_theirs;
	unsigned our_mode;
};

static void conflicts_free(struct conflict_entry *v, size_t nr);

static size_t conflicts_parse(const struct strbuf *out, struct conflict_entry **v, size_t *nr)
{
	const char *s = out->buf, *end = out->buf + out->len;
	const char *nul = memchr(s, '\0', out->len);
	size_t alloc = 0, treelen;
	*v = NULL;
	*nr = 0;
	if (!nul)
		return 0;
	treelen = (size_t)(nul - s);
	s = nul + 1;
	while (s < end && *s && (nul = memchr(s, '\0', (size_t)(end - s)))) {
		/* "<mode> <oid> <stage>\t<path>" */
		const char *tab = memchr(s, '\t', (size_t)(nul - s));
		char *e;
		unsigned long mode, stage;
		const char *sp;
		struct conflict_entry *c = NULL;
		if (!tab)
			goto bad;
		mode = strtoul(s, &e, 8);
		if (*e != ' ')
			goto bad;
		sp = memchr(e + 1, ' ', (size_t)(tab - e - 1));
		if (!sp)
			goto bad;
		stage = strtoul(sp + 1, &e, 10);
		if (e != tab || stage < 1 || stage > 3)
			goto bad;
		for (size_t i = 0; i < *nr; i++)
			if (!strcmp((*v)[i].path, tab + 1))
				c = &(*v)[i];
		if (!c) {
			ALLOC_GROW(*v, *nr + 1, alloc);
			c = &(*v)[(*nr)++];
			memset(c, 0, sizeof(*c));
			c->path = xstrdup(tab + 1);
		}
		if (stage == 1) {
			c->has_ancestor = 1;
		} else if (stage == 2) {
			c->has_ours = 1;
			c->our_mode = (unsigned)mode;
		} else {
			c->has_theirs = 1;
		}
		s = nul + 1;
	}
	return treelen;
bad:
	conflicts_free(*v, *nr);
	*v = NULL;
	*nr = 0;
	return 0;
}

static void conflicts_free(struct conflict_entry *v, size_t nr)
{
	for (size_t i = 0; i < nr; i++)
		free(v[i].path);
	free(v);
}

enum list_step { L_OURS, L_THEIRS, L_MERGE, L_CONTENT };

struct list {
	struct op op;
	enum list_step step;
	Gitaly__ListConflictFilesRequest *req;
	struct strbuf ours, theirs, tree;
	struct conflict_entry *v;
	size_t nr, next;
	/* the response being filled */
	Gitaly__ConflictFile **files;
	size_t nr_files, alloc_files, size;
	struct strbuf *chunks;         /* the contents the queued messages point into */
	size_t nr_chunks, alloc_chunks;
};

static void free_files(struct list *l)
{
	for (size_t i = 0; i < l->nr_files; i++) {
		Gitaly__ConflictFile *f = l->files[i];
		if (f->conflict_file_payload_case == GITALY__CONFLICT_FILE__CONFLICT_FILE_PAYLOAD_HEADER)
			free(f->header);
		free(f);
	}
	l->nr_files = 0;
	l->size = 0;
	for (size_t i = 0; i < l->nr_chunks; i++)
		strbuf_release(&l->chunks[i]);
	l->nr_chunks = 0;
}

static void list_release(struct op *op)
{
	struct list *l = container_of(op, struct list, op);
	free_files(l);
	free(l->files);
	free(l->chunks);
	msg_free(l->req);
	strbuf_release(&l->ours);
	strbuf_release(&l->theirs);
	strbuf_release(&l->tree);
	conflicts_free(l->v, l->nr);
	free(l);
}

static int flush(struct list *l)
{
	Gitaly__ListConflictFilesResponse resp = GITALY__LIST_CONFLICT_FILES_RESPONSE__INIT;
	int rc;
	if (!l->nr_files)
		return 0;
	resp.n_files = l->nr_files;
	resp.files = l->files;
	rc = gitaly_call_send(&l->op.base, &resp);
	free_files(l);
	if (rc < 0)
		op_fail(&l->op, GRPC_INTERNAL, "error streaming conflict files: call closed");
	return rc;
}

static Gitaly__ConflictFile *add_file(struct list *l)
{
	Gitaly__ConflictFile *f = xcalloc(1, sizeof(*f));
	gitaly__conflict_file__init(f);
	ALLOC_GROW(l->files, l->nr_files + 1, l->alloc_files);
	l->files[l->nr_files++] = f;
	return f;
}

static void list_step(struct op *op, int status, struct strbuf *out, struct strbuf *err);

static void next_conflict(struct list *l);

void conflicts_replace_all(struct strbuf *sb, const char *from, const char *to)
{
	struct strbuf r = STRBUF_INIT;
	size_t n = strlen(from), i = 0;
	if (!n)
		return;
	while (i < sb->len) {
		if (i + n <= sb->len && !memcmp(sb->buf + i, from, n)) {
			strbuf_addstr(&r, to);
			i += n;
		} else {
			strbuf_addch(&r, sb->buf[i++]);
		}
	}
	strbuf_reset(sb);
	strbuf_add(sb, r.buf, r.len);
	strbuf_release(&r);
}

static int valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i], need, min;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0)
			need = 1, cp = c & 0x1f, min = 0x80;
		else if ((c & 0xf0) == 0xe0)
			need = 2, cp = c & 0x0f, min = 0x800;
		else if ((c & 0xf8) == 0xf0)
			need = 3, cp = c & 0x07, min = 0x10000;
		else
			return 0;
		for (unsigned k = 1; k <= need; k++) {
			if (i + k >= n || (s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

static void content_read(struct list *l, struct strbuf *out)
{
	const struct conflict_entry *c = &l->v[l->next - 1];
	const char *oid, *type, *data;
	size_t oidlen, typelen, len;
	struct strbuf content = STRBUF_INIT;
	if (op_parse_batch(out, &oid, &oidlen, &type, &typelen, &data, &len) < 0) {
		op_fail(&l->op, GRPC_FAILED_PRECONDITION, "getting file revision: reference not found");
		return;
	}
	if (!valid_utf8((const unsigned char *)data, len)) {
		op_fail(&l->op, GRPC_FAILED_PRECONDITION, "unsupported encoding");
		return;
	}
	strbuf_add(&content, data, len);
	/* git labels the markers with the commit ids; GitLab expects the paths there */
	conflicts_replace_all(&content, l->ours.buf, c->has_ours ? c->path : "");
	conflicts_replace_all(&content, l->theirs.buf, c->has_theirs ? c->path : "");
	for (size_t i = 0; i < content.len; i += WRITE_BUFFER) {
		size_t n = content.len - i < WRITE_BUFFER ? content.len - i : WRITE_BUFFER;
		Gitaly__ConflictFile *f = add_file(l);
		struct strbuf *chunk;
		ALLOC_GROW(l->chunks, l->nr_chunks + 1, l->alloc_chunks);
		chunk = &l->chunks[l->nr_chunks++];
		strbuf_init(chunk, 0);
		strbuf_add(chunk, content.buf + i, n);
		f->conflict_file_payload_case = GITALY__CONFLICT_FILE__CONFLICT_FILE_PAYLOAD_CONTENT;
		f->content.data = (uint8_t *)chunk->buf;
		f->content.len = chunk->len;
		l->size += n;
		if (l->size >= WRITE_BUFFER && flush(l) < 0) {
			strbuf_release(&content);
			return;
		}
	}
	strbuf_release(&content);
	next_conflict(l);
}

static void next_conflict(struct list *l)
{
	struct op *op = &l->op;
	while (l->next < l->nr) {
		const struct conflict_entry *c = &l->v[l->next++];
		Gitaly__ConflictFile *f;
		Gitaly__ConflictFileHeader *h;
		if (!l->req->allow_tree_conflicts && (!c->has_ours || !c->has_theirs)) {
			op_fail(op, GRPC_FAILED_PRECONDITION, "conflict side missing");
			return;
		}
		f = add_file(l);
		h = xcalloc(1, sizeof(*h));
		gitaly__conflict_file_header__init(h);
		h->commit_oid = l->req->our_commit_oid;
		if (c->has_theirs) {
			h->their_path.data = (uint8_t *)c->path;
			h->their_path.len = strlen(c->path);
		}
		if (c->has_ours) {
			h->our_path.data = (uint8_t *)c->path;
			h->our_path.len = strlen(c->path);
			h->our_mode = (int32_t)c->our_mode;
		}
		if (c->has_ancestor) {
			h->ancestor_path.data = (uint8_t *)c->path;
			h->ancestor_path.len = strlen(c->path);
		}
		f->conflict_file_payload_case = GITALY__CONFLICT_FILE__CONFLICT_FILE_PAYLOAD_HEADER;
		f->header = h;
		if (!l->req->skip_content) {
			struct strbuf rev = STRBUF_INIT;
			strbuf_addf(&rev, "%s:%s", l->tree.buf, c->path);
			l->step = L_CONTENT;
			op_read_object(op, rev.buf, list_step);
			strbuf_release(&rev);
			return;
		}
	}
	if (flush(l) < 0)
		return;
	gitaly_call_finish(&op->base, GRPC_OK, NULL, NULL);
}

static void list_step(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct list *l = container_of(op, struct list, op);
	switch (l->step) {
	case L_OURS:
	case L_THEIRS: {
		struct strbuf rev = STRBUF_INIT;
		if (status != 0) {
			op_fail(op, GRPC_FAILED_PRECONDITION, "could not lookup '%s' OID: reference not found",
				l->step == L_OURS ? "our" : "their");
			return;
		}
		op_chomp(out);
		if (l->step == L_OURS) {
			strbuf_add(&l->ours, out->buf, out->len);
			strbuf_addf(&rev, "%s^{commit}", l->req->their_commit_oid);
			l->step = L_THEIRS;
			op_rev_parse(op, rev.buf, list_step);
			strbuf_release(&rev);
			return;
		}
		strbuf_add(&l->theirs, out->buf, out->len);
		{
			static const char *const flags[] = { "-z", "--write-tree", "--allow-unrelated-histories", NULL };
			const char *args[] = { l->ours.buf, l->theirs.buf, NULL };
			struct git_call gc;
			l->step = L_MERGE;
			op_git_call(op, &gc, "merge-tree");
			gc.flags = flags;
			gc.args = args;
			op_git(op, &gc, NULL, 0, MERGE_TREE_OUT_CAP, list_step);
		}
		return;
	}
	case L_MERGE: {
		size_t treelen;
		if (status == 0) {
			/* no conflicts: an empty stream */
			gitaly_call_finish(&op->base, GRPC_OK, NULL, NULL);
			return;
		}
		treelen = status == 1 ? conflicts_parse(out, &l->v, &l->nr) : 0;
		if (treelen != op->hexlen) {
			op_chomp(err);
			op_fail(op, GRPC_INTERNAL, "couldn't find conflict: merge-tree: exit status %d: %s", status, err->buf);
			return;
		}
		strbuf_add(&l->tree, out->buf, treelen);
		next_conflict(l);
		return;
	}
	case L_CONTENT:
		if (status != 0) {
			op_fail(op, GRPC_FAILED_PRECONDITION, "getting file revision: reference not found");
			return;
		}
		content_read(l, out);
		return;
	}
}

static void list_hash_known(struct op *op, int status, struct strbuf *out, struct strbuf *err)
{
	struct list *l = container_of(op, struct list, op);
	struct strbuf rev = STRBUF_INIT;
	if (strchr(l->req->our_commit_oid, '\n') || strchr(l->req->their_commit_oid, '\n')) {
		op_fail(op, GRPC_FAILED_PRECONDITION, "could not lookup '%s' OID: reference not found",
			strchr(l->req->our_commit_oid, '\n') ? "our" : "their");
		return;
	}
	strbuf_addf(&rev, "%s^{commit}", l->req->our_commit_oid);
	l->step = L_OURS;
	op_rev_parse(op, rev.buf, list_step);
	strbuf_release(&rev);
}

static void list_conflict_files(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	struct list *l = xcalloc(1, sizeof(*l));
	Gitaly__ListConflictFilesRequest *req;
	strbuf_init(&l->ours, 0);
	strbuf_init(&l->theirs, 0);
	strbuf_init(&l->tree, 0);
	op_init(&l->op, data, call, list_release, 1);
	req = msg_unpack(call, &gitaly__list_conflict_files_request__descriptor, buf, len);
	if (!req)
		return;
	l->req = req;
	if (op_locate(&l->op, req->repository) != GRPC_OK)
		return;
	if (!*req->our_commit_oid) {
		op_fail(&l->op, GRPC_INVALID_ARGUMENT, "empty OurCommitOid");
		return;
	}
	if (!*req->their_commit_oid) {
		op_fail(&l->op, GRPC_INVALID_ARGUMENT, "empty TheirCommitOid");
		return;
	}
	/* merge-tree writes objects: they stay in a quarantine that is dropped */
	if (op_quarantine(&l->op) < 0)
		return;
	op_detect_hash(&l->op, list_hash_known);
}

void op_register_conflicts(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.ConflictsService/ListConflictFiles", list_conflict_files, g);
	gitaly_add_method(s, "/gitaly.ConflictsService/ResolveConflicts", conflicts_resolve_start, g);
}

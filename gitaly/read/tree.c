/* CommitService tree reads: TreeEntry and GetTreeEntries, and the tree entry finder. */
#include "read/read.h"
#include "base/util.h"
#include "errors.pb-c.h"
#include "grpc/metadata.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* --- the entry finder --- */

struct finder_read {
	struct rd *rd;
	struct entry_finder *f;
};

static void finder_reset(struct entry_finder *f)
{
	tree_ents_free(f->ents, f->nr);
	f->ents = NULL;
	f->nr = 0;
	f->have = 0;
}

void entry_finder_release(struct entry_finder *f)
{
	finder_reset(f);
	strbuf_release(&f->key);
	strbuf_release(&f->path);
}

static const struct tree_ent *finder_lookup(const struct entry_finder *f, const char *path, size_t len)
{
	for (size_t i = 0; i < f->nr; i++)
		if (f->ents[i].path_len == len && !memcmp(f->ents[i].path, path, len))
			return &f->ents[i];
	return NULL;
}

/* The listing's root: what followed the ':' of the key. */
static void finder_root(const struct entry_finder *f, const char **root, size_t *len)
{
	const char *colon = memchr(f->key.buf, ':', f->key.len);
	*root = colon + 1;
	*len = f->key.len - (size_t)(colon + 1 - f->key.buf);
}

static void on_finder_tree(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct finder_read *fr = arg;
	struct rd *rd = fr->rd;
	struct entry_finder *f = fr->f;
	const char *root;
	size_t root_len;

	free(fr);
	finder_reset(f);
	if (status < 0 && status != -EFBIG) {
		rd_finish(rd, GRPC_INTERNAL, "reading tree: %s", strerror(-status));
		return;
	}
	finder_root(f, &root, &root_len);
	/* missing, not a tree, or absurdly large: no entries, as upstream's lookup */
	if (status == 0 && info->type == CATFILE_TREE &&
	    tree_parse(data->buf, data->len, info->oid_len, root, root_len, &f->ents, &f->nr) < 0) {
		rd_finish(rd, GRPC_INTERNAL, "parsing tree %s", info->oid);
		return;
	}
	f->have = 1;
	f->cb(rd, finder_lookup(f, f->path.buf, f->path.len));
}

int entry_find(struct rd *rd, struct entry_finder *f, const char *rev, size_t rev_len,
	       const char *path, size_t path_len, rd_entry_fn cb, const struct tree_ent **out)
{
	struct strbuf dir = STRBUF_INIT, key = STRBUF_INIT, clean = STRBUF_INIT;
	struct finder_read *fr;
	int rc;

	go_path_dir(&dir, path, path_len);
	if (dir.len == 1 && dir.buf[0] == '.')
		strbuf_reset(&dir);
	strbuf_add(&key, rev, rev_len);
	strbuf_addch(&key, ':');
	strbuf_add(&key, dir.buf, dir.len);
	go_path_clean(&clean, dir.buf, dir.len);
	if (f->have && f->key.len == key.len && !memcmp(f->key.buf, key.buf, key.len)) {
		*out = finder_lookup(f, path, path_len);
		rc = 1;
		goto out;
	}
	finder_reset(f);
	strbuf_reset(&f->key);
	strbuf_add(&f->key, key.buf, key.len);
	if ((clean.len >= 3 && !memcmp(clean.buf, "../", 3)) || rd_has_nul(key.buf, key.len)) {
		/* outside the repository's tree, or unrepresentable: nothing there */
		f->have = 1;
		*out = NULL;
		rc = 1;
		goto out;
	}
	strbuf_reset(&f->path);
	strbuf_add(&f->path, path, path_len);
	f->cb = cb;
	fr = xcalloc(1, sizeof(*fr));
	fr->rd = rd;
	fr->f = f;
	if (catfile_read(rd->cf, key.buf, key.len, MAX_TREE_SIZE, on_finder_tree, fr) < 0) {
		free(fr);
		rd_finish(rd, GRPC_INTERNAL, "reading tree: object reader failed");
		rc = -1;
		goto out;
	}
	rc = 0;
out:
	strbuf_release(&dir);
	strbuf_release(&key);
	strbuf_release(&clean);
	return rc;
}

/* --- TreeEntry --- */

struct tree_entry_ctx {
	struct rd rd;
	Gitaly__TreeEntryRequest *req;
	struct strbuf path;
	struct entry_finder finder;
	struct tree_ent ent;
	struct rd_stream stream;
	int streaming;
	int64_t data_len;
};

static void te_free(struct rd *rd)
{
	struct tree_entry_ctx *x = (struct tree_entry_ctx *)rd;
	strbuf_release(&x->path);
	entry_finder_release(&x->finder);
	if (x->streaming)
		rd_stream_release(&x->stream);
}

static void te_writable(struct rd *rd)
{
	struct tree_entry_ctx *x = (struct tree_entry_ctx *)rd;
	if (x->streaming)
		rd_stream_writable(rd, &x->stream);
}

static uint64_t te_tree_info(void *arg, const struct catfile_info *info)
{
	struct tree_entry_ctx *x = arg;
	Gitaly__TreeEntryResponse resp = GITALY__TREE_ENTRY_RESPONSE__INIT;
	resp.type = GITALY__TREE_ENTRY_RESPONSE__OBJECT_TYPE__TREE;
	resp.oid = x->ent.oid;
	resp.size = (int64_t)info->size;
	resp.mode = x->ent.mode;
	rd_send(&x->rd, &resp);
	return 0;
}

static void te_done(void *arg, int status)
{
	struct tree_entry_ctx *x = arg;
	if (status == CATFILE_MISSING) {
		rd_finish(&x->rd, GRPC_INTERNAL, "object not found: %s", x->ent.oid);
		return;
	}
	if (status < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "reading object %s: %s", x->ent.oid, strerror(-status));
		return;
	}
	if (x->streaming)
		rd_stream_end(&x->rd, &x->stream);
	rd_ok(&x->rd);
}

static const struct catfile_read_ops te_tree_ops = { te_tree_info, NULL, te_done };

static void te_data(void *arg, const char *buf, size_t len)
{
	struct tree_entry_ctx *x = arg;
	rd_stream_data(&x->rd, &x->stream, buf, len);
}

/* The blob's content up to data_len: on_info of the contents request limits it. */
static uint64_t te_contents_info(void *arg, const struct catfile_info *info)
{
	struct tree_entry_ctx *x = arg;
	(void)info;
	return (uint64_t)x->data_len;
}

static const struct catfile_read_ops te_contents_ops = { te_contents_info, te_data, te_done };

static uint64_t te_blob_info(void *arg, const struct catfile_info *info)
{
	struct tree_entry_ctx *x = arg;
	Gitaly__TreeEntryResponse resp = GITALY__TREE_ENTRY_RESPONSE__INIT;
	int64_t size = (int64_t)info->size, max = x->req->max_size, limit = x->req->limit;

	if (info->type != CATFILE_BLOB) {
		rd_finish(&x->rd, GRPC_INTERNAL,
			  "mismatched object type: tree-oid=%s object-oid=%s entry-type=BLOB object-type=%s",
			  x->ent.oid, info->oid, catfile_type_name(info->type));
		return 0;
	}
	if (max > 0 && size > max) {
		rd_finish(&x->rd, GRPC_FAILED_PRECONDITION,
			  "object size (%lld) is bigger than the maximum allowed size (%lld)", (long long)size,
			  (long long)max);
		return 0;
	}
	x->data_len = limit > 0 && size > limit ? limit : size;
	resp.type = GITALY__TREE_ENTRY_RESPONSE__OBJECT_TYPE__BLOB;
	resp.oid = (char *)info->oid;
	resp.size = size;
	resp.mode = x->ent.mode;
	rd_stream_begin(&x->stream, &resp, 5);
	x->streaming = 1;
	return 0;
}

/* Info first (size limits decide whether to read at all), then the content. */
static void te_blob_info_done(void *arg, int status)
{
	struct tree_entry_ctx *x = arg;
	if (status != 0) {
		te_done(arg, status);
		return;
	}
	if (x->data_len == 0) {
		rd_stream_end(&x->rd, &x->stream);
		rd_ok(&x->rd);
		return;
	}
	if (catfile_contents(x->rd.cf, x->ent.oid, strlen(x->ent.oid), &te_contents_ops, x) < 0)
		rd_finish(&x->rd, GRPC_INTERNAL, "reading object %s", x->ent.oid);
}

static const struct catfile_read_ops te_info_ops = { te_blob_info, NULL, te_blob_info_done };

static void te_on_entry(struct rd *rd, const struct tree_ent *e)
{
	struct tree_entry_ctx *x = (struct tree_entry_ctx *)rd;
	if (!e || !e->oid[0]) {
		rd_finish(rd, GRPC_NOT_FOUND, "tree entry not found");
		return;
	}
	x->ent = *e;
	x->ent.path = NULL;
	if (e->type == GITALY__TREE_ENTRY__ENTRY_TYPE__COMMIT) {
		Gitaly__TreeEntryResponse resp = GITALY__TREE_ENTRY_RESPONSE__INIT;
		resp.type = GITALY__TREE_ENTRY_RESPONSE__OBJECT_TYPE__COMMIT;
		resp.mode = e->mode;
		resp.oid = x->ent.oid;
		rd_send(rd, &resp);
		rd_ok(rd);
		return;
	}
	if (catfile_info(rd->cf, x->ent.oid, strlen(x->ent.oid),
			 e->type == GITALY__TREE_ENTRY__ENTRY_TYPE__TREE ? &te_tree_ops : &te_info_ops, x) < 0)
		rd_finish(rd, GRPC_INTERNAL, "reading object info %s", x->ent.oid);
}

static void te_leased(struct rd *rd)
{
	struct tree_entry_ctx *x = (struct tree_entry_ctx *)rd;
	const struct tree_ent *e;
	int rc = entry_find(rd, &x->finder, (const char *)x->req->revision.data, x->req->revision.len,
			    x->path.buf, x->path.len, te_on_entry, &e);
	if (rc == 1)
		te_on_entry(rd, e);
}

static void tree_entry(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__TreeEntryRequest *req = msg_unpack(call, &gitaly__tree_entry_request__descriptor, buf, len);
	struct tree_entry_ctx *x;
	struct strbuf msg = STRBUF_INIT;

	if (!req)
		return;
	x = (struct tree_entry_ctx *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	x->rd.on_free = te_free;
	x->rd.on_writable = te_writable;
	strbuf_init(&x->path, 0);
	x->finder = (struct entry_finder)ENTRY_FINDER_INIT;
	if (gitaly_check_revision((const char *)req->revision.data, req->revision.len, &msg) < 0) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "%s", msg.buf);
	} else if (!req->path.len) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "empty Path");
	} else if (req->limit < 0) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "negative Limit");
	} else if (req->max_size < 0) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "negative MaxSize");
	} else {
		size_t n = req->path.len;
		if (n > 1)
			while (n && req->path.data[n - 1] == '/')
				n--;
		strbuf_add(&x->path, req->path.data, n);
		rd_lease(&x->rd, te_leased);
	}
	strbuf_release(&msg);
}

/* --- GetTreeEntries --- */

struct gte_ctx {
	struct rd rd;
	Gitaly__GetTreeEntriesRequest *req;
	struct strbuf path;           /* "." made "" */
	struct tree_ent *ents;
	size_t nr;
	size_t first, count;          /* the page */
	char *cursor;
	/* flat paths */
	char **flat;                  /* per page entry: NULL for non-trees */
	size_t next_flat, inflight;
	int sent_any;
};

struct flat_read {
	struct gte_ctx *x;
	size_t idx;                   /* page index */
	int level;
	char oid[CATFILE_HEXSZ_MAX + 1];
};

static void gte_free(struct rd *rd)
{
	struct gte_ctx *x = (struct gte_ctx *)rd;
	strbuf_release(&x->path);
	tree_ents_free(x->ents, x->nr);
	if (x->flat)
		for (size_t i = 0; i < x->count; i++)
			free(x->flat[i]);
	free(x->flat);
	free(x->cursor);
}

static void resolve_error(struct gte_ctx *x, enum grpc_code code, const char *msg)
{
	Gitaly__GetTreeEntriesError err = GITALY__GET_TREE_ENTRIES_ERROR__INIT;
	Gitaly__ResolveRevisionError rr = GITALY__RESOLVE_REVISION_ERROR__INIT;
	rr.revision = x->req->revision;
	err.error_case = GITALY__GET_TREE_ENTRIES_ERROR__ERROR_RESOLVE_TREE;
	err.resolve_tree = &rr;
	rd_finish_detail(&x->rd, code, msg, &err.base);
}

static int tree_rank(int type)
{
	switch (type) {
	case GITALY__TREE_ENTRY__ENTRY_TYPE__TREE: return 1;
	case GITALY__TREE_ENTRY__ENTRY_TYPE__BLOB: return 2;
	default: return 3;
	}
}

/* TREES_FIRST: a stable sort, trees, then blobs, then submodules (upstream's ls-tree enum order). */
static void sort_trees_first(struct tree_ent *e, size_t n)
{
	struct tree_ent *tmp = xmalloc((n ? n : 1) * sizeof(*tmp));
	size_t k = 0;
	for (int rank = 1; rank <= 3; rank++)
		for (size_t i = 0; i < n; i++)
			if (tree_rank(e[i].type) == rank)
				tmp[k++] = e[i];
	memcpy(e, tmp, n * sizeof(*e));
	free(tmp);
}

static void encode_token(const struct tree_ent *e, char **out)
{
	json_t *o = json_object();
	struct strbuf b64 = STRBUF_INIT;
	char *s;
	json_object_set_new(o, "file_name", json_stringn_nocheck(e->path, e->path_len));
	s = json_dumps(o, JSON_COMPACT);
	grpc_base64_encode(&b64, s, strlen(s));
	while (b64.len % 4)
		strbuf_addch(&b64, '=');
	*out = strbuf_detach(&b64, NULL);
	free(s);
	json_decref(o);
}

/* A token that is not base64 JSON is a legacy oid token. Returns 1 for file-name tokens. */
static int decode_token(const char *token, struct strbuf *start)
{
	struct strbuf dec = STRBUF_INIT;
	json_t *j = NULL;
	int is_name = 0;
	size_t n = strlen(token);

	if (n % 4 == 0 && grpc_base64_decode(&dec, token, n) == 0 &&
	    (j = json_loadb(dec.buf, dec.len, JSON_DECODE_ANY, NULL)) &&
	    (json_is_object(j) || json_is_null(j))) {
		const char *k;
		json_t *v;
		is_name = 1;
		json_object_foreach(j, k, v)
			if (!strcasecmp(k, "file_name") && json_is_string(v))
				strbuf_add(start, json_string_value(v), json_string_length(v));
	}
	if (!is_name)
		strbuf_addstr(start, token);
	json_decref(j);
	strbuf_release(&dec);
	return is_name;
}

static size_t te_packed_size(Gitaly__TreeEntry *e)
{
	return protobuf_c_message_get_packed_size(&e->base);
}

static void gte_send(struct gte_ctx *x)
{
	Gitaly__GetTreeEntriesResponse resp = GITALY__GET_TREE_ENTRIES_RESPONSE__INIT;
	Gitaly__PaginationCursor cur = GITALY__PAGINATION_CURSOR__INIT;
	Gitaly__TreeEntry *items = xcalloc(x->count ? x->count : 1, sizeof(*items));
	Gitaly__TreeEntry **ptrs = xcalloc(x->count ? x->count : 1, sizeof(*ptrs));
	size_t batch = 0, bytes = 0;
	const char *revision = (const char *)x->req->revision.data;
	char *commit_oid = xstrndup(revision, x->req->revision.len);

	cur.next_cursor = x->cursor ? x->cursor : (char *)"";
	for (size_t i = 0; i < x->count; i++) {
		const struct tree_ent *e = &x->ents[x->first + i];
		Gitaly__TreeEntry *t = &items[i];
		size_t sz;
		gitaly__tree_entry__init(t);
		t->oid = (char *)e->oid;
		t->path.data = (uint8_t *)e->path;
		t->path.len = e->path_len;
		t->type = e->type;
		t->mode = e->mode;
		t->commit_oid = commit_oid;
		if (!x->req->recursive && !x->req->skip_flat_paths) {
			const char *fp = x->flat && x->flat[i] ? x->flat[i] : e->path;
			t->flat_path.data = (uint8_t *)fp;
			t->flat_path.len = x->flat && x->flat[i] ? strlen(x->flat[i]) : e->path_len;
		}
		sz = te_packed_size(t);
		/* upstream's chunker: cut before a message would reach 1 MiB */
		if (batch && bytes + sz >= BATCH_BYTES) {
			resp.entries = ptrs;
			resp.n_entries = batch;
			resp.pagination_cursor = x->sent_any ? NULL : &cur;
			x->sent_any = 1;
			rd_send(&x->rd, &resp);
			batch = 0;
			bytes = 0;
		}
		ptrs[batch++] = t;
		bytes += sz;
	}
	if (batch) {
		resp.entries = ptrs;
		resp.n_entries = batch;
		resp.pagination_cursor = x->sent_any ? NULL : &cur;
		x->sent_any = 1;
		rd_send(&x->rd, &resp);
	}
	free(commit_oid);
	free(items);
	free(ptrs);
	rd_ok(&x->rd);
}

static void flat_pump(struct gte_ctx *x);

static void flat_done(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct flat_read *fr = arg;
	struct gte_ctx *x = fr->x;
	struct tree_ent *sub = NULL;
	size_t nsub = 0;
	const char *root = x->flat[fr->idx];

	x->inflight--;
	if (status < 0 && status != -EFBIG) {
		free(fr);
		rd_finish(&x->rd, GRPC_INTERNAL, "reading tree: %s", strerror(-status));
		return;
	}
	if (status == 0 && info->type == CATFILE_TREE &&
	    tree_parse(data->buf, data->len, info->oid_len, root, strlen(root), &sub, &nsub) < 0) {
		free(fr);
		rd_finish(&x->rd, GRPC_INTERNAL, "parsing tree %s", info->oid);
		return;
	}
	/* descend while the tree holds exactly one entry that is itself a tree */
	if (nsub == 1 && sub[0].type == GITALY__TREE_ENTRY__ENTRY_TYPE__TREE) {
		free(x->flat[fr->idx]);
		x->flat[fr->idx] = xstrndup(sub[0].path, sub[0].path_len);
		if (++fr->level < 10) {
			memcpy(fr->oid, sub[0].oid, sizeof(fr->oid));
			tree_ents_free(sub, nsub);
			x->inflight++;
			if (catfile_read(x->rd.cf, fr->oid, strlen(fr->oid), MAX_TREE_SIZE, flat_done, fr) < 0) {
				free(fr);
				rd_finish(&x->rd, GRPC_INTERNAL, "reading tree: object reader failed");
			}
			return;
		}
	}
	tree_ents_free(sub, nsub);
	free(fr);
	flat_pump(x);
}

/* Keep up to CATFILE_WINDOW flat-path chains in flight; send once all are done. */
static void flat_pump(struct gte_ctx *x)
{
	while (x->next_flat < x->count && x->inflight < CATFILE_WINDOW) {
		size_t i = x->next_flat++;
		const struct tree_ent *e = &x->ents[x->first + i];
		struct flat_read *fr;
		if (e->type != GITALY__TREE_ENTRY__ENTRY_TYPE__TREE)
			continue;
		x->flat[i] = xstrndup(e->path, e->path_len);
		fr = xcalloc(1, sizeof(*fr));
		fr->x = x;
		fr->idx = i;
		fr->level = 1;
		memcpy(fr->oid, e->oid, sizeof(fr->oid));
		x->inflight++;
		if (catfile_read(x->rd.cf, fr->oid, strlen(fr->oid), MAX_TREE_SIZE, flat_done, fr) < 0) {
			free(fr);
			rd_finish(&x->rd, GRPC_INTERNAL, "reading tree: object reader failed");
			return;
		}
	}
	if (x->next_flat == x->count && !x->inflight)
		gte_send(x);
}

/* Sort, paginate, add flat paths, send. */
static void gte_entries_ready(struct gte_ctx *x)
{
	const Gitaly__PaginationParameter *p = x->req->pagination_params;

	if (x->req->sort == GITALY__GET_TREE_ENTRIES_REQUEST__SORT_BY__TREES_FIRST)
		sort_trees_first(x->ents, x->nr);
	x->first = 0;
	x->count = x->nr;
	if (p) {
		struct strbuf start = STRBUF_INIT;
		const char *token = p->page_token ? p->page_token : "";
		long index = -1;
		int by_name = decode_token(token, &start);
		if (!start.len) {
			index = 0;
		} else {
			for (size_t i = 0; i < x->nr; i++) {
				const struct tree_ent *e = &x->ents[i];
				if (by_name ? (e->path_len == start.len && !memcmp(e->path, start.buf, start.len))
					    : !strcmp(e->oid, start.buf)) {
					index = (long)i + 1;
					break;
				}
			}
		}
		if (index < 0) {
			rd_finish(&x->rd, GRPC_INTERNAL, "could not find starting OID: %s", start.buf);
			strbuf_release(&start);
			return;
		}
		strbuf_release(&start);
		x->first = (size_t)index;
		if (p->limit == 0) {
			x->count = 0;
		} else if (p->limit < 0 || (size_t)index + (size_t)p->limit >= x->nr) {
			x->count = x->nr - (size_t)index;
		} else {
			x->count = (size_t)p->limit;
			encode_token(&x->ents[x->first + x->count - 1], &x->cursor);
		}
	}
	if (!x->req->recursive && !x->req->skip_flat_paths && x->count) {
		x->flat = xcalloc(x->count, sizeof(*x->flat));
		flat_pump(x);
		return;
	}
	gte_send(x);
}

static void gte_tree(void *arg, int status, const struct catfile_info *info, struct strbuf *data)
{
	struct gte_ctx *x = arg;
	if (status == CATFILE_MISSING) {
		resolve_error(x, GRPC_INVALID_ARGUMENT, "invalid revision or path");
		return;
	}
	if (status == -EFBIG) {
		rd_finish(&x->rd, GRPC_RESOURCE_EXHAUSTED, "tree too large");
		return;
	}
	if (status < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "reading tree: %s", strerror(-status));
		return;
	}
	if (info->type != CATFILE_TREE) {
		rd_ok(&x->rd); /* a blob at that path: no entries */
		return;
	}
	if (tree_parse(data->buf, data->len, info->oid_len, x->path.buf, x->path.len, &x->ents, &x->nr) < 0) {
		rd_finish(&x->rd, GRPC_INTERNAL, "parsing tree %s", info->oid);
		return;
	}
	gte_entries_ready(x);
}

static void gte_leased(struct rd *rd)
{
	struct gte_ctx *x = (struct gte_ctx *)rd;
	struct strbuf rev = STRBUF_INIT;
	strbuf_add(&rev, x->req->revision.data, x->req->revision.len);
	strbuf_addch(&rev, ':');
	strbuf_add(&rev, x->path.buf, x->path.len);
	if (rd_has_nul(rev.buf, rev.len))
		resolve_error(x, GRPC_INVALID_ARGUMENT, "invalid revision or path");
	else if (catfile_read(rd->cf, rev.buf, rev.len, MAX_TREE_SIZE, gte_tree, x) < 0)
		rd_finish(rd, GRPC_INTERNAL, "reading tree: object reader failed");
	strbuf_release(&rev);
}

/* ls-tree -z -r -t: "<mode> <type> <oid>\t<path>\0" per entry, trees before their content. */
static void gte_listed(struct rd *rd, int status, struct strbuf *out, struct strbuf *err)
{
	struct gte_ctx *x = (struct gte_ctx *)rd;
	size_t alloc = 0;
	const char *p = out->buf, *end = out->buf + out->len;
	struct strbuf path = STRBUF_INIT;

	if (status != 0) {
		if (!strncmp(err->buf, "fatal: not a tree object", 24))
			rd_ok(rd);
		else if (!strncmp(err->buf, "fatal: Not a valid object name", 30))
			resolve_error(x, GRPC_NOT_FOUND, "invalid revision or path");
		else
			rd_finish(rd, GRPC_INTERNAL, "listing tree entries: %s",
				  status == -E2BIG ? "tree too large" : err->buf);
		return;
	}
	while (p < end) {
		const char *nul = memchr(p, '\0', (size_t)(end - p));
		const char *sp1, *sp2, *tab;
		struct tree_ent *e;
		long long mode = 0;
		if (!nul)
			nul = end;
		sp1 = memchr(p, ' ', (size_t)(nul - p));
		sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(nul - sp1 - 1)) : NULL;
		tab = sp2 ? memchr(sp2 + 1, '\t', (size_t)(nul - sp2 - 1)) : NULL;
		if (!tab || tab - sp2 - 1 > CATFILE_HEXSZ_MAX || sp1 == p) {
			strbuf_release(&path);
			rd_finish(rd, GRPC_INTERNAL, "parsing tree entry");
			return;
		}
		for (const char *m = p; m < sp1; m++) {
			if (*m < '0' || *m > '7' || mode > 0x7fffffff) {
				strbuf_release(&path);
				rd_finish(rd, GRPC_INTERNAL, "parsing tree entry mode");
				return;
			}
			mode = mode * 8 + (*m - '0');
		}
		ALLOC_GROW(x->ents, x->nr + 1, alloc);
		e = &x->ents[x->nr++];
		memset(e, 0, sizeof(*e));
		memcpy(e->oid, sp2 + 1, (size_t)(tab - sp2 - 1));
		e->mode = (int32_t)mode;
		e->type = tree_type_from_mode(e->mode);
		strbuf_reset(&path);
		go_path_join(&path, x->path.buf, x->path.len, tab + 1, (size_t)(nul - tab - 1));
		e->path_len = path.len;
		e->path = strbuf_detach(&path, NULL);
		p = nul + 1;
	}
	strbuf_release(&path);
	gte_entries_ready(x);
}

static void get_tree_entries(struct grpc_call *call, const uint8_t *buf, size_t len, void *data)
{
	Gitaly__GetTreeEntriesRequest *req =
		msg_unpack(call, &gitaly__get_tree_entries_request__descriptor, buf, len);
	struct gte_ctx *x;
	struct strbuf msg = STRBUF_INIT;

	if (!req)
		return;
	x = (struct gte_ctx *)rd_start(data, call, sizeof(*x), req, req->repository);
	if (!x)
		return;
	x->req = req;
	x->rd.on_free = gte_free;
	strbuf_init(&x->path, 0);
	if (gitaly_check_revision((const char *)req->revision.data, req->revision.len, &msg) < 0) {
		rd_finish(&x->rd, GRPC_INVALID_ARGUMENT, "%s", msg.buf);
	} else if (!req->path.len) {
		Gitaly__GetTreeEntriesError err = GITALY__GET_TREE_ENTRIES_ERROR__INIT;
		Gitaly__PathError pe = GITALY__PATH_ERROR__INIT;
		pe.error_type = GITALY__PATH_ERROR__ERROR_TYPE__ERROR_TYPE_EMPTY_PATH;
		err.error_case = GITALY__GET_TREE_ENTRIES_ERROR__ERROR_PATH;
		err.path = &pe;
		rd_finish_detail(&x->rd, GRPC_INVALID_ARGUMENT, "empty path", &err.base);
	} else {
		if (!(req->path.len == 1 && req->path.data[0] == '.'))
			strbuf_add(&x->path, req->path.data, req->path.len);
		if (req->recursive) {
			struct git_call gc;
			struct strbuf arg = STRBUF_INIT;
			static const char *const flags[] = { "-z", "-r", "-t", NULL };
			const char *args[2];
			strbuf_add(&arg, req->revision.data, req->revision.len);
			strbuf_addch(&arg, ':');
			strbuf_add(&arg, x->path.buf, x->path.len);
			if (rd_has_nul(arg.buf, arg.len)) {
				resolve_error(x, GRPC_NOT_FOUND, "invalid revision or path");
			} else {
				args[0] = arg.buf;
				args[1] = NULL;
				rd_git_call(&x->rd, &gc, "ls-tree");
				gc.flags = flags;
				gc.args = args;
				rd_capture(&x->rd, &gc, MAX_TREE_SIZE, gte_listed);
			}
			strbuf_release(&arg);
		} else {
			rd_lease(&x->rd, gte_leased);
		}
	}
	strbuf_release(&msg);
}

void gitaly_register_commit_tree(struct gitaly *g, struct grpc_server *s)
{
	gitaly_add_unary(s, "/gitaly.CommitService/TreeEntry", tree_entry, g);
	gitaly_add_unary(s, "/gitaly.CommitService/GetTreeEntries", get_tree_entries, g);
}

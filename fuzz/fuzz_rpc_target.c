/* libFuzzer target: rpc_find_* and rpc_rewrite_* on arbitrary request bytes. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/strbuf.h"
#include "rpc/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char new_storage[] = "fuzz-storage";
static const char new_path[] = "@cluster/repositories/fu/zz/1";

/*
 * The rewrite keeps everything but the two strings and the length prefixes
 * along the path, and gives the new strings to one occurrence only, so its
 * output is at most this much longer than its input.
 */
static size_t growth_bound(void)
{
	return sizeof(new_storage) + sizeof(new_path) + 4 * 10 + RPC_PATH_MAX * 10;
}

static int known_error(int ret)
{
	return ret == -ENOENT || ret == -ENOTUNIQ || ret == -EINVAL;
}

static void check_repo(const struct rpc_method *m, enum rpc_repo_kind kind,
		       const uint8_t *msg, size_t len)
{
	struct strbuf out = STRBUF_INIT;
	struct rpc_repo r;
	int ret = rpc_find_repo(m, kind, msg, len, &r);

	if (ret < 0) {
		if (!known_error(ret))
			__builtin_trap();
		/* The rewrite fails the same way and leaves `out` alone. */
		if (rpc_rewrite_repo(m, kind, msg, len, "s", 1, "p", 1, &out) != ret || out.len)
			__builtin_trap();
		return;
	}
	if (r.msg < msg || r.msg + r.len > msg + len ||
	    (r.storage_len && ((const uint8_t *)r.storage < msg ||
			       (const uint8_t *)r.storage + r.storage_len > msg + len)) ||
	    (r.relative_path_len && ((const uint8_t *)r.relative_path < msg ||
				     (const uint8_t *)r.relative_path + r.relative_path_len > msg + len)))
		__builtin_trap();

	if (rpc_rewrite_repo(m, kind, msg, len, new_storage, sizeof(new_storage) - 1,
			     new_path, sizeof(new_path) - 1, &out) < 0)
		__builtin_trap();
	if (out.len > len + growth_bound())
		__builtin_trap();

	/* Reading the rewritten request gives back exactly the new values. */
	ret = rpc_find_repo(m, kind, (const uint8_t *)out.buf, out.len, &r);
	if (ret < 0 ||
	    r.storage_len != sizeof(new_storage) - 1 ||
	    memcmp(r.storage, new_storage, r.storage_len) ||
	    r.relative_path_len != sizeof(new_path) - 1 ||
	    memcmp(r.relative_path, new_path, r.relative_path_len))
		__builtin_trap();
	strbuf_release(&out);
}

static void check_storage(const struct rpc_method *m, const uint8_t *msg, size_t len)
{
	struct strbuf out = STRBUF_INIT;
	const char *s;
	size_t slen;
	int ret = rpc_find_storage(m, msg, len, &s, &slen);

	if (ret < 0) {
		if (!known_error(ret))
			__builtin_trap();
		if (rpc_rewrite_storage(m, msg, len, "s", 1, &out) != ret || out.len)
			__builtin_trap();
		return;
	}
	if (!slen || (const uint8_t *)s < msg || (const uint8_t *)s + slen > msg + len)
		__builtin_trap();
	if (rpc_rewrite_storage(m, msg, len, new_storage, sizeof(new_storage) - 1, &out) < 0)
		__builtin_trap();
	if (out.len > len + growth_bound())
		__builtin_trap();
	ret = rpc_find_storage(m, (const uint8_t *)out.buf, out.len, &s, &slen);
	if (ret < 0 || slen != sizeof(new_storage) - 1 || memcmp(s, new_storage, slen))
		__builtin_trap();
	strbuf_release(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct rpc_method *m;

	/* The first two bytes pick the method, the rest is its request. */
	if (size < 2 || !rpc_methods_nr)
		return 0;
	m = &rpc_methods[(data[0] | (size_t)data[1] << 8) % rpc_methods_nr];
	data += 2;
	size -= 2;

	check_repo(m, RPC_REPO_TARGET, data, size);
	check_repo(m, RPC_REPO_ADDITIONAL, data, size);
	check_storage(m, data, size);
	if (rpc_lookup(m->name, m->name_len) != m)
		__builtin_trap();
	return 0;
}

/* Method lookup and names over the generated table (registry_gen.c). */
#include "rpc/registry.h"

#include <string.h>

static int compare_name(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

const struct rpc_method *rpc_lookup(const char *path, size_t len)
{
	size_t lo = 0, hi = rpc_methods_nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct rpc_method *m = &rpc_methods[mid];
		int c = compare_name(path, len, m->name, m->name_len);

		if (!c)
			return m;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const char *rpc_op_name(enum rpc_op op)
{
	switch (op) {
	case RPC_OP_MUTATOR:
		return "MUTATOR";
	case RPC_OP_ACCESSOR:
		return "ACCESSOR";
	case RPC_OP_MAINTENANCE:
		return "MAINTENANCE";
	case RPC_OP_UNKNOWN:
		break;
	}
	return "UNKNOWN";
}

const char *rpc_scope_name(enum rpc_scope scope)
{
	switch (scope) {
	case RPC_SCOPE_REPOSITORY:
		return "REPOSITORY";
	case RPC_SCOPE_STORAGE:
		return "STORAGE";
	}
	return "UNKNOWN";
}

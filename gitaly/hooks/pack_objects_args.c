/* pack-objects hook arguments; see pack_objects_args.h. */
#include "hooks/pack_objects_args.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

int pack_objects_args_parse(const char *const *args, size_t nr, struct pack_objects_args *out,
			    const char **why)
{
	size_t i = 0;
	int seen_stdout = 0;

	memset(out, 0, sizeof(*out));
	if (nr >= 2 && args[0] && args[1] && !strcmp(args[0], "--shallow-file") && !*args[1]) {
		out->shallow_file = 1;
		i = 2;
	}
	if (i >= nr || !args[i] || strcmp(args[i], "pack-objects")) {
		*why = "missing pack-objects";
		return -1;
	}
	out->flags = xcalloc(nr - i, sizeof(*out->flags));
	for (i++; i < nr; i++) {
		if (!args[i] || args[i][0] != '-') {
			*why = "non-flag argument";
			pack_objects_args_release(out);
			return -1;
		}
		if (!strcmp(args[i], "--stdout"))
			seen_stdout = 1;
		else
			out->flags[out->nr_flags++] = args[i];
	}
	if (!seen_stdout) {
		*why = "missing --stdout";
		pack_objects_args_release(out);
		return -1;
	}
	return 0;
}

void pack_objects_args_release(struct pack_objects_args *a)
{
	free(a->flags);
	a->flags = NULL;
	a->nr_flags = 0;
}

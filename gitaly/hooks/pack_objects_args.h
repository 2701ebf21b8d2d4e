/*
 * The command line git upload-pack hands its pack-objects hook, as
 * PackObjectsHookWithSidechannel receives it in `args`
 * (docs/technical/pack-objects-cache.md, "Arguments").
 */
#ifndef GITALY_HOOKS_PACK_OBJECTS_ARGS_H
#define GITALY_HOOKS_PACK_OBJECTS_ARGS_H

#include <stddef.h>

struct pack_objects_args {
	int shallow_file;          /* leading `--shallow-file ""` */
	const char **flags;        /* the flags other than --stdout, borrowed from the input */
	size_t nr_flags;
};

/*
 * Parse `args`. 0, or -1 with `*why` set to upstream's reason
 * ("missing pack-objects", "non-flag argument", "missing --stdout").
 * `out->flags` is allocated; release with pack_objects_args_release().
 */
int pack_objects_args_parse(const char *const *args, size_t nr, struct pack_objects_args *out,
			    const char **why);
void pack_objects_args_release(struct pack_objects_args *a);

#endif

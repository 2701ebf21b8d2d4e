/*
 * libFuzzer target for gitaly/hooks/pack_objects_args.c: the input split at
 * NUL bytes is an argument list. An accepted list starts with pack-objects
 * (after an optional `--shallow-file ""`), every flag kept starts with '-',
 * and --stdout is never among them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hooks/pack_objects_args.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	const char **args = malloc((size + 1) * sizeof(*args));
	struct pack_objects_args a;
	const char *why = NULL;
	size_t nr = 0, start = 0;

	memcpy(buf, data, size);
	buf[size] = '\0';
	for (size_t i = 0; i <= size; i++)
		if (buf[i] == '\0') {
			args[nr++] = buf + start;
			start = i + 1;
		}
	if (size == 0)
		nr = 0;
	if (pack_objects_args_parse(args, nr, &a, &why) == 0) {
		size_t first = a.shallow_file ? 2 : 0;
		if (strcmp(args[first], "pack-objects"))
			abort();
		for (size_t i = 0; i < a.nr_flags; i++)
			if (a.flags[i][0] != '-' || !strcmp(a.flags[i], "--stdout"))
				abort();
		pack_objects_args_release(&a);
	} else if (!why) {
		abort();
	}
	free(args);
	free(buf);
	return 0;
}

/*
 * libFuzzer target for gitaly/read/languages_table.c: any bytes as a tree path. The language found is one
 * of the table's (its type known, its colour "#" and six hex digits), and the path rules answer 0 or 1.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "read/languages.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t len = nul ? (size_t)(nul - data) : size;
	char *path = malloc(len + 1), color[8];
	const char *lang;

	memcpy(path, data, len);
	path[len] = '\0';
	lang = lang_by_path(path, len);
	if (lang && lang_type(lang) == LANG_UNKNOWN)
		__builtin_trap();
	lang_color(lang ? lang : path, color);
	if (color[0] != '#' || strlen(color) != 7)
		__builtin_trap();
	if ((lang_is_vendored(path) | lang_is_documentation(path) | lang_is_generated(path)) > 1)
		__builtin_trap();
	free(path);
	return 0;
}

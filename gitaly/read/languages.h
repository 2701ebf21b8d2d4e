/*
 * The language facts of CommitLanguages (read/languages.def, generated from
 * linguist's data by tools/gen_languages.py) and the path rules built on
 * them: docs/technical/languages.md.
 */
#ifndef GITALY_READ_LANGUAGES_H
#define GITALY_READ_LANGUAGES_H

#include <stddef.h>

enum lang_type { LANG_UNKNOWN, LANG_PROGRAMMING, LANG_MARKUP, LANG_DATA, LANG_PROSE };

/* The language of `path` by file name, then by extension; NULL when none. */
const char *lang_by_path(const char *path, size_t len);
enum lang_type lang_type(const char *name);
/* linguist's colour, or "#" and the first 3 bytes of SHA-256(name) in hex; `out` holds 8 bytes. */
void lang_color(const char *name, char out[8]);
int lang_is_vendored(const char *path);
int lang_is_documentation(const char *path);
/* By path alone (read/generated.c without content). */
int lang_is_generated(const char *path);

#endif

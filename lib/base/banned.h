/*
 * Functions that are easy to misuse with untrusted lengths. Force-included
 * into every translation unit of ours (the root meson.build's -include), so a
 * use fails to compile. Use strbuf, snprintf, strtol/strtoull with end checks
 * instead.
 */
#ifndef BASE_BANNED_H
#define BASE_BANNED_H

/*
 * The build force-includes this header first in every translation unit
 * (meson.build: -include). The system headers that declare the banned
 * functions come first, so their declarations are seen before the macros
 * exist; any later #include of them is a no-op behind their include guards.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) BANNED(strncpy)
#undef strncat
#define strncat(x, y, n) BANNED(strncat)
#undef strtok
#define strtok(x, y) BANNED(strtok)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef atoi
#define atoi(x) BANNED(atoi)
#undef atol
#define atol(x) BANNED(atol)
#undef gets
#define gets(x) BANNED(gets)

#endif

/*
 * Reading a receive-pack reference advertisement as the node sent it
 * (pkt-lines: 4 hex digits of length including themselves, "0000" a
 * flush-pkt). Stands alone for fuzz/fuzz_advert.c. Used by resume.c.
 */
#ifndef PRAEFECT_COORDINATOR_ADVERT_H
#define PRAEFECT_COORDINATOR_ADVERT_H

#include <stddef.h>

/*
 * 1 when `buf` is whole pkt-lines and its first flush-pkt is its last 4
 * bytes (a complete advertisement: the node now waits for commands), or
 * `len` is 0. 0 otherwise (incomplete, malformed, or more after the flush).
 */
int advert_complete(const char *buf, size_t len);
/*
 * The capabilities of an advertisement: what follows the NUL of its first
 * pkt-line, without a trailing LF. Returns 0 with `*caps` pointing into
 * `buf`, -1 when the first pkt-line is malformed or has no NUL.
 */
int advert_capabilities(const char *buf, size_t len, const char **caps, size_t *caps_len);

#endif

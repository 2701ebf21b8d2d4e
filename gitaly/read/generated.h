/*
 * Whether a file is generated, by its path and the first bytes of its
 * content: the rules of go-enry's IsGenerated (v2.8.6), which upstream's
 * AnalysisService/CheckBlobsGenerated applies (docs/technical/gitaly-repository.md,
 * "Generated files").
 */
#ifndef GITALY_READ_GENERATED_H
#define GITALY_READ_GENERATED_H

#include <stddef.h>

/* Bytes of a blob the content rules look at (upstream reads this many). */
#define GENERATED_SNIFF_LEN 2048

/* 1 when generated. `content` need not be NUL-terminated; `path` is. */
int gen_is_generated(const char *path, const char *content, size_t len);

#endif

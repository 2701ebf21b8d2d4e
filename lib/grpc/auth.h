/*
 * Gitaly's v2 token authentication: "authorization: Bearer v2.<hex>.<ts>"
 * where <hex> is HMAC-SHA256(secret, <ts>) and <ts> the Unix time in seconds.
 * Tokens are accepted 30 s either side of the server clock.
 */
#ifndef GRPC_AUTH_H
#define GRPC_AUTH_H

#include <stddef.h>
#include <time.h>
#include "status.h"
#include "metadata.h"

#define AUTH_V2_SKEW 30

/* Write "v2.<hex>.<ts>" (at most 100 bytes) for `now`. */
void auth_v2_token(const char *secret, size_t secret_len, time_t now, char out[128]);
/* Add "authorization: Bearer v2..." for the current time to `md`. */
void auth_v2_add(struct grpc_metadata *md, const char *secret);

/*
 * Check the "authorization" value of a call against the secret. Returns
 * GRPC_OK, GRPC_UNAUTHENTICATED ("authentication required": missing or
 * malformed) or GRPC_PERMISSION_DENIED ("permission denied": wrong version,
 * signature or time), and sets *msg accordingly.
 */
enum grpc_code auth_v2_check(const char *secret, size_t secret_len, const char *authorization,
			     time_t now, const char **msg);

struct grpc_call;
/*
 * The server-side check for one call, for on_call_start hooks: OK when no
 * secret is configured or the token is valid; with `transitioning` a failure
 * is logged and the call allowed, as upstream's [auth] transitioning does.
 */
enum grpc_code auth_check_call(struct grpc_call *call, const char *secret, int transitioning,
			       struct strbuf *msg);

#endif

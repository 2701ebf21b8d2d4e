/*
 * libFuzzer target for gitaly/repository/remote_config.c: a client's URL,
 * authorization header and resolved_address (NUL-separated in the input),
 * then redaction of a text that quotes them. Checks that no secret survives.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "repository/remote_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf in = STRBUF_INIT, err = STRBUF_INIT, text = STRBUF_INIT, user = STRBUF_INIT,
		      pass = STRBUF_INIT;
	struct reposvc_remote r;
	const char *url, *auth = "", *resolved = "", *host = NULL, *p;

	strbuf_add(&in, data, size);
	url = in.buf;
	if ((p = memchr(in.buf, '\0', in.len)) && p + 1 <= in.buf + in.len) {
		auth = p + 1;
		if ((p = memchr(auth, '\0', (size_t)(in.buf + in.len - auth))))
			resolved = p + 1;
	}
	reposvc_remote_init(&r);
	reposvc_remote_userinfo(url, &user, &pass, &host);
	if (reposvc_remote_setup(&r, "inmemory", url, auth, resolved, &err) == 0)
		(void)reposvc_remote_env(&r);
	/*
	 * A message quoting everything the client sent keeps none of the
	 * secrets: none that could be made of the marker's own characters.
	 */
	strbuf_addf(&text, "fatal: '%s' with '%s' failed", url, auth);
	reposvc_remote_redact(&r, &text);
	for (size_t i = 0; i < r.secrets.nr; i++)
		if (strcspn(r.secrets.v[i], "[FILTERED]") == strlen(r.secrets.v[i]) &&
		    strstr(text.buf, r.secrets.v[i]))
			__builtin_trap();
	reposvc_remote_release(&r);
	strbuf_release(&in);
	strbuf_release(&err);
	strbuf_release(&text);
	strbuf_release(&user);
	strbuf_release(&pass);
	return 0;
}
